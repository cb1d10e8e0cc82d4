"""A user-defined problem, as docs/python.md's "Bring your own problem" shows it."""

from __future__ import annotations

import torch
from torch import Tensor

from nearpole_exp.problems.poles import PoleProblem


class TwoPoles(PoleProblem):
    """y = 1/(x − a) − 2/(x − b) on [−1, 1]; Q(x) = (x − a)(x − b)."""

    name = "two_poles"

    def __init__(self, a: float = -0.2, b: float = 0.45, n_eval: int = 1000) -> None:
        super().__init__(low=-1.0, high=1.0, n_eval=n_eval)
        self.a, self.b = a, b

    def target(self, x: Tensor) -> Tensor:
        x64 = x.double()
        return (1.0 / (x64 - self.a) - 2.0 / (x64 - self.b)).to(x.dtype)

    def q(self, inputs: Tensor) -> Tensor:
        x = inputs[:, 0].double()
        return ((x - self.a) * (x - self.b)).to(inputs.dtype)

    def distance(self, inputs: Tensor) -> Tensor:
        x = inputs[:, 0].double()
        return torch.minimum((x - self.a).abs(), (x - self.b).abs()).to(inputs.dtype)

    def poles(self) -> Tensor:
        return torch.tensor([self.a, self.b], dtype=torch.float64)  # float64: PLE to round-off


class BrokenDistance(TwoPoles):
    """TwoPoles whose Q and distance are NaN on the right half (a user's bug)."""

    def q(self, inputs: Tensor) -> Tensor:
        return super().q(inputs).masked_fill(inputs[:, 0] > 0, float("nan"))

    def distance(self, inputs: Tensor) -> Tensor:
        return super().distance(inputs).masked_fill(inputs[:, 0] > 0, float("nan"))


class NoDistance(TwoPoles):
    """TwoPoles whose distance is NaN everywhere."""

    def distance(self, inputs: Tensor) -> Tensor:
        return torch.full((len(inputs),), float("nan"))


class FlatTarget(TwoPoles):
    """TwoPoles whose target is ``[n]`` instead of ``[n, 1]`` (a user's shape slip)."""

    def target(self, x: Tensor) -> Tensor:
        return super().target(x)[:, 0]


class ShortQ(TwoPoles):
    """TwoPoles whose Q drops the last row."""

    def q(self, inputs: Tensor) -> Tensor:
        return super().q(inputs)[:-1]
