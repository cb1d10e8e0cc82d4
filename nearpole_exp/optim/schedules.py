"""Learning-rate schedules (``scheduler`` group): a factor of ``trainer.lr`` per step, with an
optional linear warm-up from 0 over ``warmup_steps``."""

from __future__ import annotations

import dataclasses
import math
from abc import ABC, abstractmethod
from dataclasses import dataclass

from nearpole_exp.errors import check


@dataclass
class ConstantConfig:
    """A constant rate after an optional linear warm-up."""

    warmup_steps: int = 0

    def __post_init__(self) -> None:
        check(self.warmup_steps >= 0, "warmup_steps", f"must be >= 0, got {self.warmup_steps}")


@dataclass
class CosineConfig(ConstantConfig):
    """Half a cosine from 1 down to ``floor`` over the run, after an optional warm-up."""

    floor: float = 0.05

    def __post_init__(self) -> None:
        super().__post_init__()
        check(0.0 <= self.floor <= 1.0, "floor", f"must lie in [0, 1], got {self.floor}")


class Schedule(ABC):
    """The factor of the base learning rate at ``step`` of a run of ``total`` steps."""

    config: ConstantConfig

    def factor(self, step: int, total: int) -> float:
        warmup = self.config.warmup_steps
        if step < warmup:
            return (step + 1) / warmup
        return self.decay(step - warmup, max(total - warmup, 1))

    @abstractmethod
    def decay(self, step: int, total: int) -> float:
        """The factor after the warm-up, ``step`` of ``total``."""


class Constant(Schedule):
    """The base rate throughout (after the warm-up)."""

    config_class = ConstantConfig

    def __init__(self, config: ConstantConfig | None = None, **overrides: int) -> None:
        self.config = dataclasses.replace(config or ConstantConfig(), **overrides)

    def decay(self, step: int, total: int) -> float:
        return 1.0


class Cosine(Schedule):
    """floor + (1 − floor)·½(1 + cos(π·step/total)): from the base rate down to ``floor`` of it."""

    config_class = CosineConfig

    def __init__(self, config: CosineConfig | None = None, **overrides: float) -> None:
        self.config = dataclasses.replace(config or CosineConfig(), **overrides)

    def decay(self, step: int, total: int) -> float:
        floor = self.config.floor
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(step / max(total, 1), 1.0)))
