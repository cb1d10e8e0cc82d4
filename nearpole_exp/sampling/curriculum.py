"""Far → mid → near curriculum on geometric distance rings, as a prior on the batch sampler.

Rings come from ascending ``edges`` e_1 < … < e_K: ring 0 = [0, e_1), ring k = [e_k, e_{k+1}),
ring K = [e_K, ∞), on the problem's distance (or |Q|, per ``variable``; NaN counts as far).
Stage s focuses on ring K − s: stage 0 is the farthest ring alone (the warm-up), each later
stage adds the next ring inwards. Within a stage, the *focus* ring gets per-sample multiplier
1, the farther (*easy*, already learned) rings share ``easy_share`` of the mass of easy + focus
samples (soft mixing, from ``easy_share_initial`` at stage 1 to ``easy_share_final`` at stage
K), and nearer (*locked*) rings get ``locked_weight`` (0: not sampled). After the last stage
the curriculum is complete and :meth:`BandCurriculum.prior` returns None (the full pool).

Stage gating, once per round in :meth:`BandCurriculum.update`: after at least ``min_dwell``
rounds (and ``warmup_rounds`` for stage 0), advance when ``metrics[gate_key] <= gate_threshold``
(``gate_key`` may contain ``{stage}``; an empty key advances every ``min_dwell`` rounds), and
always after ``max_dwell`` rounds so a run never stalls. With ``regress_threshold > 0`` a stage
whose ``regress_key`` metric exceeds it goes back one stage, at most ``max_regressions`` times.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from nearpole_exp.errors import check

log = logging.getLogger(__name__)

VARIABLES = ("distance", "q_abs")


@dataclass
class CurriculumConfig:
    """Ring edges, stage gating and easy/hard mixing of :class:`BandCurriculum`."""

    edges: list[float] = field(default_factory=lambda: [1e-2, 1e-1])
    variable: str = "distance"
    warmup_rounds: int = 0
    min_dwell: int = 1
    max_dwell: int = 20
    gate_key: str = "train/loss"
    gate_threshold: float = 1.0
    regress_key: str = ""
    regress_threshold: float = 0.0
    max_regressions: int = 2
    easy_share_initial: float = 0.5
    easy_share_final: float = 0.2
    locked_weight: float = 0.0

    def __post_init__(self) -> None:
        edges = [float(e) for e in self.edges]
        check(len(edges) >= 1, "edges", "needs at least one edge")
        check(all(e > 0 and math.isfinite(e) for e in edges), "edges", "must be finite and > 0")
        check(all(a < b for a, b in itertools.pairwise(edges)), "edges",
              "must be strictly increasing")
        check(self.variable in VARIABLES, "variable", f"must be one of {VARIABLES}")
        check(self.warmup_rounds >= 0, "warmup_rounds", "must be >= 0")
        check(self.min_dwell >= 1, "min_dwell", "must be >= 1")
        check(self.max_dwell >= self.min_dwell, "max_dwell", "must be >= min_dwell")
        check(self.regress_threshold >= 0, "regress_threshold", "must be >= 0 (0 disables)")
        check(self.max_regressions >= 0, "max_regressions", "must be >= 0")
        check(0.0 <= self.easy_share_initial < 1.0, "easy_share_initial", "must be in [0, 1)")
        check(0.0 <= self.easy_share_final < 1.0, "easy_share_final", "must be in [0, 1)")
        check(self.locked_weight >= 0, "locked_weight", "must be >= 0")


class Curriculum(ABC):
    """What the runner calls: ``prior`` per batch, ``update`` once per round."""

    variable: str = "distance"

    @abstractmethod
    def prior(self, values: Tensor) -> Tensor | None:
        """Non-negative per-pool-sample multiplier of the sampling density, or None."""

    @abstractmethod
    def update(self, round_idx: int, metrics: dict[str, float]) -> None:
        """Advance, hold or regress the stage after round ``round_idx``."""

    @abstractmethod
    def metrics(self) -> dict[str, float]:
        """``curriculum/*`` scalars."""

    @abstractmethod
    def state_dict(self) -> dict[str, Any]: ...

    @abstractmethod
    def load_state_dict(self, state: dict[str, Any]) -> None: ...


class NoCurriculum(Curriculum):
    """The whole pool from the start."""

    def __init__(self, **_: Any) -> None:
        pass

    def prior(self, values: Tensor) -> Tensor | None:
        return None

    def update(self, round_idx: int, metrics: dict[str, float]) -> None:
        return None

    def metrics(self) -> dict[str, float]:
        return {}

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        return None


class BandCurriculum(Curriculum):
    """Stages over distance rings, gated on a metric with min/max dwell (module docstring)."""

    config_class = CurriculumConfig  # the schema of its config group option (config.py)

    def __init__(self, config: CurriculumConfig | None = None, **overrides: Any) -> None:
        self.config = dataclasses.replace(config or CurriculumConfig(), **overrides)
        self.variable = self.config.variable
        self.edges = [float(e) for e in self.config.edges]
        self.n_stages = len(self.edges) + 1
        self.stage = 0
        self.dwell = 0
        self.advances = 0
        self.regressions = 0
        self.forced = 0
        self.last_gate = math.nan

    @property
    def complete(self) -> bool:
        """True once the last stage has been passed (the prior is then None)."""
        return self.stage >= self.n_stages

    def focus_ring(self) -> int:
        """Index of the focus ring (0 = nearest), from the stage."""
        return self.n_stages - 1 - min(self.stage, self.n_stages - 1)

    def band(self) -> tuple[float, float]:
        """(low, high) edges of the focus ring."""
        ring = self.focus_ring()
        bounds = [0.0, *self.edges, math.inf]
        return bounds[ring], bounds[ring + 1]

    def easy_share(self) -> float:
        """Mass share of the easy rings at the current stage (0 at stage 0)."""
        if self.stage == 0:
            return 0.0
        cfg = self.config
        last = self.n_stages - 1
        t = 0.0 if last <= 1 else (min(self.stage, last) - 1) / (last - 1)
        return cfg.easy_share_initial + t * (cfg.easy_share_final - cfg.easy_share_initial)

    def prior(self, values: Tensor) -> Tensor | None:
        if self.complete:
            return None
        v = values.detach().reshape(-1).abs().nan_to_num(nan=math.inf)
        edges = torch.tensor(self.edges, dtype=v.dtype, device=v.device)
        ring = torch.bucketize(v, edges, right=True)
        focus_ring = self.focus_ring()
        easy = ring > focus_ring
        focus = ring == focus_ring
        n_easy = easy.sum().to(torch.float32)
        n_focus = focus.sum().to(torch.float32)
        es = self.easy_share()
        # Easy per-sample weight c so that c·n_easy / (c·n_easy + n_focus) = es.
        c = torch.where((n_focus > 0) & (n_easy > 0),
                        es * n_focus / ((1.0 - es) * n_easy.clamp_min(1.0)),
                        torch.ones((), device=v.device))
        out = torch.full_like(v, self.config.locked_weight, dtype=torch.float32)
        out = torch.where(focus, torch.ones_like(out), out)
        return torch.where(easy, c.expand_as(out), out)

    def _gate_value(self, key: str, metrics: dict[str, float]) -> float:
        if not key:
            return math.nan
        value = metrics.get(key.format(stage=self.stage))
        return math.nan if value is None else float(value)

    def update(self, round_idx: int, metrics: dict[str, float]) -> None:
        if self.complete:
            return
        cfg = self.config
        self.dwell += 1
        gate = self._gate_value(cfg.gate_key, metrics)
        self.last_gate = gate
        min_dwell = max(cfg.min_dwell, cfg.warmup_rounds if self.stage == 0 else 0)
        max_dwell = max(cfg.max_dwell, min_dwell)
        if self.dwell < min_dwell:
            return
        regress_value = self._gate_value(cfg.regress_key or cfg.gate_key, metrics)
        if (cfg.regress_threshold > 0 and self.stage > 0 and self.regressions < cfg.max_regressions
                and regress_value > cfg.regress_threshold):
            self.stage -= 1
            self.regressions += 1
            self.dwell = 0
            log.info("curriculum: round %d, %s = %.4g > %.4g, back to stage %d", round_idx,
                     cfg.regress_key or cfg.gate_key, regress_value, cfg.regress_threshold,
                     self.stage)
            return
        passed = not cfg.gate_key or gate <= cfg.gate_threshold
        if passed or self.dwell >= max_dwell:
            if not passed:
                self.forced += 1
            self.stage += 1
            self.advances += 1
            self.dwell = 0
            log.info("curriculum: round %d, stage %d (%s)", round_idx, self.stage,
                     "gate passed" if passed else "max dwell")

    def metrics(self) -> dict[str, float]:
        low, high = self.band()
        return {
            "curriculum/stage": float(self.stage),
            "curriculum/band_low": low,
            "curriculum/band_high": high,
            "curriculum/easy_share": self.easy_share() if not self.complete else math.nan,
            "curriculum/dwell": float(self.dwell),
            "curriculum/complete": float(self.complete),
            "curriculum/advances": float(self.advances),
            "curriculum/forced_advances": float(self.forced),
            "curriculum/regressions": float(self.regressions),
            "curriculum/gate": self.last_gate,
        }

    def state_dict(self) -> dict[str, Any]:
        return {"stage": self.stage, "dwell": self.dwell, "advances": self.advances,
                "regressions": self.regressions, "forced": self.forced,
                "last_gate": self.last_gate}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.stage = int(state["stage"])
        self.dwell = int(state["dwell"])
        self.advances = int(state["advances"])
        self.regressions = int(state["regressions"])
        self.forced = int(state["forced"])
        self.last_gate = float(state["last_gate"])
