"""Sweeps beyond the basic launcher, readable job directories, and surviving a kill -9."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from .conftest import subprocess_env

TINY = ["debug=default"]


def run_cli(args: list[str], cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "nearpole_exp", *args], cwd=cwd, env=subprocess_env(),
                          capture_output=True, text=True, timeout=timeout, check=False)


@pytest.mark.parametrize("launcher", ["parallel", "slurm_local"])
def test_launchers_run_a_sweep_with_readable_job_dirs(tmp_path: Path, launcher: str) -> None:
    pytest.importorskip("hydra_plugins.hydra_joblib_launcher" if launcher == "parallel"
                        else "hydra_plugins.hydra_submitit_launcher")
    sweep = tmp_path / "sweep"
    proc = run_cli(["-m", f"hydra/launcher={launcher}", "sampler=uniform,importance", "seed=0", *TINY,
                    f"hydra.sweep.dir={sweep}"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    names = sorted(p.parent.name for p in sweep.glob("*/summary.json"))
    assert names == ["0_debug=default_sampler=uniform_seed0", "1_debug=default_sampler=importance_seed0"]
    for path in sweep.glob("*/summary.json"):
        assert json.loads(path.read_text())["status"] == "completed"
    assert (sweep / "comparison.csv").exists()


def test_failing_job_is_marked_and_the_others_finish(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    proc = run_cli(["-m", "problem.pole=0.3,1.5", *TINY, f"hydra.sweep.dir={sweep}"], cwd=tmp_path)
    assert proc.returncode != 0
    statuses = {p.parent.name: json.loads(p.read_text())["status"] for p in sweep.glob("*/summary.json")}
    assert statuses == {"0_debug=default_problem.pole=0.3_seed0": "completed",
                        "1_debug=default_problem.pole=1.5_seed0": "failed"}
    failed = json.loads((sweep / "1_debug=default_problem.pole=1.5_seed0" / "summary.json").read_text())
    assert "problem.pole: must lie inside" in failed["error"]
    assert "problem.pole=1.5" in (sweep / "comparison.md").read_text()
    assert "job failed" in proc.stdout + proc.stderr


def _last_round(ckpt: Path) -> int:
    try:
        return int(torch.load(ckpt, map_location="cpu", weights_only=True)["loop"]["round"])
    except Exception:
        return -1


def test_kill_nine_then_resume_matches_an_uninterrupted_run(tmp_path: Path) -> None:
    args = ["trainer.rounds=6", "trainer.steps_per_round=150", "trainer.initial_points=1024",
            "trainer.batch_size=128", "trainer.plots=false", "trainer.progress=false",
            "logger=wandb", "logger.mode=offline", "logger.init_timeout=180"]
    reference = run_cli([*args, f"hydra.run.dir={tmp_path / 'reference'}"], cwd=tmp_path)
    assert reference.returncode == 0, reference.stderr[-3000:]

    job = tmp_path / "killed"
    cmd = [sys.executable, "-m", "nearpole_exp", *args, f"hydra.run.dir={job}"]
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=subprocess_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 180
    while _last_round(job / "checkpoints" / "last.pt") < 2 and time.monotonic() < deadline:
        assert proc.poll() is None, "the run finished before it could be killed"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    killed_at = _last_round(job / "checkpoints" / "last.pt")
    assert 2 <= killed_at < 6
    assert not (job / "summary.json").exists()

    resumed = run_cli([*args, f"hydra.run.dir={job}"], cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    final = json.loads((job / "summary.json").read_text())
    expected = json.loads((tmp_path / "reference" / "summary.json").read_text())
    assert final["status"] == "completed" and final["step"] == expected["step"] == 6 * 150
    for key in ("eval/mse", "eval/ple", "eval/relerr_median/B0", "eval/relerr_median/B4"):
        assert final[key] == pytest.approx(expected[key], rel=1e-9, abs=1e-15), key
    rounds = [json.loads(line)["round"] for line in (job / "metrics.jsonl").read_text().splitlines()]
    assert rounds[-1] == 6 and sorted(set(rounds)) == list(range(1, 7))
    run_ids = {p.name.rsplit("-", 1)[-1] for p in (job / "wandb").glob("offline-run-*")}
    assert final["wandb_mode"] == "offline", "W&B did not start in time (see the job log)"
    assert len(run_ids) == 1 and final["wandb_run_id"] in run_ids


def test_a_preempted_submitit_job_is_requeued_and_resumes_to_the_uninterrupted_result(
        tmp_path: Path) -> None:
    """submitit's preemption signal (USR2) mid-run: the job saves itself, submitit's checkpoint
    hook requeues it (the local executor restarts it as Slurm would), and the requeued job
    resumes from its checkpoint to the numbers of a run never interrupted."""
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    from nearpole_exp.sweep_signals import descendants

    args = [*TINY, "trainer.rounds=4", "trainer.steps_per_round=1500", "polish=none", "seed=0"]
    reference = run_cli([*args, f"hydra.run.dir={tmp_path / 'reference'}"], cwd=tmp_path)
    assert reference.returncode == 0, reference.stderr[-3000:]
    sweep = tmp_path / "sweep"
    proc = subprocess.Popen([sys.executable, "-m", "nearpole_exp", "-m", "hydra/launcher=slurm_local",
                             *args, f"hydra.sweep.dir={sweep}"], cwd=tmp_path, env=subprocess_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 180
    while _last_round(next(iter(sweep.glob("*/checkpoints/last.pt")), sweep / "none")) < 1:
        assert proc.poll() is None and time.monotonic() < deadline, "no checkpoint before the end"
        time.sleep(0.05)
    jobs = [pid for pid in descendants(proc.pid)
            if "submitit.core._submit" in Path(f"/proc/{pid}/cmdline").read_text()]
    assert len(jobs) == 1
    signal_at = _last_round(next(sweep.glob("*/checkpoints/last.pt")))
    assert signal_at < 4, "the job finished before it could be preempted"
    os.kill(jobs[0], signal.SIGUSR2)
    assert proc.wait(timeout=300) == 0
    (job,) = [p.parent for p in sweep.glob("*/summary.json")]
    log = "".join(p.read_text() for p in sorted((sweep / ".submitit").glob("*/*_log.*")))
    assert "this job is preempted" in log and "Requeued job" in log
    assert "preempted: the run saved itself as interrupted; submitit requeues the job" in log
    assert f"resumed from {job}/checkpoints/last.pt" in log
    final = json.loads((job / "summary.json").read_text())
    expected = json.loads((tmp_path / "reference" / "summary.json").read_text())
    assert final["status"] == "completed" and final["step"] == expected["step"] == 4 * 1500
    for key in ("eval/mse", "eval/ple", "eval/relerr_median/B0", "eval/relerr_median/B4"):
        assert final[key] == pytest.approx(expected[key], rel=1e-9, abs=1e-15), key


def test_sweep_position_counts_jobs_and_estimates_the_rest(tmp_path: Path) -> None:
    from omegaconf import OmegaConf

    from nearpole_exp.reporting.sweep_progress import count_jobs, sweep_position

    assert count_jobs(["sampler=uniform,importance", "seed=0,1,2", "trainer.lr=0.1"]) == 6
    assert count_jobs(["seed=range(0,4)"]) == 4
    assert count_jobs(["seed=glob(*)"]) is None
    OmegaConf.save({"hydra": {"overrides": {"task": ["sampler=uniform,importance", "seed=0,1"]}}},
                   tmp_path / "multirun.yaml")
    assert sweep_position(tmp_path, 0, "BasicSweeper") == "job 1/4 (0 finished)"
    for name in ("0_a", "1_b"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "summary.json").write_text("{}")
    line = sweep_position(tmp_path, 2, "hydra._internal.core_plugins.basic_sweeper.BasicSweeper")
    assert line.startswith("job 3/4 (2 finished, elapsed ") and "ETA ≈ " in line
    assert sweep_position(tmp_path, 2, "optuna").startswith("job 3/? (2 finished")
    (tmp_path / "2_c").mkdir()  # a preempted job waiting for its requeue has not finished
    (tmp_path / "2_c" / "summary.json").write_text('{"status": "interrupted"}')
    assert sweep_position(tmp_path, 3, "optuna").startswith("job 4/? (2 finished")
