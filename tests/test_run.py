"""End to end: a tiny run, an in-process multirun, a CLI multirun with W&B offline, resume."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from nearpole_exp.app import task
from nearpole_exp.build import non_finite_parameters
from nearpole_exp.checkpoint import load_checkpoint
from nearpole_exp.config.validate import validate
from nearpole_exp.errors import CheckpointError, ConfigError, OutputError
from nearpole_exp.runner import Runner

from .conftest import TINY, subprocess_env

NEAR_POLE_KEYS = ["eval/mse", "eval/ple"] + [f"eval/{m}/B{b}" for m in ("relerr_median", "bucket_count")
                                              for b in range(5)]


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_tiny_run_leaves_the_job_directory(composer) -> None:
    cfg = composer([*TINY, "trainer.plots=true"])
    out = Path(cfg.hydra.runtime.output_dir)
    summary = Runner(cfg, out).run()
    assert summary["status"] == "completed"
    for key in NEAR_POLE_KEYS:
        assert math.isfinite(summary[key]), key
    assert sum(summary[f"eval/bucket_count/B{b}"] for b in range(5)) > 0
    assert all(summary[f"eval/bucket_count/B{b}"] > 0 for b in range(5))
    on_disk = json.loads((out / "summary.json").read_text())
    assert on_disk["status"] == "completed"
    records = read_jsonl(out / "metrics.jsonl")
    assert [r["round"] for r in records] == [1, 2]
    assert records[-1]["step"] == cfg.trainer.rounds * cfg.trainer.steps_per_round
    assert all(math.isfinite(r["train/loss"]) for r in records)
    state = load_checkpoint(out / "checkpoints" / "last.pt")
    assert {"model", "optimizer", "sampler", "breeder", "pool", "rng", "loop"} <= set(state)
    assert (out / "plots" / "bucket_errors.png").stat().st_size > 1000


def test_training_improves_on_the_initial_model(composer) -> None:
    cfg = composer([*TINY, "trainer.rounds=3", "trainer.steps_per_round=200"])
    runner = Runner(cfg, Path(cfg.hydra.runtime.output_dir))
    runner.acquisition.acquire(0)
    before = runner.evaluate()["eval/relerr_median/B4"]
    summary = runner.run()
    assert summary["eval/relerr_median/B4"] < 0.1 * before


def test_failure_is_recorded_and_raised(composer, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = composer(TINY)
    out = Path(cfg.hydra.runtime.output_dir)
    runner = Runner(cfg, out)

    def boom() -> dict:
        raise RuntimeError("simulated crash")

    monkeypatch.setattr(runner, "train_step", boom)
    with pytest.raises(RuntimeError, match="simulated crash"):
        runner.run()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "failed"
    assert "simulated crash" in summary["error"]


def test_resume_continues_to_the_same_result(composer, monkeypatch: pytest.MonkeyPatch) -> None:
    overrides = [*TINY, "trainer.rounds=4", "trainer.steps_per_round=15"]
    cfg_full = composer(overrides, "full")
    reference = Runner(cfg_full, Path(cfg_full.hydra.runtime.output_dir)).run()

    cfg = composer(overrides, "interrupted")
    out = Path(cfg.hydra.runtime.output_dir)
    crashing = Runner(cfg, out)
    original = crashing.train_step
    calls = {"n": 0}

    def crash_in_round_three() -> dict:
        calls["n"] += 1
        if calls["n"] > 2 * 15 + 5:
            raise KeyboardInterrupt
        return original()

    monkeypatch.setattr(crashing, "train_step", crash_in_round_three)
    with pytest.raises(KeyboardInterrupt):
        crashing.run()
    assert load_checkpoint(out / "checkpoints" / "last.pt")["loop"]["round"] == 2

    resumed = Runner(composer(overrides, "interrupted"), out).run()
    assert resumed["step"] == reference["step"] == 4 * 15
    for key in ("eval/mse", "eval/relerr_median/B3", "eval/relerr_median/B4"):
        assert resumed[key] == pytest.approx(reference[key], rel=1e-6), key
    rounds = [r["round"] for r in read_jsonl(out / "metrics.jsonl")]
    assert rounds == [1, 2, 3, 4]


def test_in_process_multirun(hydra_sweep_runner, tmp_path: Path) -> None:
    sweep = hydra_sweep_runner(
        calling_file=None, calling_module="nearpole_exp.__main__", task_function=task,
        config_path="pkg://nearpole_exp.conf", config_name="config",
        overrides=[*TINY, "seed=0,1"], temp_dir=tmp_path,
    )
    with sweep:
        assert sweep.returns is not None
        jobs = sweep.returns[0]
        assert len(jobs) == 2
        values = [job.return_value for job in jobs]
        assert all(isinstance(v, float) and math.isfinite(v) for v in values)
        assert values[0] != values[1]
        for job in jobs:
            job_dir = Path(job.hydra_cfg.hydra.runtime.output_dir)
            summary = json.loads((job_dir / "summary.json").read_text())
            assert summary["status"] == "completed"


def _inspect(run_dir: Path, env: dict[str, str], *flags: str) -> str:
    """``wandb leet inspect`` of an offline run (module form, else the console script)."""
    for head in ([sys.executable, "-m", "wandb"], [str(Path(sys.executable).parent / "wandb")]):
        out = subprocess.run([*head, "leet", "inspect", *flags, str(run_dir)], capture_output=True,
                             text=True, timeout=120, env=env, check=False)
        if out.returncode == 0:
            return out.stdout
    raise AssertionError(out.stderr)


def test_cli_multirun_writes_grouped_offline_wandb_runs(tmp_path: Path) -> None:
    """Read back with W&B's own reader: one run per job, grouped by sweep and point (seed left
    out), two sweeps never in one group, the sweep id and job number in config and tags, errors
    summarised by their minimum and last value, config and checkpoint artifacts, provenance."""
    env = subprocess_env()
    env.pop("WANDB_MODE", None)
    tiny = ["trainer.rounds=2", "trainer.steps_per_round=20", "trainer.initial_points=256",
            "trainer.batch_size=64", "trainer.plots=false", "trainer.progress=false"]
    records: dict[str, list[tuple[dict, dict, str]]] = {}
    for sweep, seeds in (("a", "seed=0,1"), ("b", "seed=0")):
        cmd = [sys.executable, "-m", "nearpole_exp", "-m", seeds, *tiny,
               f"hydra.sweep.dir={tmp_path / sweep}"]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env,
                              check=False, cwd=tmp_path)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        assert "upload it with: wandb sync " in proc.stdout
        for path in sorted((tmp_path / sweep).glob("*/summary.json")):
            summary = json.loads(path.read_text())
            assert summary["status"] == "completed" and summary["wandb_mode"] == "offline"
            (run_dir,) = list((path.parent / "wandb").glob("offline-run-*"))
            record = json.loads(_inspect(run_dir, env, "--summary", "--json"))
            records.setdefault(sweep, []).append((summary, record, _inspect(run_dir, env, "--json")))
    assert len(records["a"]) == 2 and len(records["b"]) == 1
    for jobs in records.values():
        ids = {r["config"]["sweep"]["id"] for _, r, _ in jobs}
        assert len(ids) == 1 and {r["config"]["sweep"]["job"] for _, r, _ in jobs} == set(
            range(len(jobs)))
        assert len({s["wandb_group"] for s, _, _ in jobs}) == 1  # seeds share a group
        for summary, record, raw in jobs:
            assert f"sweep:{next(iter(ids))}" in record["tags"]
            mse = record["summary"]["eval/mse"]
            assert set(mse) == {"min", "last"} and mse["min"] <= mse["last"]
            assert math.isfinite(record["summary"]["eval/relerr_median/B4"]["last"])
            assert record["config"]["package_version"] and record["config"]["model_parameters"] > 0
            run_id = summary["wandb_run_id"]
            assert f"config-{run_id}" in raw and f"checkpoint-{run_id}" in raw
    # the multirun's end logged its comparison as a run of its own, beside the jobs
    assert len(list((tmp_path / "a" / "wandb").glob("offline-run-*"))) == 1
    group_a, group_b = records["a"][0][0]["wandb_group"], records["b"][0][0]["wandb_group"]
    assert group_a != group_b and group_a.split("-", 1)[1] == group_b.split("-", 1)[1]


def test_auto_device_is_cuda_only_where_there_is_one(composer, monkeypatch) -> None:
    """``trainer.device=auto`` takes CUDA when torch sees it, else the CPU; asking for CUDA on a
    machine without it is a configuration error naming the key."""
    from nearpole_exp.build import pick_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert pick_device("auto").type == "cpu"
    cfg = composer([*TINY, "trainer.device=cuda"])
    with pytest.raises(ConfigError) as err:
        validate(cfg)
    assert err.value.key == "trainer.device"
    assert Runner(composer(TINY), Path(cfg.hydra.runtime.output_dir)).device.type == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert pick_device("auto").type == "cuda" and pick_device("cpu").type == "cpu"


def test_resume_refuses_a_checkpoint_of_other_settings(composer) -> None:
    first = composer([*TINY, "sampler=uniform"], "shared")
    Runner(first, Path(first.hydra.runtime.output_dir)).run()
    second = composer([*TINY, "sampler=importance"], "shared")
    with pytest.raises(ConfigError, match="sampler"):
        Runner(second, Path(second.hydra.runtime.output_dir)).run()


@pytest.mark.parametrize(("problem", "loss"), [("rational1d", "residual"), ("rr_ik_exact", "residual"),
                                               ("rr_ik", "relative")])
def test_auto_loss_uses_the_residual_only_where_labels_have_poles(composer, problem, loss) -> None:
    cfg = composer([*TINY, f"problem={problem}"], name=problem)
    assert Runner(cfg, Path(cfg.hydra.runtime.output_dir)).loss_kind == loss


def test_a_run_whose_model_diverges_fails_and_its_checkpoint_is_not_resumed(composer) -> None:
    # no polish: the exact solve after each round would rescue the parameters and hide the divergence
    cfg = composer([*TINY, "trainer.lr=1e300", "trainer.grad_clip=0", "polish=none"], "diverged")
    out = Path(cfg.hydra.runtime.output_dir)
    with pytest.raises(FloatingPointError, match="every step of round 2 was skipped"):
        Runner(cfg, out).run()
    assert json.loads((out / "summary.json").read_text())["status"] == "failed"
    # a checkpoint whose model is NaN (written before this check existed) is refused on resume
    good = composer([*TINY], "nan_checkpoint")
    good_out = Path(good.hydra.runtime.output_dir)
    Runner(good, good_out).run()
    state = torch.load(good_out / "checkpoints" / "last.pt", weights_only=True)
    state["model"] = {k: torch.full_like(v, float("nan")) if torch.is_floating_point(v) else v
                      for k, v in state["model"].items()}
    torch.save(state, good_out / "checkpoints" / "last.pt")
    with pytest.raises(CheckpointError, match="NaN or inf"):
        Runner(composer([*TINY], "nan_checkpoint"), good_out).run()
    assert non_finite_parameters({"w": torch.tensor([1.0, float("inf")]), "n": torch.tensor([2]),
                                  "b": torch.zeros(3)}) == ["w"]


def test_nan_parameters_fail_the_run_before_their_checkpoint_is_written(composer, monkeypatch) -> None:
    cfg = composer([*TINY], "nan_model")
    out = Path(cfg.hydra.runtime.output_dir)
    runner = Runner(cfg, out)
    original = Runner.train_step

    def poisoned(self):
        result = original(self)
        if self.state.step == 25:  # inside round 2 of 2 × 20 steps
            with torch.no_grad():
                next(self.model.parameters()).fill_(float("nan"))
        return result

    monkeypatch.setattr(Runner, "train_step", poisoned)
    with pytest.raises(FloatingPointError, match="became NaN or inf"):
        runner.run()
    state = torch.load(out / "checkpoints" / "last.pt", weights_only=True)
    assert state["loop"]["round"] == 1 and not non_finite_parameters(state["model"])
    assert json.loads((out / "summary.json").read_text())["status"] == "failed"


def test_run_files_get_the_permissions_open_would_give(composer) -> None:
    """summary.json and last.pt are written through a temp file (0600 by default); they end
    with 0666 less the umask, like every other file of the job."""
    from nearpole_exp.atomic import FILE_MODE

    cfg = composer([*TINY, "logger=none"])
    out = Path(cfg.hydra.runtime.output_dir)
    Runner(cfg, out).run()
    for path in (out / "summary.json", out / "checkpoints" / "last.pt"):
        assert path.stat().st_mode & 0o777 == FILE_MODE
    assert FILE_MODE & 0o044  # group and others may read under the usual umask 022


def test_load_run_gives_back_the_trained_model(composer) -> None:
    import nearpole_exp

    cfg = composer([*TINY, "logger=none"])
    out = Path(cfg.hydra.runtime.output_dir)
    (out / ".hydra").mkdir(parents=True, exist_ok=True)
    (out / ".hydra" / "config.yaml").write_text(OmegaConf.to_yaml(cfg))  # as Hydra saves it
    runner = Runner(cfg, out)
    summary = runner.run()
    run = nearpole_exp.load_run(out)
    assert not run.model.training and run.summary["eval/mse"] == summary["eval/mse"]
    assert run.config.problem._target_ == cfg.problem._target_
    x = torch.linspace(-1, 1, 101)[:, None]
    with torch.no_grad():
        expected = runner.model(x.to(next(runner.model.parameters()).dtype))
    torch.testing.assert_close(run.predict(x), expected)
    assert run.problem.evaluate(run.predict)["eval/mse"] == pytest.approx(summary["eval/mse"])
    with pytest.raises(FileNotFoundError, match="not a job directory"):
        nearpole_exp.load_run(out / "checkpoints")
    # a damaged summary and a config that no longer builds the trained model: errors that say so
    (out / "summary.json").write_text('{"status": "compl')
    with pytest.raises(OutputError, match="not valid JSON"):
        nearpole_exp.load_run(out)
    (out / "summary.json").unlink()
    config = (out / ".hydra" / "config.yaml").read_text()
    (out / ".hydra" / "config.yaml").write_text(config.replace("p_degree: 14", "p_degree: 9"))
    with pytest.raises(CheckpointError, match="does not fit the model"):
        nearpole_exp.load_run(out)


def test_output_without_a_terminal_is_whole_lines(tmp_path: Path, capfd) -> None:
    """Piped to a file: a line per round instead of a bar, and a long path never split across
    lines (Rich wraps at 80 columns there)."""
    from hydra.core.global_hydra import GlobalHydra

    from nearpole_exp.__main__ import main

    out = tmp_path / ("a-directory-name-long-enough-to-cross-eighty-columns" * 2) / "job"
    for extra in ([], ["resume=auto"]):
        GlobalHydra.instance().clear()
        main(["debug=default", "logger=none", "trainer.progress=true", f"hydra.run.dir={out}", *extra])
    GlobalHydra.instance().clear()
    lines = capfd.readouterr().out.splitlines()
    assert sum(line.startswith("round 1/2, step 20: loss") for line in lines) == 1
    assert not any(line.startswith("debug ━") for line in lines)  # no bar
    resumed = [line for line in lines if line.startswith("resumed from ")]
    assert len(resumed) == 1 and f"{out}/checkpoints/last.pt at round 2" in resumed[0]
