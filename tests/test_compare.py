"""Sweep comparison: stats over seeds, ratios and wins vs a baseline, failures, files, CLI, hook."""

from __future__ import annotations

import csv
import json
import logging
import math
import os
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf

from nearpole_exp.reporting.comparison import ComparisonResult, SweepEmptyError, compare_sweep
from nearpole_exp.reporting.sweep_callback import CompareOnMultirunEnd

from .conftest import subprocess_env

# Per (sampler, seed): relerr B0, relerr B4, ple (None = non-finite, written as null).
NUMBERS = {
    ("uniform", 0): (1.0, 0.1, 2.0), ("uniform", 1): (2.0, 0.1, 2.0),
    ("uniform", 2): (3.0, 0.1, 2.0),
    ("importance", 0): (0.2, 0.1, 1.0), ("importance", 1): (0.4, 0.2, 0.5),
    ("importance", 2): (0.6, 0.05, None),
}


def write_job(job: Path, overrides: list[str], summary: dict[str, Any] | None,
              steps: int = 0) -> None:
    """A hand-written job directory: .hydra/overrides.yaml, optional summary and metrics.jsonl."""
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
    if summary is not None:
        (job / "summary.json").write_text(json.dumps(summary))
    if steps:
        lines = [json.dumps({"step": s, "train/loss": 1.0 / s}) for s in range(10, steps + 1, 10)]
        (job / "metrics.jsonl").write_text("\n".join(lines) + "\n")


def pole_summary(b0: float, b4: float, ple: float | None, wall: float) -> dict[str, Any]:
    summary: dict[str, Any] = {"status": "completed", "eval/mse": 10 * b0, "eval/ple": ple,
                               "time/wall_s": wall, "choices": {"sampler": "x"},
                               "wandb_run_id": None}
    for b in range(5):
        summary[f"eval/relerr_median/B{b}"] = b0 if b == 0 else (b4 if b == 4 else 0.5)
        summary[f"eval/bucket_count/B{b}"] = 100.0
    return summary


@pytest.fixture
def sweep(tmp_path: Path) -> Path:
    """2 samplers x 3 seeds, a failed job (importance, seed 3) and a killed one (uniform, 3)."""
    root = tmp_path / "multirun"
    num = 0
    for sampler in ("uniform", "importance"):
        for seed in range(3):
            b0, b4, ple = NUMBERS[(sampler, seed)]
            overrides = [f"sampler={sampler}", f"seed={seed}", "logger=none",
                         "trainer.progress=false", "debug=default"]
            summary = pole_summary(b0, b4, ple, wall=1.0 + seed)
            write_job(root / str(num), overrides, summary, steps=40)
            num += 1
    write_job(root / "6", ["sampler=importance", "seed=3", "debug=default"],
              {"status": "failed", "error": "RuntimeError: boom\nsecond line", "step": 20},
              steps=20)
    write_job(root / "7", ["sampler=uniform", "seed=3", "debug=default"], None, steps=30)
    (root / "multirun.yaml").write_text("hydra: {}\n")
    return root


def row(result: ComparisonResult, label: str):
    return next(r for r in result.rows if r.label == label)


def test_stats_ratios_and_wins(sweep: Path, tmp_path: Path) -> None:
    result = compare_sweep(sweep, baseline="sampler=uniform", out=tmp_path / "report")
    assert result.common == ("debug=default",)
    assert [r.label for r in result.rows] == ["sampler=uniform", "sampler=importance"]
    uni, imp = row(result, "sampler=uniform"), row(result, "sampler=importance")
    assert uni.is_baseline and not imp.is_baseline
    assert (uni.n, uni.n_failed, uni.n_missing) == (3, 0, 1)
    assert (imp.n, imp.n_failed, imp.n_missing) == (3, 1, 0)

    b0u, b0i = uni.metrics["eval/relerr_median/B0"], imp.metrics["eval/relerr_median/B0"]
    assert b0u.mean == pytest.approx(2.0) and b0u.std == pytest.approx(1.0)  # sample std (n-1)
    assert b0i.mean == pytest.approx(0.4) and b0i.std == pytest.approx(0.2)
    assert b0i.ratio == pytest.approx(5.0) and b0u.ratio == pytest.approx(1.0)
    assert (b0i.wins, b0i.paired) == (3, 3)

    assert b0i.gmean == pytest.approx(0.048 ** (1 / 3))  # errors: geometric mean ×/÷ factor
    assert b0i.gsd == pytest.approx(math.exp(statistics.stdev(math.log(v) for v in (0.2, 0.4, 0.6))))

    # 0.1, 0.2, 0.05 against 0.1 each: the arithmetic mean (0.117) is set by the one bad seed; the
    # geometric mean is uniform's, and so is the ratio
    b4i = imp.metrics["eval/relerr_median/B4"]
    assert b4i.mean == pytest.approx(0.35 / 3)
    assert b4i.gmean == pytest.approx(0.1) and b4i.ratio == pytest.approx(1.0)
    assert (b4i.wins, b4i.paired) == (1, 3)  # only seed 2 beats uniform's 0.1; ties do not win

    ple = imp.metrics["eval/ple"]  # seed 2 is null: skipped and counted
    assert (ple.n, ple.skipped) == (2, 1)
    assert ple.mean == pytest.approx(0.75) and ple.std == pytest.approx(math.sqrt(0.125))
    assert ple.ratio == pytest.approx(2.0 / math.sqrt(0.5)) and (ple.wins, ple.paired) == (2, 2)

    wall = imp.metrics["time/wall_s"]  # reported, not ranked
    assert uni.metrics["time/wall_s"].mean == pytest.approx(2.0) and wall.gmean is None
    assert wall.ratio is None and wall.wins is None
    assert result.table_metrics == [*(f"eval/relerr_median/B{b}" for b in range(5)), "eval/ple",
                                    "eval/mse", "time/wall_s"]
    assert "eval/bucket_count/B0" in result.metrics
    assert "eval/bucket_count/B0" not in result.table_metrics


def test_higher_is_better_flips_ratio_and_wins(sweep: Path) -> None:
    result = compare_sweep(sweep, baseline="sampler=uniform", lower_is_better=False, write=False)
    b0 = row(result, "sampler=importance").metrics["eval/relerr_median/B0"]
    assert b0.ratio == pytest.approx(0.2) and (b0.wins, b0.paired) == (0, 3)


def test_failed_and_missing_are_listed(sweep: Path) -> None:
    result = compare_sweep(sweep, write=False)
    got = {(f.job_dir, f.status, f.seed): f.error for f in result.failures}
    assert got == {("6", "failed", "3"): "RuntimeError: boom",
                   ("7", "missing", "3"): "no summary.json (last logged step 30)"}
    assert all(st.ratio is None for r in result.rows for st in r.metrics.values())  # no baseline


def test_jobs_whose_overrides_are_lost_are_listed_not_dropped(sweep: Path) -> None:
    write_job(sweep / "8", [], pole_summary(1e-3, 1e-6, 1e-4, wall=1.0))
    write_job(sweep / "9", [], pole_summary(1e-3, 1e-6, 1e-4, wall=1.0))
    (sweep / "9" / ".hydra" / "overrides.yaml").write_text("- [unclosed\n")
    result = compare_sweep(sweep, write=False)
    got = {f.job_dir: (f.status, f.error) for f in result.failures}
    assert got["8"][0] == "missing" and "overrides.yaml is empty" in got["8"][1]
    assert got["9"][0] == "missing" and "unreadable .hydra/overrides.yaml" in got["9"][1]


def test_files_written(sweep: Path, tmp_path: Path) -> None:
    out = tmp_path / "report"
    result = compare_sweep(sweep, baseline=["sampler=uniform"], out=out)
    assert result.paths["csv"] == out / "comparison.csv"
    with open(out / "comparison.csv", newline="") as handle:
        table = {r["point"]: r for r in csv.DictReader(handle)}
    assert set(table) == {"sampler=uniform", "sampler=importance"}
    imp = table["sampler=importance"]
    assert imp["n"] == "3" and imp["n_failed"] == "1"
    assert float(imp["eval/relerr_median/B0/mean"]) == pytest.approx(0.4)
    assert float(imp["eval/relerr_median/B0/std"]) == pytest.approx(0.2)
    assert float(imp["eval/relerr_median/B0/ratio"]) == pytest.approx(5.0)
    assert imp["eval/ple/n"] == "2" and imp["eval/relerr_median/B0/wins"] == "3"
    assert float(table["sampler=uniform"]["eval/bucket_count/B3/mean"]) == 100.0

    md = (out / "comparison.md").read_text()
    assert "| point | n | relerr_median/B0 |" in md
    assert "| sampler=importance | 3/4 | 0.363 ×/÷ 1.74 ×5 (3/3) |" in md
    assert "- failed: `6`" in md and "- missing: `7`" in md
    for group in ("relerr_median", "scalars"):
        png = out / f"comparison_{group}.png"
        assert result.paths[f"png:{group}"] == png
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
    assert not (out / "comparison_nrmse.png").exists()


def test_nested_simulator_sweep_and_blocks(tmp_path: Path) -> None:
    """Nested job dirs; nRMSE group; an ambiguous baseline is reported, --by resolves it."""
    root = tmp_path / "sim"
    root.mkdir()
    # the sweep's own exclude_keys (multirun.yaml) also leave `note` out of the sweep point
    OmegaConf.save({"hydra": {"job": {"config": {"override_dirname": {
        "exclude_keys": ["seed", "note"]}}}}}, root / "multirun.yaml")
    for problem, scale in (("burgers1d", 1.0), ("ks1d", 10.0)):
        for breeder, factor in (("uniform", 2.0), ("ogas", 1.0)):
            for seed in range(2):
                stats = {f"eval/nrmse_{s}": scale * factor * (k + 1) * (1 + seed)
                         for k, s in enumerate(("mean", "std", "p50", "p95", "p99", "max"))}
                write_job(root / f"problem={problem}" / f"breeder={breeder}" / f"seed={seed}",
                          [f"problem={problem}", f"ogas/breeder={breeder}", f"seed={seed}",
                           f"+note=run{seed}"],
                          {"status": "completed", **stats})
    ambiguous = compare_sweep(root, baseline="ogas/breeder=uniform", write=False)
    assert len(ambiguous.rows) == 4 and sum(r.n for r in ambiguous.rows) == 8
    assert any("ambiguous" in n and "--by problem" in n for n in ambiguous.notes)
    assert all(st.ratio is None for r in ambiguous.rows for st in r.metrics.values())

    result = compare_sweep(root, baseline="ogas/breeder=uniform", by="problem", out=tmp_path / "o")
    assert result.table_metrics == ["eval/nrmse_mean", "eval/nrmse_p99", "eval/nrmse_max"]
    for problem in ("burgers1d", "ks1d"):
        ogas = row(result, f"problem={problem},ogas/breeder=ogas")
        assert ogas.block == f"problem={problem}"
        assert ogas.metrics["eval/nrmse_max"].ratio == pytest.approx(2.0)
        p99 = ogas.metrics["eval/nrmse_p99"]
        assert (p99.wins, p99.paired) == (2, 2)
    assert row(result, "problem=ks1d,ogas/breeder=ogas").metrics["eval/nrmse_mean"].mean == \
        pytest.approx(15.0)
    assert (tmp_path / "o" / "comparison_nrmse.png").stat().st_size > 5000
    absent = compare_sweep(root, baseline="ogas/breeder=breed", write=False)
    assert any("matches no sweep point" in n for n in absent.notes)


def test_empty_dir_raises(tmp_path: Path) -> None:
    with pytest.raises(SweepEmptyError):
        compare_sweep(tmp_path)


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "nearpole_exp.compare", *args],
                          capture_output=True, text=True, timeout=60, check=False,
                          env={**os.environ, "COLUMNS": "200"})


def test_cli_exit_codes(sweep: Path, tmp_path: Path) -> None:
    out = tmp_path / "cli"
    done = run_cli(str(sweep), "--baseline", "sampler=uniform", "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert "sampler=importance" in done.stdout and "×5 (3/3)" in done.stdout
    assert "RuntimeError: boom" in done.stdout
    assert (out / "comparison.csv").is_file() and (out / "comparison.md").is_file()
    empty = tmp_path / "empty"
    empty.mkdir()
    failed = run_cli(str(empty))
    assert failed.returncode == 2 and "nothing to compare" in failed.stdout
    before = (out / "comparison.md").read_text()
    typo = run_cli(str(sweep), "--baseline", "sampler=unifrom", "--out", str(out))
    assert typo.returncode == 2 and "matches no sweep point" in typo.stdout
    assert "sampler=importance" in typo.stdout  # the points it could have named
    assert (out / "comparison.md").read_text() == before  # the report was not overwritten


def test_callback_compares_on_multirun_end(sweep: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = "nearpole_exp.reporting.sweep_callback.CompareOnMultirunEnd"
    callback = instantiate(OmegaConf.create({"_target_": target, "baseline": "sampler=uniform",
                                             "metrics": ["eval/relerr_median/*"]}))
    assert isinstance(callback, CompareOnMultirunEnd)
    config = OmegaConf.create({"hydra": {"sweep": {"dir": str(sweep)}}})
    with pytest.raises(SystemExit) as stop:
        callback.on_multirun_end(config)
    assert stop.value.code == 1, "the fake sweep has a failed job: the multirun must end with 1"
    printed = capsys.readouterr().out
    assert "sampler=importance" in printed and "(baseline)" in printed
    with open(sweep / "comparison.csv", newline="") as handle:
        table = {r["point"]: r for r in csv.DictReader(handle)}
    assert float(table["sampler=importance"]["eval/relerr_median/B0/ratio"]) == pytest.approx(5.0)


def test_callback_never_raises_on_a_bad_comparison(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    config = OmegaConf.create({"hydra": {"sweep": {"dir": str(tmp_path / "absent")}}})
    with caplog.at_level(logging.WARNING):
        CompareOnMultirunEnd().on_multirun_end(config)
    assert "sweep comparison skipped" in caplog.text


def test_an_unstable_run_counts_as_failed_with_its_warning(tmp_path: Path) -> None:
    from nearpole_exp.reporting.comparison.read import _outcome

    (tmp_path / "summary.json").write_text(json.dumps(
        {"status": "unstable", "warning": "30 of 100 steps (30.0%) were skipped\nmore"}))
    status, error, _ = _outcome(tmp_path)
    assert status == "failed" and error == "30 of 100 steps (30.0%) were skipped"


def test_the_comparison_reaches_wandb_as_its_own_run(sweep: Path) -> None:
    """``--wandb`` (offline here): a run of job type ``comparison`` in the sweep's group with
    the comparison table, a W&B bar chart per metric family, the PNGs and the failed jobs."""
    env = {**subprocess_env(), "WANDB_MODE": "offline"}
    proc = subprocess.run([sys.executable, "-m", "nearpole_exp.compare", str(sweep), "--wandb",
                           "--wandb-mode", "offline"], capture_output=True, text=True,
                          timeout=180, env=env, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "wandb sync" in proc.stdout
    (run_dir,) = list((sweep / "wandb").glob("offline-run-*"))
    raw = subprocess.run([str(Path(sys.executable).parent / "wandb"), "leet", "inspect", "--json",
                          str(run_dir)], capture_output=True, text=True, timeout=120, env=env,
                         check=True).stdout
    assert '"comparison"' in raw  # the job type
    for key in ("comparison/table", "comparison/relerr_median", "comparison/failed_jobs"):
        assert key in raw, key
    summary = json.loads(subprocess.run(
        [str(Path(sys.executable).parent / "wandb"), "leet", "inspect", "--summary", "--json",
         str(run_dir)], capture_output=True, text=True, timeout=120, env=env, check=True).stdout)
    assert summary["summary"]["comparison/failed_jobs"] == 2
    assert f"sweep:{summary['config']['sweep']['id']}" in summary["tags"]


def test_breeder_sweeps_get_the_uniform_design_as_baseline(tmp_path: Path) -> None:
    from nearpole_exp.reporting.comparison.sweep import compare_sweep

    root = tmp_path / "multirun"
    for i, (breeder, seed) in enumerate([(b, s) for b in ("uniform", "ogas") for s in (0, 1)]):
        summary = {"status": "completed", "eval/nrmse_max": 2.0 if breeder == "uniform" else 1.0}
        write_job(root / str(i), [f"ogas/breeder={breeder}", f"seed={seed}"], summary)
    result = compare_sweep(root, baseline="auto", write=False)
    base = next(r for r in result.rows if r.is_baseline)
    assert base.label == "ogas/breeder=uniform"
    other = next(r for r in result.rows if not r.is_baseline)
    assert other.metrics["eval/nrmse_max"].ratio == pytest.approx(2.0)
