"""Hybrid-gradient band δ(t) for :func:`nearpole_exp.models.rational.hybrid_divide`.

Samples with |Q| < δ get the bounded (saturating) gradient, the rest the exact one; δ = 0
means the exact gradient everywhere. The schedule:

- warm-up (step < warmup_steps): δ = delta_init, the widest band. The original returned
  "Mask-REAL" (no gradient from the pole's neighbourhood) here; with hybrid_divide the closest
  safe equivalent is the widest saturating band, so early steps never see 1/Q² gradients.
- transition over ``transition_steps``: p = (step − warmup)/transition ∈ [0, 1] and
  exponential δ0·(δf/δ0)^p, linear δ0 + (δf − δ0)·p or cosine δf + ½(δ0 − δf)(1 + cos πp);
  afterwards δ = delta_final.
- adaptive_delta: δ ← min(max(δ, adaptive_scale·Q_p), adaptive_cap·δ0), with Q_p the
  ``adaptive_quantile`` of the current batch's |Q| (a robust q_min). The lowest p-share of the
  batch, which is the sampler's near-pole focus, then always trains in the bounded mode, and no
  sample's gradient exceeds that of the quantile sample; a near-pole sampler therefore widens
  δ while a uniform batch leaves it at the schedule (up to the cap).
- finally δ ← max(δ, min_delta).

``enable=False`` gives the exact gradient (δ = 0) at every step.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from nearpole_exp.errors import check

SCHEDULES = ("exponential", "linear", "cosine")


@dataclass
class DeltaScheduleConfig:
    """Warm-up, decay shape and adaptive widening of the hybrid-gradient band δ.

    For :class:`~nearpole_exp.models.rational.RationalModel` (unit-norm Q, |Q| ≲ 2) the Hydra
    option ``gradient=hybrid`` starts at delta_init = 10, above every |Q|, so that a pole can
    move into the domain from a pole-free start; the library default 1e-2 suits a model that
    already has its poles.
    """

    enable: bool = True
    warmup_steps: int = 0
    transition_steps: int = 1000
    delta_init: float = 1e-2
    delta_final: float = 1e-6
    schedule: str = "exponential"
    adaptive_delta: bool = True
    adaptive_quantile: float = 0.1
    adaptive_scale: float = 1.0
    adaptive_cap: float = 2.0
    min_delta: float = 1e-8

    def __post_init__(self) -> None:
        check(self.warmup_steps >= 0, "warmup_steps", "must be >= 0")
        check(self.transition_steps >= 0, "transition_steps", "must be >= 0")
        check(self.delta_init > 0, "delta_init", "must be > 0")
        check(0 < self.delta_final <= self.delta_init, "delta_final",
              "must be in (0, delta_init]")
        check(self.schedule in SCHEDULES, "schedule",
              f"must be one of {SCHEDULES}, got {self.schedule!r}")
        check(0.0 <= self.adaptive_quantile <= 1.0, "adaptive_quantile", "must be in [0, 1]")
        check(self.adaptive_scale > 0, "adaptive_scale", "must be > 0")
        check(self.adaptive_cap >= 1.0, "adaptive_cap", "must be >= 1 (a multiple of delta_init)")
        check(self.min_delta >= 0, "min_delta", "must be >= 0")


class DeltaSchedule:
    """δ(step, batch |Q|) per the module docstring; ``metrics()`` describes the last call."""

    config_class = DeltaScheduleConfig  # the schema of its config group option (config.py)

    def __init__(self, config: DeltaScheduleConfig | None = None, **overrides: Any) -> None:
        self.config = dataclasses.replace(config or DeltaScheduleConfig(), **overrides)
        self.last_step = -1
        self.last_delta = 0.0
        self.last_scheduled = 0.0
        self.last_quantile = math.nan
        self.last_saturated = math.nan

    def scheduled(self, step: int) -> float:
        """δ from the warm-up/transition schedule alone (no adaptation, no floor)."""
        cfg = self.config
        if step < cfg.warmup_steps:
            return cfg.delta_init
        if cfg.transition_steps == 0:
            return cfg.delta_final
        p = min(max((step - cfg.warmup_steps) / cfg.transition_steps, 0.0), 1.0)
        d0, df = cfg.delta_init, cfg.delta_final
        if cfg.schedule == "linear":
            return d0 + (df - d0) * p
        if cfg.schedule == "cosine":
            return df + 0.5 * (d0 - df) * (1.0 + math.cos(math.pi * p))
        return d0 * (df / d0) ** p

    def delta(self, step: int, batch_q_abs: Tensor | None = None) -> float:
        """The band for this step; 0.0 means the exact gradient."""
        cfg = self.config
        self.last_step = step
        if not cfg.enable:
            self.last_delta = self.last_scheduled = 0.0
            self._record_batch(batch_q_abs, 0.0)
            return 0.0
        d = self.scheduled(step)
        self.last_scheduled = d
        q = None if batch_q_abs is None else batch_q_abs.detach().reshape(-1).abs().double()
        if q is not None:
            q = q[torch.isfinite(q)]
        self.last_quantile = math.nan
        if q is not None and q.numel():
            self.last_quantile = float(torch.quantile(q, cfg.adaptive_quantile))
            if cfg.adaptive_delta:
                # d <= delta_init <= cap·delta_init, so the cap never cuts below the schedule.
                d = min(max(d, cfg.adaptive_scale * self.last_quantile),
                        cfg.adaptive_cap * cfg.delta_init)
        d = max(d, cfg.min_delta)
        self.last_delta = d
        self._record_batch(batch_q_abs, d)
        return d

    def _record_batch(self, batch_q_abs: Tensor | None, d: float) -> None:
        if batch_q_abs is None or batch_q_abs.numel() == 0:
            self.last_saturated = math.nan
            return
        self.last_saturated = float((batch_q_abs.detach().abs() < d).float().mean())

    def phase(self, step: int) -> str:
        """``warmup``, ``transition`` or ``final`` (``exact`` when disabled)."""
        cfg = self.config
        if not cfg.enable:
            return "exact"
        if step < cfg.warmup_steps:
            return "warmup"
        return "transition" if step < cfg.warmup_steps + cfg.transition_steps else "final"

    def metrics(self) -> dict[str, float]:
        return {
            "gradient/delta": self.last_delta,
            "gradient/delta_scheduled": self.last_scheduled,
            "gradient/q_quantile": self.last_quantile,
            "gradient/saturated_fraction": self.last_saturated,
        }

    def state_dict(self) -> dict[str, Any]:
        return {"last_step": self.last_step, "last_delta": self.last_delta,
                "last_scheduled": self.last_scheduled, "last_quantile": self.last_quantile,
                "last_saturated": self.last_saturated}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.last_step = int(state["last_step"])
        self.last_delta = float(state["last_delta"])
        self.last_scheduled = float(state["last_scheduled"])
        self.last_quantile = float(state["last_quantile"])
        self.last_saturated = float(state["last_saturated"])


class ExactGradient(DeltaSchedule):
    """The exact gradient everywhere (δ = 0), e.g. for MLP models or ablations."""

    def __init__(self, config: DeltaScheduleConfig | None = None, **overrides: Any) -> None:
        super().__init__(config, **{**overrides, "enable": False})
