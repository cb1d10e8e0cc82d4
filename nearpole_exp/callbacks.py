"""Callbacks (the ``callbacks`` group): user additions to the loop without editing the runner.

Each entry of ``callbacks`` names a :class:`Callback` subclass (``_target_``) and its settings;
the loop calls its hooks in the order of the config. Hooks get the running loop (read its
``model``, ``problem``, ``state``, ``predict``…; call ``request_stop(reason)`` to end the run after
this round) and may add scalar metrics to a round's record. A callback that keeps state returns it
from ``state_dict`` so that a resumed run continues it exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nearpole_exp.errors import ConfigError, check


class Callback:
    """Hooks of the loop, each a no-op here; override the ones you need."""

    def on_round_start(self, loop: Any) -> None:
        """Before a round acquires its points (``loop.state.round`` rounds are done)."""

    def on_evaluation(self, loop: Any, metrics: dict[str, float]) -> None:
        """After each evaluation on the held-out set (``metrics``: ``eval/*``)."""

    def on_round_end(self, loop: Any, record: dict[str, Any]) -> None:
        """At the end of each round, before its record is logged: add keys to log them too."""

    def on_checkpoint(self, loop: Any, path: Path) -> None:
        """After ``checkpoints/last.pt`` was written."""

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""


@dataclass
class EarlyStoppingConfig:
    """Stop when ``monitor`` has not improved by more than ``min_delta`` (relative) for
    ``patience`` evaluations in a row; ``mode`` min for errors, max for scores."""

    monitor: str = "eval/mse"
    patience: int = 3
    min_delta: float = 0.0
    mode: str = "min"

    def __post_init__(self) -> None:
        check(self.patience >= 1, "patience", f"must be >= 1 evaluation, got {self.patience}")
        check(0.0 <= self.min_delta < 1.0, "min_delta",
              f"is a relative improvement in [0, 1), got {self.min_delta}")
        check(self.mode in ("min", "max"), "mode", f"must be min or max, got {self.mode!r}")
        check(bool(self.monitor), "monitor", "must name a metric, e.g. eval/mse")


class EarlyStopping(Callback):
    """Ends the run once the monitored metric stops improving (the run still finishes as
    ``completed``: its last evaluation, summary and checkpoint are written, with the reason in
    ``stopped``)."""

    config_class = EarlyStoppingConfig

    def __init__(self, monitor: str = "eval/mse", patience: int = 3, min_delta: float = 0.0,
                 mode: str = "min") -> None:
        self.config = EarlyStoppingConfig(monitor, patience, min_delta, mode)
        self.best = math.inf if mode == "min" else -math.inf
        self.best_round = 0
        self.stale = 0

    def _improved(self, value: float) -> bool:
        c = self.config
        if self.best in (math.inf, -math.inf):
            return math.isfinite(value)
        if c.mode == "min":
            return value < self.best - c.min_delta * abs(self.best)
        return value > self.best + c.min_delta * abs(self.best)

    def on_evaluation(self, loop: Any, metrics: dict[str, float]) -> None:
        c = self.config
        if c.monitor not in metrics:
            known = ", ".join(sorted(metrics)[:12])
            raise ConfigError("monitor", f"{c.monitor!r} is not among this problem's metrics "
                              f"({known} …)")
        value = float(metrics[c.monitor])
        if self._improved(value):
            self.best, self.best_round, self.stale = value, loop.state.round + 1, 0
            return
        self.stale += 1
        if self.stale >= c.patience:
            loop.request_stop(f"early stopping: {c.monitor} has not improved on {self.best:.4g} "
                              f"(round {self.best_round}) for {self.stale} evaluations")

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "best_round": self.best_round, "stale": self.stale}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best, self.best_round, self.stale = state["best"], state["best_round"], state["stale"]


@dataclass
class ProfilerConfig:
    """Profile round ``round`` (1-based; round 1 also pays start-up costs) with torch's profiler;
    ``row_limit`` operators in the table."""

    round: int = 2
    row_limit: int = 25

    def __post_init__(self) -> None:
        check(self.round >= 1, "round", f"is 1-based, got {self.round}")
        check(self.row_limit >= 1, "row_limit", f"must be >= 1, got {self.row_limit}")


class Profiler(Callback):
    """torch.profiler over one whole round (acquisition, steps, evaluation, checkpoint): writes
    ``profile/trace.json`` (chrome://tracing, Perfetto) and ``profile/top_ops.txt``, the operators
    by total CPU time (CUDA too where the run uses it)."""

    config_class = ProfilerConfig

    def __init__(self, round: int = 2, row_limit: int = 25) -> None:
        self.config = ProfilerConfig(round, row_limit)
        self._profile: Any = None

    def on_round_start(self, loop: Any) -> None:
        if loop.state.round + 1 != self.config.round:
            return
        from torch.profiler import ProfilerActivity, profile

        activities = [ProfilerActivity.CPU]
        if loop.device.type == "cuda":
            activities.append(ProfilerActivity.CUDA)
        self._profile = profile(activities=activities, record_shapes=True)
        self._profile.__enter__()

    def on_round_end(self, loop: Any, record: dict[str, Any]) -> None:
        if self._profile is None:
            return
        profiled, self._profile = self._profile, None
        profiled.__exit__(None, None, None)
        folder = Path(loop.output_dir) / "profile"
        folder.mkdir(parents=True, exist_ok=True)
        profiled.export_chrome_trace(str(folder / "trace.json"))
        sort = "cuda_time_total" if loop.device.type == "cuda" else "cpu_time_total"
        table = profiled.key_averages().table(sort_by=sort, row_limit=self.config.row_limit)
        (folder / "top_ops.txt").write_text(table + "\n")
        record["profile/round"] = self.config.round
