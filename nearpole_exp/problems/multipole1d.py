"""multipole1d: y = Σ r_i/(x − a_i) + c1·x + c2·x² on an interval, several simple poles."""

from __future__ import annotations

import dataclasses
import itertools
import math
from dataclasses import dataclass

import torch
from torch import Tensor

from nearpole_exp.errors import check
from nearpole_exp.problems.base import ModelQ, Predictor
from nearpole_exp.problems.poles import LabelNoise, PoleProblem

#: Poles closer than this would share their B0…B3 neighbourhoods (upper edge of B3).
MIN_POLE_GAP = 1e-2


@dataclass
class MultiPole1DConfig(LabelNoise):
    """Poles a_i with residues r_i, the smooth part's (c1, c2) and the interval.

    Defaults: three poles at non-symmetric places with residues of mixed sign.
    ``normalize_q`` scales Q = Π(x − a_i) to unit max |Q| on the interval, so |Q| thresholds
    mean the same whatever the number of poles.
    """

    poles: tuple[float, ...] = (-0.55, 0.1, 0.62)
    residues: tuple[float, ...] = (1.0, -0.5, 0.8)
    smooth: tuple[float, ...] = (0.5, 0.1)
    low: float = -1.0
    high: float = 1.0
    normalize_q: bool = True
    n_eval: int = 2000

    def __post_init__(self) -> None:
        super().__post_init__()
        self.poles = tuple(float(p) for p in self.poles)
        self.residues = tuple(float(r) for r in self.residues)
        self.smooth = tuple(float(c) for c in self.smooth)
        for name in ("low", "high"):
            check(math.isfinite(getattr(self, name)), name,
                  f"must be a finite number (the box is sampled uniformly), got {getattr(self, name)}")
        check(self.high > self.low, "high", f"must exceed low={self.low}")
        check(len(self.poles) >= 1, "poles", "needs at least one pole")
        check(all(self.low < p < self.high for p in self.poles), "poles",
              f"every pole must lie strictly inside ({self.low}, {self.high}), got {self.poles}")
        gaps = [b - a for a, b in itertools.pairwise(sorted(self.poles))]
        check(all(g >= MIN_POLE_GAP for g in gaps), "poles",
              f"poles must be distinct and at least {MIN_POLE_GAP} apart, got {self.poles}")
        check(len(self.residues) == len(self.poles), "residues",
              f"needs one residue per pole ({len(self.poles)}), got {len(self.residues)}")
        check(all(r != 0.0 for r in self.residues), "residues", "a zero residue removes its pole")
        check(len(self.smooth) == 2, "smooth", "must be the two coefficients (c1, c2) of x and x²")
        check(self.n_eval >= 10, "n_eval", f"must be at least 10, got {self.n_eval}")


class MultiPole1D(PoleProblem):
    """Several simple poles plus a smooth part.

    Q(x) = Π(x − a_i) / scale (scale = 1 or max |Π| on the box); distance = min_i |x − a_i|.
    """

    config_class = MultiPole1DConfig  # the schema of its config group option (config.py)

    name = "multipole1d"

    def __init__(self, config: MultiPole1DConfig | None = None, **overrides: object) -> None:
        self.config = dataclasses.replace(config or MultiPole1DConfig(), **overrides)
        cfg = self.config
        super().__init__(cfg.low, cfg.high, cfg.n_eval)
        self._poles = torch.tensor(cfg.poles, dtype=torch.float64)
        self._residues = torch.tensor(cfg.residues, dtype=torch.float64)
        self.q_scale = self._max_abs_product() if cfg.normalize_q else 1.0
        self.label_noise, self.noise_seed = float(cfg.label_noise), int(cfg.noise_seed)

    def _product(self, x64: Tensor) -> Tensor:
        return (x64[:, None] - self._poles.to(x64.device)).prod(dim=1)

    def _max_abs_product(self) -> float:
        """max |Π(x − a_i)| on the interval (dense grid including both ends)."""
        grid = torch.linspace(self.config.low, self.config.high, 20001, dtype=torch.float64)
        return float(self._product(grid).abs().max())

    def target(self, x: Tensor) -> Tensor:
        x64 = x[:, 0].double()
        poles, res = self._poles.to(x.device), self._residues.to(x.device)
        c1, c2 = self.config.smooth
        y = (res / (x64[:, None] - poles)).sum(dim=1) + c1 * x64 + c2 * x64**2
        return y[:, None].to(x.dtype)

    def q(self, inputs: Tensor) -> Tensor:
        return (self._product(inputs[:, 0].double()) / self.q_scale).to(inputs.dtype)

    def distance(self, inputs: Tensor) -> Tensor:
        x64 = inputs[:, 0].double()
        d = (x64[:, None] - self._poles.to(inputs.device)).abs().min(dim=1).values
        return d.to(inputs.dtype)

    def poles(self) -> Tensor:
        return self._poles.double()

    def found_poles(self, predict: Predictor, model_q: ModelQ | None,
                    touch_tol: float = 0.0) -> Tensor:
        """Roots of the model's Q without the double-root rule of the base (several simple poles
        may lie closer than one grid cell's touch tolerance would allow)."""
        return super().found_poles(predict, model_q, touch_tol)
