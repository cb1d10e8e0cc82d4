"""rational1d: y = 1/(x − a) + 0.5x + 0.1x² on an interval, one simple pole at a."""

from __future__ import annotations

import torch
from torch import Tensor

from nearpole_exp.problems.poles import PoleProblem


class Rational1D(PoleProblem):
    """One pole at ``pole`` plus a smooth polynomial part; Q(x) = x − a."""

    name = "rational1d"

    def __init__(self, pole: float = 0.3, low: float = -1.0, high: float = 1.0,
                 smooth: tuple[float, float] = (0.5, 0.1), n_eval: int = 2000) -> None:
        super().__init__(low, high, n_eval)
        if not low < pole < high:
            raise ValueError(f"problem.pole must lie inside ({low}, {high}), got {pole}")
        self.pole = float(pole)
        self.smooth = tuple(float(c) for c in smooth)

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
        return torch.tensor([self.pole])
