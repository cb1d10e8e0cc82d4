"""Pole targets the tool does not ship, of the kinds a user brings: a non-rational pair of poles,
a non-rational numerator, and a circle of poles with a non-polynomial smooth part (used by the
fit-quality tests and by scripts/bench/nearpole.py)."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from nearpole_exp.problems.curve2d import Curve2D
from nearpole_exp.problems.poles import PoleProblem


class TanPair(PoleProblem):
    """y = tan(2x) + 0.3x on [−1, 1]: poles at ±π/4, not a rational function."""

    name = "tan_pair"

    def __init__(self, n_eval: int = 2000, label_noise: float = 0.0, noise_seed: int = 0) -> None:
        super().__init__(low=-1.0, high=1.0, n_eval=n_eval)
        self.label_noise, self.noise_seed = label_noise, noise_seed

    def target(self, x: Tensor) -> Tensor:
        x64 = x.double()
        return (torch.tan(2 * x64) + 0.3 * x64).to(x.dtype)

    def q(self, inputs: Tensor) -> Tensor:
        return torch.cos(2 * inputs[:, 0].double()).to(inputs.dtype)

    def distance(self, inputs: Tensor) -> Tensor:
        x = inputs[:, 0].double()
        return torch.minimum((x - math.pi / 4).abs(), (x + math.pi / 4).abs()).to(inputs.dtype)

    def poles(self) -> Tensor:
        return torch.tensor([-math.pi / 4, math.pi / 4], dtype=torch.float64)


class ExpPoles(PoleProblem):
    """y = exp(x)/(x − 0.2) + 1/(x + 0.6) on [−1, 1]: a non-rational numerator."""

    name = "exp_poles"

    def __init__(self, n_eval: int = 2000, label_noise: float = 0.0, noise_seed: int = 0) -> None:
        super().__init__(low=-1.0, high=1.0, n_eval=n_eval)
        self.label_noise, self.noise_seed = label_noise, noise_seed

    def target(self, x: Tensor) -> Tensor:
        x64 = x.double()
        return (torch.exp(x64) / (x64 - 0.2) + 1 / (x64 + 0.6)).to(x.dtype)

    def q(self, inputs: Tensor) -> Tensor:
        x = inputs[:, 0].double()
        return ((x - 0.2) * (x + 0.6)).to(inputs.dtype)

    def distance(self, inputs: Tensor) -> Tensor:
        x = inputs[:, 0].double()
        return torch.minimum((x - 0.2).abs(), (x + 0.6).abs()).to(inputs.dtype)

    def poles(self) -> Tensor:
        return torch.tensor([-0.6, 0.2], dtype=torch.float64)


class SineCircle(Curve2D):
    """A circle of poles off centre with a non-polynomial smooth part: y = 1/Q + sin(x1)."""

    def __init__(self, **overrides: object) -> None:
        super().__init__(center=(-0.15, 0.2), axes=(0.5, 0.5), **overrides)

    def target(self, x: Tensor) -> Tensor:
        x64 = x.double()
        return (1.0 / self.curve.q(x64) + torch.sin(x64[:, 0]))[:, None].to(x.dtype)
