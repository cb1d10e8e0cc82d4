"""rational1d: y = 1/(x − a) + c1·x + c2·x² on an interval, one simple pole at a."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch
from torch import Tensor

from nearpole_exp.errors import check
from nearpole_exp.problems.poles import LabelNoise, PoleProblem


@dataclass
class Rational1DConfig(LabelNoise):
    """The pole ``a``, the interval, the smooth part's coefficients (c1, c2), and an optional
    relative training-label noise σ (``label_noise``; y·(1 + σ·ε), see PoleProblem.label)."""

    pole: float = 0.3
    low: float = -1.0
    high: float = 1.0
    smooth: tuple[float, float] = (0.5, 0.1)
    n_eval: int = 2000

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("low", "high"):
            check(math.isfinite(getattr(self, name)), name,
                  f"must be a finite number (the box is sampled uniformly), got {getattr(self, name)}")
        check(self.high > self.low, "high", f"must exceed low={self.low}, got {self.high}")
        check(self.low < self.pole < self.high, "pole",
              f"must lie inside ({self.low}, {self.high}), got {self.pole}")
        check(len(self.smooth) == 2, "smooth", "must be the two coefficients (c1, c2) of x and x²")
        check(self.n_eval >= 10, "n_eval", f"must be at least 10, got {self.n_eval}")


class Rational1D(PoleProblem):
    """One pole at ``pole`` plus a smooth polynomial part; Q(x) = x − a."""

    config_class = Rational1DConfig  # the schema of its config group option (config.py)

    name = "rational1d"

    def __init__(self, config: Rational1DConfig | None = None, **overrides: object) -> None:
        self.config = dataclasses.replace(config or Rational1DConfig(), **overrides)
        cfg = self.config
        super().__init__(cfg.low, cfg.high, cfg.n_eval)
        self.pole = float(cfg.pole)
        self.smooth = tuple(float(c) for c in cfg.smooth)
        self.label_noise = float(cfg.label_noise)
        self.noise_seed = int(cfg.noise_seed)

    def target(self, x: Tensor) -> Tensor:
        x64 = x.double()
        c1, c2 = self.smooth
        y = 1.0 / (x64 - self.pole) + c1 * x64 + c2 * x64**2
        return y.to(x.dtype)

    def q(self, inputs: Tensor) -> Tensor:
        return (inputs[:, 0].double() - self.pole).to(inputs.dtype)

    def distance(self, inputs: Tensor) -> Tensor:
        return (inputs[:, 0].double() - self.pole).abs().to(inputs.dtype)

    def poles(self) -> Tensor:
        """The pole in float64 (a float32 0.3 is 1.2e-8 off, which would floor the PLE)."""
        return torch.tensor([self.pole], dtype=torch.float64)
