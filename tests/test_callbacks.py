"""Callbacks, the paths group and the debug presets: user additions to the loop without editing
the runner, checked at compose time, saved in checkpoints, and the presets doing what they say."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from nearpole_exp.callbacks import Callback, EarlyStopping
from nearpole_exp.checkpoint import load_checkpoint
from nearpole_exp.config.validate import validate
from nearpole_exp.errors import ConfigError
from nearpole_exp.runner import Runner

from .conftest import TINY


class RecordingCallback(Callback):
    """Adds the round's mean loss, doubled, to every record; counts its hooks and keeps state."""

    def __init__(self, scale: float = 2.0) -> None:
        self.scale = scale
        self.calls: dict[str, int] = {"on_round_start": 0, "on_round_end": 0, "on_evaluation": 0,
                                      "on_checkpoint": 0}

    def on_round_start(self, loop: Any) -> None:
        self.calls["on_round_start"] += 1

    def on_round_end(self, loop: Any, record: dict[str, Any]) -> None:
        self.calls["on_round_end"] += 1
        record["custom/scaled_loss"] = self.scale * record["train/loss"]

    def on_evaluation(self, loop: Any, metrics: dict[str, float]) -> None:
        self.calls["on_evaluation"] += 1

    def on_checkpoint(self, loop: Any, path: Path) -> None:
        assert path.exists()
        self.calls["on_checkpoint"] += 1

    def state_dict(self) -> dict[str, Any]:
        return dict(self.calls)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.calls = dict(state)


class _Loop:
    """The part of the loop EarlyStopping reads and calls."""

    def __init__(self) -> None:
        self.state = type("State", (), {"round": 0})()
        self.stopped = ""

    def request_stop(self, reason: str) -> None:
        self.stopped = reason


def test_early_stopping_waits_patience_evaluations_without_a_relative_improvement() -> None:
    stop, loop = EarlyStopping(monitor="eval/mse", patience=2, min_delta=0.1), _Loop()
    for r, value in enumerate([1.0, 0.5, 0.46, 0.3, 0.29, 0.28]):
        loop.state.round = r
        stop.on_evaluation(loop, {"eval/mse": value})
        if loop.stopped:
            break
    # 0.46 is within 10 % of 0.5 (stale 1), 0.3 improves, 0.29 and 0.28 do not: stops at round 6
    assert r == 5 and stop.best == 0.3 and stop.best_round == 4
    assert "has not improved on 0.3 (round 4) for 2 evaluations" in loop.stopped
    resumed = EarlyStopping(monitor="eval/mse", patience=2, min_delta=0.1)
    resumed.load_state_dict(stop.state_dict())
    assert (resumed.best, resumed.best_round, resumed.stale) == (0.3, 4, 2)
    scores, loop = EarlyStopping(monitor="eval/r2", patience=1, mode="max"), _Loop()
    for value in (0.5, 0.9, 0.8):
        scores.on_evaluation(loop, {"eval/r2": value})
    assert scores.best == 0.9 and loop.stopped


def test_an_early_stopped_run_completes_with_its_reason_and_stays_stopped(composer) -> None:
    overrides = [*TINY, "callbacks=early_stopping", "callbacks.early_stopping.patience=1",
                 "callbacks.early_stopping.monitor=eval/relerr_median/B4", "trainer.rounds=8",
                 "trainer.steps_per_round=5", "trainer.lr=1e-6", "polish=none"]
    cfg = composer(overrides)
    out = Path(cfg.hydra.runtime.output_dir)
    summary = Runner(cfg, out).run()
    assert summary["status"] == "completed" and summary["round"] < 8
    assert summary["stopped"].startswith("early stopping: eval/relerr_median/B4 has not improved")
    ckpt = load_checkpoint(out / "checkpoints" / "last.pt")
    assert ckpt["loop"]["round"] == summary["round"] and ckpt["loop"]["stopped"]
    assert ckpt["callback/early_stopping"]["stale"] == 1
    again = Runner(composer(overrides), out).run()  # resumed: nothing left to train
    assert (again["round"], again["step"]) == (summary["round"], summary["step"])


def test_a_users_callback_adds_metrics_and_is_checkpointed(composer) -> None:
    target = f"{__name__}.RecordingCallback"
    cfg = composer([*TINY, f"+callbacks.recorder._target_={target}", "+callbacks.recorder.scale=3",
                    "trainer.rounds=3", "trainer.eval_every=2"])
    out = Path(cfg.hydra.runtime.output_dir)
    runner = Runner(cfg, out)
    runner.run()
    calls = runner.callbacks["recorder"].calls
    # rounds 2 and 3 evaluate (every 2nd, and the last); round ends checkpoint every round here
    assert calls == {"on_round_start": 3, "on_round_end": 3, "on_evaluation": 2,
                     "on_checkpoint": runner.tc.rounds // runner.tc.checkpoint_every}
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert all(r["custom/scaled_loss"] == pytest.approx(3 * r["train/loss"]) for r in records)
    saved = load_checkpoint(out / "checkpoints" / "last.pt")["callback/recorder"]
    assert saved["on_round_end"] == 3


@pytest.mark.parametrize(("overrides", "key", "message"), [
    (["callbacks=early_stopping", "+callbacks.early_stopping.patiense=2"],
     "callbacks.early_stopping.patiense", "did you mean callbacks.early_stopping.patience"),
    (["callbacks=early_stopping", "callbacks.early_stopping.patience=0"],
     "callbacks.early_stopping.patience", ">= 1"),
    (["+callbacks.mine._target_=collections.OrderedDict"], "callbacks.mine._target_", "Callback"),
    (["+callbacks.mine._target_=no_such_module.Thing"], "callbacks.mine._target_", "cannot be imported"),
    (["+callbacks.mine.patience=2"], "callbacks.mine._target_", "must name a Callback class"),
])
def test_bad_callbacks_are_refused_naming_the_key(composer, overrides, key, message) -> None:
    cfg = composer([*TINY, *overrides])
    with pytest.raises(ConfigError) as err:
        validate(cfg)
        Runner(cfg, Path(cfg.hydra.runtime.output_dir))
    assert err.value.key == key and message in str(err.value)


def test_a_monitor_the_problem_does_not_report_fails_naming_the_key(composer) -> None:
    cfg = composer([*TINY, "callbacks=early_stopping", "callbacks.early_stopping.monitor=eval/nrmse_max"])
    with pytest.raises(ConfigError) as err:
        Runner(cfg, Path(cfg.hydra.runtime.output_dir)).run()
    assert err.value.key == "callbacks.early_stopping.monitor" and "eval/mse" in str(err.value)


def test_the_shipped_callback_options_match_their_classes_defaults(composer) -> None:
    import dataclasses

    from nearpole_exp.callbacks import EarlyStoppingConfig, ProfilerConfig

    cfg = composer([*TINY, "callbacks=early_stopping"])
    node = {k: v for k, v in cfg.callbacks.early_stopping.items() if k != "_target_"}
    assert node == dataclasses.asdict(EarlyStoppingConfig())
    cfg = composer([*TINY, "callbacks=profiler"])
    assert {k: v for k, v in cfg.callbacks.profiler.items() if k != "_target_"} == \
        dataclasses.asdict(ProfilerConfig())


def test_the_overfit_preset_drives_the_training_loss_down_by_decades(composer) -> None:
    cfg = composer(["debug=overfit", "polish=none", "trainer.progress=false"])
    runner = Runner(cfg, Path(cfg.hydra.runtime.output_dir))
    runner.run()
    assert len(runner.pool) == 64  # one batch: the pool, labelled once
    losses = [json.loads(line)["train/loss"] for line in
              (Path(cfg.hydra.runtime.output_dir) / "metrics.jsonl").read_text().splitlines()]
    assert losses[-1] < 1e-2 * losses[0]  # AdamW alone (the polish would take it to round-off)


def test_the_profile_preset_writes_a_trace_of_one_round(composer) -> None:
    cfg = composer(["debug=profile", "trainer.steps_per_round=5", "trainer.progress=false"])
    out = Path(cfg.hydra.runtime.output_dir)
    Runner(cfg, out).run()
    trace = json.loads((out / "profile" / "trace.json").read_text())
    assert len(trace["traceEvents"]) > 100
    top = (out / "profile" / "top_ops.txt").read_text()
    assert "aten::" in top and "CPU total" in top


def test_paths_place_the_run_and_a_command_solvers_scratch(composer, tmp_path) -> None:
    cfg = composer([*TINY, f"paths.output={tmp_path / 'elsewhere'}", "problem=command",
                    "problem.command=true", "paths.scratch=/scratch/me"], "paths")
    assert str(cfg.hydra.sweep.dir).startswith(str(tmp_path / "elsewhere" / "debug" / "multiruns"))
    assert cfg.problem.work_dir == "/scratch/me"
    assert cfg.paths.cache.endswith(".cache/nearpole_exp")


def test_an_output_path_that_cannot_be_made_is_one_line_naming_it(cli) -> None:
    code, _, stderr = cli("debug=default", "paths.output=/proc/no_such_place")
    assert code == 2 and "Traceback" not in stderr
    assert "paths.output" in stderr and "/proc/no_such_place" in stderr


def test_runs_and_sweeps_without_a_directory_go_under_paths_output(cli, tmp_path, monkeypatch) -> None:
    """The default job and sweep directories resolve before Hydra's runtime exists (a sweep's
    directory is made by the launcher): both land under the launch directory's outputs/."""
    monkeypatch.chdir(tmp_path)
    code, _, stderr = cli("debug=default")
    assert code == 0, stderr
    code, _, stderr = cli("-m", "debug=default", "seed=0")
    assert code == 0, stderr
    assert len(list((tmp_path / "outputs" / "debug" / "runs").glob("*/summary.json"))) == 1
    assert len(list((tmp_path / "outputs" / "debug" / "multiruns").glob("*/*/summary.json"))) == 1
