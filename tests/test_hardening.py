"""Bad input and faults: each gets a clear error or a defined behaviour, and nothing is lost.

The catalogue (with the tests that cover it elsewhere):
 1. option typo, 2. wrong type, 3. unknown key, 4. negative size  -> test_configs.py
 5. inverted problem bounds, 6. pole outside the box, 7. empty-pool budget, 8. custom problem
    without a class, 9. model without Q for q_source=model, 10. |Q| sampler on a simulator,
11. empty pool, 12. batch larger than the pool, 13. NaN/inf/zero Q, 14. all-zero weights,
15. non-finite labels, 16. non-finite loss during training, 17. non-finite signals told to a
    breeder, 18. wrong-dimension parameters told to a breeder, 19. ids never asked,
20. inverted breeder bounds, 21. missing resume path, 22. truncated checkpoint,
23. kill -9 during a checkpoint write, 24. crash in the DDPM thread, 25. W&B online without
    credentials or network, 26. an invalid WANDB_MODE                            -> below
27. a crashing job in a multirun, 28. kill -9 mid-run then resume          -> test_sweeps.py

29. lr / weight_decay / grad_clip non-finite, 30. seed outside int64, 31. unknown top-level key,
32. non-finite problem box, 33. absurd batch size, 34. unknown option or group (closest
    suggested, exit 2 on stderr, Hydra's errors too), 35. --cfg job --resolve, 36. rerun from a
    saved config                                                          -> test_configs.py
37. NaN Q / distance from a custom problem, 38. wrong shapes from a custom problem -> test_byo_problem.py
39. a hung Python solver under the in-process executors                   -> test_async_runs.py
42. a _target_ that is not a Problem                                       -> test_configs.py
43. divergence (every step skipped), 45. a NaN checkpoint                  -> test_run.py
40. unavailable device, 41. a solver that cannot be imported, 44. too many skipped steps
    (``unstable``), 46. a corrupt checkpoint (CLI: one line), 47. a full disk, 48. SIGTERM and
    SIGINT, 49. W&B errors without a message, 50. two runs in one directory, 51. a held-out set
    too large for memory (the pool's size: test_configs.py)               -> below
52. incompatible choices (exit 2, the key named), 53. a non-finite DDPM or ratio-MLP learning
    rate, 54. a DDPM that diverges (the run fails naming the key; NaN generations are never
    simulated), 55. a reservoir smaller than the breeding threshold, 56. a key added with +
    that no schema has (refused, the closest key named)                     -> below
57. compare --baseline naming no sweep point (exit 2, nothing overwritten), 58. a job whose
    overrides.yaml is empty or invalid (listed as missing)                 -> test_compare.py
59. resuming a checkpoint of another package version whose schema gained or lost keys,
60. a W&B tag over W&B's 64 characters (refused at compose time), 61. DDIM's settings with the
    ancestral sampler (refused; its timesteps no longer bounded by them), 62. a run directory that
    is a file or a dangling link (one line naming the key, exit 2)          -> below
63. a solver that aborts or exits on held-out points under the process pool, 64. solver output
    that is not frames (None, ragged, object, complex, text, wrong shape, beyond float32) and
    command output that is not an .npy array (none, text, pickle, truncated, a pipe), 65. a
    relative solver path in a command                                     -> test_execution.py
67. a command solver's own children when the process pool closes (killed) -> test_execution.py
68. SIGTERM to a multirun under the joblib launcher: no worker outlives it, 69. an MLP's
    activation, width or depth out of range (refused at compose time), 70. a task_name or run
    directory too long for a file name (one line, exit 2)                   -> below
71. a rerun from a saved config with a relative --config-path (works, keeps the choices, logs
    once)                                                                  -> test_configs.py
72. load_run on a damaged summary.json or a config that no longer builds the model -> test_run.py
73. an all-NaN |Q| in the DataLoader adapter (said once, counted)          -> test_torch_data.py
74. the dashboard without an API key, or grouped by a group that does not exist -> test_dashboard.py
75. shell completion offering the base_* schemas the CLI refuses            -> test_configs.py
76. the rational model's MLP-basis settings on a polynomial basis (refused, not ignored) -> below
77. racing runs for one job directory (one holder at a time) and a SIGKILLed holder (the kernel
    releases its lock)                                                     -> below
78. SIGTERM arriving inside a checkpoint write (interrupted, not a disk error), 81. submitit's
    preemption signal (saved, then requeued by submitit; Slurm's SIGTERM left to submitit) -> below
79. a callback that is not a Callback, cannot be imported, has an unknown or out-of-range setting
    or monitors a metric the problem does not report (the key named)  -> test_callbacks.py
80. a Dask worker that dies or a task that hangs (one simulation fails, the worker is replaced)
                                                                       -> test_dask_executor.py
66. a run in which every simulation fails: the reasons in the error (below), the log and the
    summary (test_execution.py)
"""

from __future__ import annotations

import json
import math
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from nearpole_exp.acquisition.ogas.breeder import OGASBreeder
from nearpole_exp.acquisition.ogas.training import GeneratorTraining
from nearpole_exp.acquisition.static import StaticBreeder
from nearpole_exp.app import JobGuard
from nearpole_exp.checkpoint import check_resumable, find_checkpoint, load_checkpoint, save_checkpoint
from nearpole_exp.config.validate import validate
from nearpole_exp.errors import (
    BackgroundThreadError,
    CheckpointError,
    ConfigError,
    DirectoryInUse,
    OutputError,
    ProblemError,
)
from nearpole_exp.joblock import LOCK_NAME, JobDirectoryLock
from nearpole_exp.pool import Pool
from nearpole_exp.problems.base import Samples
from nearpole_exp.runner import Runner
from nearpole_exp.sampling.importance import ImportanceSampler

from .conftest import TINY, subprocess_env


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        (["problem.low=1.0", "problem.high=-1.0"], "problem.high"),
        (["problem.pole=1.5"], "problem.pole"),
        (["problem=multipole1d", "problem.poles=[0.1,2.0]", "problem.residues=[1.0,1.0]"], "problem.poles"),
        (["problem=rr_ik", "problem.labels=approx"], "problem.labels"),
        (["sampler=importance", "sampler.weight_power=-1"], "sampler.weight_power"),
        (["ogas/breeder=ogas", "ogas.breeder.end_breed_ratio=1.5"], "ogas.breeder.end_breed_ratio"),
        (["ogas.model.timesteps=0"], "ogas.model.timesteps"),
        (["trainer.initial_points=0", "trainer.points_per_round=0"], "trainer.initial_points"),
        (["problem=custom"], "problem._target_"),
        (["trainer.device=cuda:99"], "trainer.device"),
    ],
)
def test_bad_values_fail_before_anything_is_built(composer, overrides: list[str], key: str) -> None:
    cfg = composer([*TINY, *overrides])
    with pytest.raises(ConfigError) as err:
        validate(cfg)
    assert err.value.key == key


def test_a_held_out_set_too_large_for_memory_is_refused_before_it_is_built(composer) -> None:
    cfg = composer([*TINY, "problem.n_eval=10000000000"])
    with pytest.raises(ConfigError, match="GiB") as err:
        Runner(cfg, Path(cfg.hydra.runtime.output_dir))
    assert err.value.key == "problem.n_eval"


def test_a_solver_that_cannot_be_imported_is_a_config_error_naming_problem_fn(composer) -> None:
    cfg = composer([*TINY, "problem=callable", "problem.fn=no_such_module:solve", "model=cnn1d",
                    "trainer=online"])
    with pytest.raises(ConfigError, match="no_such_module") as err:
        Runner(cfg, Path(cfg.hydra.runtime.output_dir))
    assert err.value.key == "problem.fn"


@pytest.mark.parametrize(
    ("overrides", "key", "message"),
    [
        (["trainer.q_source=model", "model=mlp"], "trainer.q_source", "q_values"),
        (["problem=landscape", "model=mlp", "trainer=online", "sampler=importance"],
         "trainer.q_source", "has none"),
        (["gradient=hybrid", "trainer.loss=residual"], "gradient", "quotient"),
        (["gradient=hybrid", "model=mlp"], "gradient", "gradient=exact"),
        (["gradient=hybrid", "model=linear_rational", "problem=rr_ik"], "gradient", "gradient=exact"),
        (["executor=process_pool"], "executor", "executor=batched"),
    ],
)
def test_incompatible_choices_are_refused_with_the_key_to_change(composer, overrides, key,
                                                                  message) -> None:
    """A configuration error (ConfigError: one line, exit code 2), naming the key to change."""
    cfg = composer([*TINY, *overrides])
    validate(cfg)
    with pytest.raises(ConfigError, match=message) as err:
        Runner(cfg, Path(cfg.hydra.runtime.output_dir))
    assert err.value.key == key


def test_empty_pool_and_oversized_batches() -> None:
    sampler = ImportanceSampler()
    with pytest.raises(ValueError, match="empty"):
        sampler.select(0, 8, values=torch.empty(0))
    sel = sampler.select(3, 50, values=torch.tensor([0.1, 1.0, 2.0]))
    assert len(sel.idx) == 50 and set(sel.idx.tolist()) <= {0, 1, 2}


def test_nan_inf_and_zero_q_have_defined_weights() -> None:
    q = torch.tensor([float("nan"), float("inf"), 0.0, 1e-3, 1.0])
    sel = ImportanceSampler(uniform_mix=0.0).select(5, 4000, values=q)
    counts = torch.bincount(sel.idx, minlength=5)
    assert counts[0] == 0 and counts[1] == 0
    assert counts[2] > counts[3] > counts[4]
    assert torch.isfinite(sel.weights).all()
    fallback = ImportanceSampler().select(3, 300, values=torch.full((3,), float("nan")))
    assert torch.bincount(fallback.idx, minlength=3).min() > 50


def test_pool_drops_non_finite_labels() -> None:
    pool = Pool()
    x = torch.tensor([[0.0], [0.3], [0.5]])
    y = torch.tensor([[1.0], [float("inf")], [float("nan")]])
    ids = pool.add(Samples(x, y, torch.arange(3)))
    assert len(pool) == 1 and pool.n_rejected == 2 and ids.tolist() == [0, 1, 2]


@pytest.mark.parametrize(("allowed", "status"), [(0.5, "completed"), (0.05, "unstable")])
def test_non_finite_loss_skips_the_step_and_keeps_the_model_finite(composer, monkeypatch, allowed,
                                                                    status) -> None:
    """A third of the steps see a NaN loss: each is skipped (the model stays finite); above
    ``trainer.max_skipped_fraction`` the run ends ``unstable`` with a warning saying why."""
    cfg = composer([*TINY, "trainer.loss=relative", f"trainer.max_skipped_fraction={allowed}"])
    runner = Runner(cfg, Path(cfg.hydra.runtime.output_dir))
    original = runner.compute_loss
    calls = {"n": 0}

    def sometimes_nan(x, y, kind, band):
        calls["n"] += 1
        out = original(x, y, kind, band)
        if calls["n"] % 3 == 0:
            out.losses = out.losses * float("nan")
        return out

    monkeypatch.setattr(runner, "compute_loss", sometimes_nan)
    summary = runner.run()
    assert summary["status"] == status
    assert 0.2 < summary["train/skipped_steps"] / summary["step"] < 0.5
    assert ("max_skipped_fraction=0.05" in summary.get("warning", "")) == (status == "unstable")
    assert all(torch.isfinite(p).all() for p in runner.model.parameters())


def test_breeders_reject_bad_tells_and_bounds() -> None:
    bounds = torch.tensor([[0.0, 1.0], [0.0, 1.0]])
    breeder = OGASBreeder(bounds, synchronous=True, min_reservoir_size=4)
    breeder.ask(8)
    breeder.tell(torch.arange(4), torch.tensor([0.1, float("nan"), float("inf"), 0.2]))
    assert breeder.metrics()["breeder/dropped_values"] == 2
    with pytest.raises(ValueError):
        breeder.tell(torch.arange(4), torch.ones(3))
    with pytest.raises(ValueError):
        breeder.tell(torch.tensor([100]), torch.ones(1))
    with pytest.raises(ValueError):
        breeder.tell(torch.ones(2, 2, dtype=torch.long), torch.ones(2, 2))
    breeder.close()
    with pytest.raises(ValueError, match="upper bound"):
        StaticBreeder(torch.tensor([[1.0, 0.0]]))


def test_missing_and_truncated_checkpoints_fail_clearly(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="no checkpoint"):
        find_checkpoint(str(tmp_path / "nowhere"), tmp_path)
    path = tmp_path / "last.pt"
    save_checkpoint({"model": {"w": torch.ones(1000)}}, path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"last\.pt is corrupt or truncated") as err:
        load_checkpoint(path)
    assert "weights_only=False" not in str(err.value) and "resume=never" in str(err.value)
    path.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="corrupt"):
        load_checkpoint(path)


def test_a_corrupt_checkpoint_stops_the_cli_with_one_line(cli, tmp_path: Path) -> None:
    out = tmp_path / "job"
    (out / "checkpoints").mkdir(parents=True)
    (out / "checkpoints" / "last.pt").write_bytes(b"PK\x03\x04 truncated")
    code, stdout, stderr = cli("debug=default", f"hydra.run.dir={out}")
    text = stdout + stderr
    assert code == 1, text
    assert "last.pt is corrupt or truncated" in text and "Traceback" not in text
    assert json.loads((out / "summary.json").read_text())["status"] == "failed"


def test_a_full_disk_names_the_file_and_keeps_the_previous_checkpoint(composer, monkeypatch) -> None:
    """torch reports a short write as ``RuntimeError: [enforce fail at inline_container.cc]``;
    the run must say which file and why, and the checkpoint before it must stay loadable."""
    import nearpole_exp.atomic as atomic

    cfg = composer([*TINY, "logger=none", "trainer.rounds=4"])
    out = Path(cfg.hydra.runtime.output_dir)
    real_save = torch.save

    def save(obj, handle, *args, **kwargs):
        if (out / "checkpoints" / "last.pt").exists():
            handle.write(b"PK partial")
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 64 vs 0")
        return real_save(obj, handle, *args, **kwargs)

    monkeypatch.setattr(atomic.torch, "save", save)
    with pytest.raises(OutputError, match=r"could not write .*last\.pt: the write stopped short"):
        Runner(cfg, out).run()
    monkeypatch.setattr(atomic.torch, "save", real_save)
    kept = load_checkpoint(out / "checkpoints" / "last.pt")
    assert kept["loop"]["round"] == 1
    assert [p.name for p in (out / "checkpoints").iterdir()] == ["last.pt"]  # no temp file left
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "failed" and "last.pt" in summary["error"]


def test_sigterm_during_a_checkpoint_write_is_an_interruption_not_a_disk_error(tmp_path,
                                                                               monkeypatch) -> None:
    """torch wraps an interrupt raised inside its writes into a RuntimeError; the run must still
    end ``interrupted`` (it resumes), not ``failed`` with a disk error, and leave no temp file."""
    import io

    import nearpole_exp.atomic as atomic
    from nearpole_exp.errors import Terminated

    path = tmp_path / "last.pt"
    save_checkpoint({"generation": 1, "w": torch.zeros(10)}, path)

    class StopMidWrite(io.BytesIO):
        writes = 0

        def write(self, data: bytes) -> int:
            StopMidWrite.writes += 1
            if StopMidWrite.writes == 3:
                raise Terminated("stopped by signal SIGTERM")
            return super().write(data)

    real_save = torch.save
    monkeypatch.setattr(atomic.torch, "save", lambda obj, handle: real_save(obj, StopMidWrite()))
    with pytest.raises(Terminated):
        save_checkpoint({"generation": 2, "w": torch.zeros(100_000)}, path)
    monkeypatch.setattr(atomic.torch, "save", real_save)
    assert load_checkpoint(path)["generation"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]


@pytest.mark.parametrize("executor", ["slurm", "local"])
def test_a_submitit_job_stops_on_preemption_then_hands_the_signal_to_submitit(monkeypatch,
                                                                              executor) -> None:
    """In a submitit job the preemption signal ends the loop like SIGTERM; after the run saved
    itself, release() passes it to submitit's handler (which requeues). On Slurm SIGTERM stays
    with submitit, which ignores it (Slurm sends it before a preemption)."""
    from nearpole_exp.errors import Terminated
    from nearpole_exp.stop_signals import StopSignals

    monkeypatch.setenv("SUBMITIT_EXECUTOR", executor)
    monkeypatch.delenv("SUBMITIT_PREEMPT_SIGNAL", raising=False)
    handed: list[int] = []
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGUSR2, signal.SIGTERM)}
    signal.signal(signal.SIGUSR2, lambda signum, frame: handed.append(signum))
    try:
        signals = StopSignals()
        signals.install()
        assert (signal.getsignal(signal.SIGTERM) == before[signal.SIGTERM]) == (executor == "slurm")
        with pytest.raises(Terminated, match=r"preempted \(SIGUSR2\)"):
            signal.raise_signal(signal.SIGUSR2)
        assert handed == []  # not yet: the run saves itself first
        signals.release()
        assert handed == [signal.SIGUSR2]
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)


def test_kill_nine_during_a_checkpoint_write_keeps_the_previous_one(tmp_path: Path) -> None:
    path = tmp_path / "last.pt"
    save_checkpoint({"generation": 1, "w": torch.zeros(10)}, path)
    script = (
        "import sys, torch\n"
        "from nearpole_exp.checkpoint import save_checkpoint\n"
        "big = {'generation': 2, 'w': torch.randn(40_000_000)}\n"
        "print('writing', flush=True)\n"
        f"save_checkpoint(big, {str(path)!r})\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "writing"
    deadline = time.monotonic() + 60
    while not list(tmp_path.glob(".last.pt.*")) and time.monotonic() < deadline:
        time.sleep(0.002)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    state = load_checkpoint(path)
    assert state["generation"] == 1 and torch.equal(state["w"], torch.zeros(10))


def test_crash_in_the_ddpm_thread_fails_the_run_within_a_generation(composer, monkeypatch) -> None:
    def broken_step(self, data) -> bool:
        raise RuntimeError("DDPM diverged")

    monkeypatch.setattr(GeneratorTraining, "step", broken_step)
    cfg = composer(["experiment=landscape", "ogas/breeder=ogas", "logger=none", "trainer.progress=false",
                    "trainer.rounds=4", "trainer.steps_per_round=5", "trainer.initial_points=64",
                    "trainer.points_per_round=32", "trainer.plots=false",
                    # no inline warm-up: every DDPM step runs on the thread
                    "ogas.breeder.min_train_steps=0"])
    out = Path(cfg.hydra.runtime.output_dir)
    with pytest.raises(BackgroundThreadError, match="DDPM diverged"):
        Runner(cfg, out).run()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "failed" and summary["round"] <= 2
    assert "DDPM diverged" in summary["error"]


def test_wandb_online_without_credentials_or_network_falls_back(composer, monkeypatch) -> None:
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("WANDB_BASE_URL", "http://127.0.0.1:9")
    cfg = composer([*TINY, "logger=wandb", "logger.mode=online", "logger.init_timeout=5"])
    out = Path(cfg.hydra.runtime.output_dir)
    summary = Runner(cfg, out).run()
    assert summary["status"] == "completed"
    saved = json.loads((out / "summary.json").read_text())
    assert saved["wandb_mode"] in ("offline", "disabled")
    assert math.isfinite(saved["eval/relerr_median/B4"])
    assert (out / "metrics.jsonl").read_text().count("\n") == cfg.trainer.rounds


def test_invalid_wandb_mode_is_ignored(composer, monkeypatch) -> None:
    monkeypatch.setenv("WANDB_MODE", "sometimes")
    cfg = composer([*TINY, "logger=wandb"])
    summary = Runner(cfg, Path(cfg.hydra.runtime.output_dir)).run()
    assert summary["status"] == "completed"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_stops_the_run_as_interrupted_with_its_checkpoint(tmp_path: Path, sig) -> None:
    """Slurm and ``timeout`` send SIGTERM, a terminal Ctrl-C: both end in an ``interrupted``
    summary and leave the last checkpoint to resume from."""
    out = tmp_path / "job"
    cmd = [sys.executable, "-m", "nearpole_exp", "logger=none", "trainer.progress=false",
           "trainer.plots=false", "trainer.rounds=100000", "trainer.steps_per_round=5",
           "trainer.initial_points=64", "trainer.num_threads=1", f"hydra.run.dir={out}"]
    # a shell that starts the suite in the background ignores SIGINT for its children; a
    # terminal never does: give the child the default disposition, as a terminal's job has
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env=subprocess_env(), text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.monotonic() + 120
        while not (out / "checkpoints" / "last.pt").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 128 + sig  # as the shell reports a process the signal ended
        assert "Traceback" not in err and "the same command resumes it" in err
    finally:
        proc.kill()
        proc.wait()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "interrupted", summary
    assert summary["round"] >= 1 and (out / "checkpoints" / "last.pt").exists()


def test_wandb_warnings_name_the_error_even_without_a_message() -> None:
    from nearpole_exp.reporting.wandb_run import describe

    assert describe(TimeoutError()) == "TimeoutError (no message)"
    assert describe(ConnectionError("refused")) == "ConnectionError: refused"


def _hold_lock_in_another_process(directory: Path) -> subprocess.Popen:
    """A process that takes the job lock of ``directory``, says so, and sleeps holding it."""
    code = ("import sys, time; from nearpole_exp.joblock import JobDirectoryLock\n"
            f"with JobDirectoryLock({str(directory)!r}):\n"
            "    print('held', flush=True); time.sleep(120)")
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
    return holder


def test_the_job_lock_admits_one_of_many_concurrent_runs(tmp_path) -> None:
    """Racing processes (each retrying until its deadline): exactly one holds the lock at a time."""
    code = ("import os, sys, time; from nearpole_exp.joblock import JobDirectoryLock\n"
            "from nearpole_exp.errors import DirectoryInUse\n"
            "held = 0; end = time.time() + 3\n"
            "while time.time() < end:\n"
            "    try:\n"
            f"        with JobDirectoryLock({str(tmp_path)!r}):\n"
            f"            fd = os.open({str(tmp_path / 'inside')!r}, os.O_CREAT | os.O_EXCL)\n"
            f"            os.close(fd); time.sleep(0.002); os.unlink({str(tmp_path / 'inside')!r})\n"
            "            held += 1\n"
            "    except DirectoryInUse:\n"
            "        pass\n"
            "print(held)")
    racers = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True) for _ in range(4)]
    results = [racer.communicate(timeout=60) for racer in racers]
    # a second holder would find ``inside`` present and die on FileExistsError
    assert all(racer.returncode == 0 for racer in racers), [err for _, err in results]
    assert sum(int(out) for out, _ in results) > 20


def test_a_second_run_in_a_live_runs_directory_stops_and_writes_nothing(composer) -> None:
    cfg = composer([*TINY, "logger=none"], "shared_dir")
    out = Path(cfg.hydra.runtime.output_dir)
    holder = _hold_lock_in_another_process(out)
    guard = JobGuard(out, multirun=False)
    try:
        with pytest.raises(DirectoryInUse, match=f"{socket.gethostname()} pid {holder.pid}"), \
                JobDirectoryLock(out):
            pass
        with pytest.raises(SystemExit) as stop:
            guard.run(lambda: Runner(cfg, out).run()["status"])
        assert stop.value.code == 2
        assert not (out / "summary.json").exists() and not (out / "metrics.jsonl").exists()
        assert math.isnan(JobGuard(out, multirun=True).run(lambda: 0.0))  # a sweep's failed job
        assert not (out / "summary.json").exists()
    finally:
        holder.send_signal(signal.SIGKILL)  # no cleanup runs: the kernel releases the lock
        holder.wait()
    assert (out / LOCK_NAME).exists()
    # the holder is gone: the run takes the directory over and releases it at the end
    assert guard.run(lambda: Runner(cfg, out).run()["status"]) == "completed"
    assert not (out / LOCK_NAME).exists()


def test_resuming_under_other_settings_is_a_config_error_that_touches_nothing(cli, tmp_path) -> None:
    out = tmp_path / "job"
    base = ["debug=default", f"hydra.run.dir={out}"]
    assert cli(*base)[0] == 0
    before = (out / "summary.json").read_text()
    code, _, stderr = cli(*base, "trainer.rounds=3")
    assert code == 2, stderr
    assert "written with other settings (trainer.rounds: 2 -> 3)" in stderr
    assert "Traceback" not in stderr and (out / "summary.json").read_text() == before


@pytest.mark.parametrize("override", ["ogas.model.lr=inf", "ogas.breeder.ratio_mlp_lr=inf",
                                      "ogas.model.lr=nan"])
def test_non_finite_learning_rates_of_the_ddpm_are_refused(composer, override) -> None:
    cfg = composer(["experiment=landscape", "ogas/breeder=ogas", override])
    with pytest.raises(ConfigError, match="finite") as err:
        validate(cfg)
    assert err.value.key == override.split("=")[0]


def test_a_ddpm_that_diverges_fails_the_run_and_never_simulates_nan(composer, monkeypatch) -> None:
    """A NaN DDPM loss stops the run with a message naming the key; NaN generations are never
    handed to the simulator (they count as out of the box and are replaced by design draws)."""
    calls = {"n": 0}
    real_step = GeneratorTraining.step

    def step_then_nan(self, data) -> bool:
        calls["n"] += 1  # in the generator's process, forked after the patch
        if calls["n"] > 3:
            with torch.no_grad():
                for p in self.ddpm.model.parameters():
                    p.fill_(float("nan"))
        return real_step(self, data)

    monkeypatch.setattr(GeneratorTraining, "step", step_then_nan)
    cfg = composer(["experiment=landscape", "ogas/breeder=ogas", "logger=none",
                    "trainer.progress=false", "trainer.rounds=4", "trainer.steps_per_round=5",
                    "trainer.initial_points=64", "trainer.points_per_round=32",
                    "trainer.plots=false", "ogas.breeder.synchronous=true"])
    out = Path(cfg.hydra.runtime.output_dir)
    with pytest.raises(FloatingPointError, match=r"ogas\.model\.lr"):
        Runner(cfg, out).run()
    assert json.loads((out / "summary.json").read_text())["status"] == "failed"
    breeder = OGASBreeder(torch.tensor([[0.0, 1.0], [0.0, 1.0]]), min_train_steps=0)
    unit = torch.tensor([[0.5, float("nan")], [0.2, 0.3], [float("inf"), 0.1]])
    assert breeder._out_of_box(unit).tolist() == [True, False, True]
    breeder.close()


def test_a_reservoir_that_could_never_breed_is_refused(composer) -> None:
    cfg = composer(["experiment=landscape", "ogas/breeder=ogas", "ogas.data.buffer_size=8",
                    "ogas.breeder.min_reservoir_size=16"])
    with pytest.raises(ConfigError, match="min_reservoir_size=16") as err:
        validate(cfg)
    assert err.value.key == "ogas.data.buffer_size"
    validate(composer(["experiment=landscape", "ogas/breeder=ogas", "ogas.data.buffer_size=16",
                       "ogas.breeder.min_reservoir_size=16"]))


@pytest.mark.parametrize(("override", "key", "hint"), [
    ("+trainer.foo_bar=1", "trainer.foo_bar", ""),
    ("+sampler.weight_pwer=2", "sampler.weight_pwer", "sampler.weight_power"),
])
def test_a_key_added_with_plus_that_no_schema_has_is_refused(composer, override, key, hint) -> None:
    cfg = composer(["sampler=importance", override])
    with pytest.raises(ConfigError, match="is not a setting") as err:
        validate(cfg)
    assert err.value.key == key and hint in str(err.value)


def test_a_checkpoint_of_another_version_resumes_across_added_and_removed_keys(tmp_path) -> None:
    saved = {"trainer.lr": "0.001", "ogas.breeder.max_train_steps_between_asks": "300"}
    current = {"trainer.lr": "0.001", "ogas.breeder.new_setting": "1"}
    check_resumable(saved, current, tmp_path / "last.pt", same_version=False)  # schema change
    with pytest.raises(ConfigError, match="other settings"):  # same version: a real change
        check_resumable(saved, current, tmp_path / "last.pt", same_version=True)
    with pytest.raises(ConfigError, match=r"trainer\.lr"):  # a value the user changed, any version
        check_resumable(saved, {**current, "trainer.lr": "0.01"}, tmp_path / "last.pt",
                        same_version=False)


@pytest.mark.parametrize("key", ["tags", "logger.tags"])
def test_a_wandb_tag_over_the_limit_is_refused_before_the_run(composer, key) -> None:
    with pytest.raises(ConfigError, match="64 characters") as err:
        validate(composer([f"{key}=[ok,{'x' * 65}]"]))
    assert err.value.key == key
    validate(composer([f"{key}=[ok,{'x' * 64}]"]))


def test_ddim_settings_are_refused_with_the_ancestral_sampler(composer) -> None:
    base = ["experiment=landscape", "ogas/breeder=ogas"]
    for override, key in (("ogas.model.sample_steps=10", "ogas.model.sample_steps"),
                          ("ogas.model.ddim_eta=0.5", "ogas.model.ddim_eta")):
        with pytest.raises(ConfigError, match="sampler=ddim") as err:
            validate(composer([*base, override]))
        assert err.value.key == key
    validate(composer([*base, "ogas.model.timesteps=10"]))  # DDIM's 25 steps do not bound it
    validate(composer([*base, "ogas.model.sampler=ddim", "ogas.model.timesteps=10",
                       "ogas.model.sample_steps=5", "ogas.model.ddim_eta=0.5"]))


def test_a_run_directory_that_is_a_file_or_a_dangling_link_is_one_line(cli, tmp_path) -> None:
    afile = tmp_path / "afile"
    afile.write_text("not a directory")
    dangling = tmp_path / "dangling"
    dangling.symlink_to(tmp_path / "nowhere")
    for target in (afile, dangling):
        code, _, err = cli(f"hydra.run.dir={target}", "trainer.rounds=1")
        assert code == 2 and "hydra.run.dir" in err and "Traceback" not in err
        assert len(err.strip().splitlines()) == 1


def test_a_run_whose_every_simulation_fails_says_why(composer) -> None:
    cfg = composer(["problem=callable", "problem.fn=tests.abort_solver:nothing",
                    "problem.low=[0.1,-0.8]", "problem.high=[1.9,0.8]", "problem.grid=16",
                    "problem.n_steps=4", "problem.n_eval=4", "model=cnn1d", "trainer=online",
                    "executor=process_pool", "executor.workers=1", "trainer.rounds=2",
                    "trainer.initial_points=4", "trainer.points_per_round=2", "logger=none",
                    "trainer.progress=false", "trainer.plots=false"])
    with pytest.raises(ProblemError, match=r"every held-out simulation failed.*returned None"):
        Runner(cfg, Path(cfg.hydra.runtime.output_dir))


def test_a_run_whose_every_training_simulation_fails_records_them(composer, tmp_path) -> None:
    """The held-out set from a cache (a good solver made it), then a solver that returns None:
    the run fails naming the reason, and its summary lists every failed simulation."""
    base = ["problem=callable", "problem.low=[0.1,-0.8]", "problem.high=[1.9,0.8]",
            "problem.grid=16", "problem.n_steps=4", "problem.n_eval=4", "model=cnn1d",
            "trainer=online", "executor=process_pool", "executor.workers=1", "trainer.rounds=2",
            "trainer.initial_points=4", "trainer.points_per_round=2", "logger=none",
            "trainer.progress=false", "trainer.plots=false",
            f"problem.eval_cache={tmp_path / 'eval.pt'}"]
    good = composer([*base, "problem.fn=tests.abort_solver:solve"], name="good")
    Runner(good, Path(good.hydra.runtime.output_dir)).problem.eval_set()
    cfg = composer([*base, "problem.fn=tests.abort_solver:nothing"], name="bad")
    out = Path(cfg.hydra.runtime.output_dir)
    with pytest.raises(RuntimeError, match=r"no simulation succeeded.*returned None"):
        Runner(cfg, out).run()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "failed" and len(summary["sims/failures"]) >= 4
    assert all("returned None" in f["reason"] for f in summary["sims/failures"])


def test_sigterm_to_a_parallel_sweep_leaves_no_worker_behind(tmp_path: Path) -> None:
    from nearpole_exp.sweep_signals import _alive, descendants

    sweep = tmp_path / "sweep"
    cmd = [sys.executable, "-m", "nearpole_exp", "-m", "hydra/launcher=parallel",
           "hydra.launcher.n_jobs=2", "seed=0,1,2,3", "trainer.rounds=100000",
           "trainer.steps_per_round=5", "trainer.initial_points=64", "trainer.plots=false",
           "logger=none", f"hydra.sweep.dir={sweep}"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env=subprocess_env())
    try:
        deadline = time.monotonic() + 180
        while (len(list(sweep.glob("*/checkpoints/last.pt"))) < 2
               and time.monotonic() < deadline):
            time.sleep(0.2)
        workers = descendants(proc.pid)
        assert workers
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=90)
    finally:
        proc.kill()
    assert proc.returncode == 143 and "sweep stopped by SIGTERM" in err
    assert not [pid for pid in workers if _alive(pid)]
    summaries = [json.loads(p.read_text()) for p in sorted(sweep.glob("*/summary.json"))]
    assert [s["status"] for s in summaries] == ["interrupted", "interrupted"], summaries


@pytest.mark.parametrize(("override", "key"), [("model.activation=bogus", "model.activation"),
                                               ("model.depth=-1", "model.depth"),
                                               ("model.hidden=0", "model.hidden")])
def test_mlp_settings_are_checked_when_the_config_is_composed(composer, override, key) -> None:
    with pytest.raises(ConfigError) as err:
        validate(composer(["model=mlp", "trainer.q_source=problem", override]))
    assert err.value.key == key


def test_names_too_long_for_the_file_system_are_one_line(cli, tmp_path) -> None:
    code, _, err = cli(f"task_name={'a' * 150}", f"hydra.run.dir={tmp_path / 'ok'}")
    assert code == 2 and "task_name" in err and "Traceback" not in err
    code, _, err = cli(f"hydra.run.dir={tmp_path / ('b' * 300)}")
    assert code == 2 and "hydra.run.dir" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(("override", "key"), [("model.hidden=3", "hidden"),
                                               ("model.depth=5", "depth"),
                                               ("model.activation=bogus", "activation")])
def test_mlp_basis_settings_of_a_polynomial_rational_model_are_refused(override, key) -> None:
    from nearpole_exp.models.rational import RationalModel

    name, value = override.split("=")[0].split(".")[1], override.split("=")[1]
    kwargs = {name: int(value) if value.isdigit() else value}
    with pytest.raises(ConfigError) as err:
        RationalModel(1, 1, **kwargs)
    assert err.value.key == key
    if key != "activation":
        RationalModel(5, 1, **kwargs)  # the MLP basis (5 inputs) uses them
