"""The generator's training in a child process (``ogas.breeder.trainer_process``): the thread's
numbers, its failures relayed, and a run killed with SIGKILL resuming to the uninterrupted one."""

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

from nearpole_exp.acquisition.ogas import DataConfig, DDPMConfig, OGASBreeder
from nearpole_exp.acquisition.ogas.training import GeneratorTraining
from nearpole_exp.errors import BackgroundThreadError

from .conftest import subprocess_env

pytestmark = pytest.mark.usefixtures("one_thread")


def breeder(process: bool, synchronous: bool) -> OGASBreeder:
    torch.manual_seed(3)
    return OGASBreeder(torch.tensor([[0.0, 1.0], [-1.0, 1.0]]), synchronous=synchronous,
                       trainer_process=process, train_steps_per_ask=30, min_train_steps=20,
                       min_reservoir_size=16,
                       model=DDPMConfig(model_dim=32, depth=2, timesteps=20),
                       data=DataConfig(batch_size=32, smoothing_neighbours=1))


def generations(b: OGASBreeder, n: int, checkpoint_at: int | None = None) -> tuple[list, dict | None]:
    """``n`` generations of 48 points, each told a corner-shaped difficulty; the breeder's state
    right after generation ``checkpoint_at`` (its budget then still running)."""
    points, saved = [], None
    gen = torch.Generator().manual_seed(5)
    b.start()
    for k in range(n):
        x = b.ask(48)
        points.append(x)
        ids = torch.arange(b.n_asked - 48, b.n_asked)
        hard = ((x[:, 0] > 0.7) & (x[:, 1] > 0.4)).float()
        noise = 0.01 * torch.rand(96, generator=gen)
        b.tell(torch.cat([ids, ids]), torch.cat([0.1 + hard, 0.1 + hard]) + noise)
        if k == checkpoint_at:
            saved = b.state_dict()
    return points, saved


@pytest.mark.parametrize("synchronous", [True, False], ids=["synchronous", "background"])
def test_the_generator_process_gives_the_thread_s_numbers_and_resumes_mid_budget(synchronous):
    thread, process = breeder(False, synchronous), breeder(True, synchronous)
    try:
        expected, _ = generations(thread, 5)
        got, state = generations(process, 5, checkpoint_at=2)
        assert all(torch.equal(a, b) for a, b in zip(expected, got, strict=True))
        assert process.trainer.pid not in (None, os.getpid())
        m = process.metrics()
        assert m["breeder/train_steps"] == thread.metrics()["breeder/train_steps"] >= 20 + 3 * 30
        assert m["breeder/train_cpu_s"] > 0
        if not synchronous:  # saved while the child was part-way through a budget: it resumes there
            assert 0 <= state["trainer_pending"] <= 30
        resumed = breeder(True, synchronous)
        resumed.load_state_dict(state)
        resumed.start()
        assert torch.equal(resumed.ask(48), got[3])
        resumed.close()
    finally:
        for b in (thread, process):
            b.close()


def test_a_failure_or_death_of_the_generator_process_reaches_the_caller(monkeypatch):
    real, calls = GeneratorTraining.step, {"n": 0}

    def fail_late(self, data):
        calls["n"] += 1  # counted in the child (forked after the patch)
        if calls["n"] > 25:
            raise RuntimeError("DDPM diverged in the child")
        return real(self, data)

    monkeypatch.setattr(GeneratorTraining, "step", fail_late)
    b = breeder(True, synchronous=False)
    with pytest.raises(BackgroundThreadError, match="DDPM diverged in the child"):
        generations(b, 4)
    b.close()
    monkeypatch.undo()

    b = breeder(True, synchronous=False)
    generations(b, 2)
    os.kill(b.trainer.pid, signal.SIGKILL)
    time.sleep(0.2)
    with pytest.raises(BackgroundThreadError, match="exit code -9"):
        b.ask(48)
    b.close()


def running(marker: str) -> list[int]:
    """Live processes whose command line contains ``marker`` (a forked child keeps its parent's)."""
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            state = (entry / "stat").read_text().split(")")[-1].split()[0]
        except (OSError, ValueError, IndexError):
            continue
        if marker in cmdline and state != "Z":
            pids.append(int(entry.name))
    return pids


def test_a_run_killed_with_sigkill_resumes_to_the_uninterrupted_numbers(tmp_path: Path):
    """A CLI run whose generator trains in a child process, SIGKILLed after a checkpoint: the
    child does not keep the job directory locked, and the resumed run ends as the uninterrupted one."""
    args = ["experiment=landscape", "ogas/breeder=ogas", "ogas.breeder.trainer_process=true",
            "ogas.breeder.synchronous=true", "ogas.breeder.min_train_steps=50",
            "ogas.model.model_dim=32", "ogas.model.depth=2", "trainer.rounds=6",
            "trainer.steps_per_round=80", "trainer.initial_points=128",
            "trainer.points_per_round=64", "trainer.num_threads=1", "problem.n_eval=256",
            "trainer.plots=false", "trainer.progress=false", "logger=none"]

    def cli(job: Path) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "nearpole_exp", *args, f"hydra.run.dir={job}"],
                                cwd=tmp_path, env=subprocess_env(), stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True)

    reference = cli(tmp_path / "reference")
    assert reference.wait(timeout=300) == 0, reference.stderr.read()[-3000:]
    job = tmp_path / "killed"
    proc = cli(job)
    ckpt = job / "checkpoints" / "last.pt"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the run finished before it could be killed"
        try:
            if torch.load(ckpt, map_location="cpu", weights_only=True)["loop"]["round"] >= 3:
                break
        except Exception:
            pass
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert not (job / "summary.json").exists()
    deadline = time.monotonic() + 10  # the orphaned generator process notices and exits
    while running(f"hydra.run.dir={job}") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not running(f"hydra.run.dir={job}")
    resumed = cli(job)
    assert resumed.wait(timeout=300) == 0, resumed.stderr.read()[-3000:]
    final = json.loads((job / "summary.json").read_text())
    expected = json.loads((tmp_path / "reference" / "summary.json").read_text())
    assert final["status"] == "completed" and final["step"] == expected["step"] == 6 * 80
    for key in ("eval/nrmse_max", "eval/nrmse_p99", "eval/nrmse_mean", "breeder/train_steps",
                "breeder/ratio"):
        assert final[key] == expected[key], key
    assert expected["time/generator_cpu_s"] > 0  # the process's training CPU is reported


def test_the_run_s_device_reaches_a_breeder_that_takes_one(composer):
    """``trainer.device`` puts the DDPM beside the surrogate (a GPU run trains it on the GPU);
    breeders without networks are built as before."""
    from nearpole_exp.build import build_breeder

    cfg = composer(["experiment=landscape", "ogas/breeder=ogas"], "device")
    bounds = torch.tensor([[0.0, 1.0], [0.0, 1.0]])
    b = build_breeder(cfg.ogas, bounds, torch.device("cpu", 0))
    assert b.device == torch.device("cpu", 0) and b.ddpm.model.parameters().__next__().device.type == "cpu"
    b.close()
    plain = build_breeder(composer(["experiment=landscape", "ogas/breeder=uniform"], "plain").ogas,
                          bounds, torch.device("cpu", 0))
    assert plain.ask(4).shape == (4, 2)
