"""Every benchmark script runs end to end in its ``--quick`` mode and writes its report (slow:
``python -m pytest -m slow``)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import subprocess_env

BENCH = Path(__file__).resolve().parents[1] / "scripts" / "bench"


def run(script: str, *args: str) -> str:
    proc = subprocess.run([sys.executable, str(BENCH / script), "--quick", *args],
                          capture_output=True, text=True, timeout=900, env=subprocess_env())
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


@pytest.mark.slow
@pytest.mark.parametrize("script", ["sampling.py", "breeder_speed.py", "runs.py", "startup.py",
                                    "designs.py", "optimizer.py", "step_overhead.py"])
def test_a_measuring_script_writes_its_report(tmp_path: Path, script: str) -> None:
    out = tmp_path / "report.md"
    run(script, "--out", str(out))
    text = out.read_text()
    assert "Machine:" in text and "|---" in text


@pytest.mark.slow
def test_the_executor_benchmark_prints_its_tables() -> None:
    assert "| executor | workers | sims/s |" in run("executors.py")


@pytest.mark.slow
def test_the_solver_benchmark_compares_with_exponax() -> None:
    if importlib.util.find_spec("exponax") is None:
        pytest.skip("the bench extra (exponax) is not installed")
    assert "ours / exponax" in run("solvers.py")


@pytest.mark.slow
def test_the_near_pole_benchmark_aggregates_its_sweep(tmp_path: Path) -> None:
    run("nearpole.py", "--out", str(tmp_path / "runs"), "--report", str(tmp_path / "r.md"))
    assert "sampler=uniform" in (tmp_path / "r.md").read_text()


@pytest.mark.slow
def test_the_ogas_benchmark_aggregates_its_sweep(tmp_path: Path) -> None:
    run("ogas.py", "--root", str(tmp_path / "runs"), "--out", str(tmp_path / "r.md"))
    assert "landscape" in (tmp_path / "r.md").read_text()


@pytest.mark.slow
def test_the_cost_benchmark_measures_every_arm_against_uniform(tmp_path: Path) -> None:
    run("ogas_cost.py", "--report", str(tmp_path / "r.md"))
    text = (tmp_path / "r.md").read_text()
    assert "| ogas synchronous |" in text and "| uniform | " in text
