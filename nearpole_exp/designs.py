"""Space-filling designs on the unit cube: uniform, Sobol, Halton and Latin hypercube."""

from __future__ import annotations

import math

import torch
from torch import Tensor

DESIGNS = ("uniform", "sobol", "halton", "lhs")


def _primes(k: int) -> list[int]:
    """The first ``k`` primes."""
    primes: list[int] = []
    candidate = 2
    while len(primes) < k:
        if all(candidate % p for p in primes if p * p <= candidate):
            primes.append(candidate)
        candidate += 1
    return primes


def halton(start: int, n: int, dim: int, shift: Tensor) -> Tensor:
    """Points ``start..start+n-1`` of the Halton sequence, randomly shifted modulo 1."""
    idx = torch.arange(start + 1, start + n + 1, dtype=torch.float64)
    cols = []
    for base in _primes(dim):
        digits = math.ceil(math.log(start + n + 1, base)) + 1
        value = torch.zeros(n, dtype=torch.float64)
        rest = idx.clone()
        scale = 1.0 / base
        for _ in range(digits):
            value += torch.remainder(rest, base) * scale
            rest = torch.div(rest, base, rounding_mode="floor")
            scale /= base
        cols.append(value)
    return torch.remainder(torch.stack(cols, dim=1) + shift.double(), 1.0).float()


def latin_hypercube(n: int, dim: int, generator: torch.Generator) -> Tensor:
    """One Latin hypercube of ``n`` points: each axis has exactly one point per 1/n stratum."""
    u = torch.rand(n, dim, generator=generator)
    perms = torch.argsort(torch.rand(n, dim, generator=generator), dim=0)
    return (perms.float() + u) / n


class UnitDesign:
    """A stateful stream of points in [0, 1]^d from one of :data:`DESIGNS`."""

    def __init__(self, design: str, dim: int, generator: torch.Generator) -> None:
        if design not in DESIGNS:
            raise ValueError(f"design must be one of {DESIGNS}, got {design!r}")
        self.design = design
        self.dim = dim
        self.generator = generator
        self.drawn = 0
        self.sobol_seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator))
        self.shift = torch.rand(dim, generator=generator)

    def draw(self, n: int) -> Tensor:
        """The next ``n`` points of the stream."""
        if n <= 0:
            return torch.empty(0, self.dim)
        if self.design == "uniform":
            out = torch.rand(n, self.dim, generator=self.generator)
        elif self.design == "sobol":
            engine = torch.quasirandom.SobolEngine(self.dim, scramble=True, seed=self.sobol_seed)
            if self.drawn:
                engine.fast_forward(self.drawn)
            out = engine.draw(n).float()
        elif self.design == "halton":
            out = halton(self.drawn, n, self.dim, self.shift)
        else:
            out = latin_hypercube(n, self.dim, self.generator)
        self.drawn += n
        return out

    def state_dict(self) -> dict[str, object]:
        return {"drawn": self.drawn, "generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, object]) -> None:
        self.drawn = int(state["drawn"])  # type: ignore[arg-type]
        self.generator.set_state(state["generator"])  # type: ignore[arg-type]
