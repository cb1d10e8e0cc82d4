"""How breeders make children from parents in the unit box: Gaussian mutation, and recombination
of two parents along the line through them (both reflected into the box at its faces).

A Gaussian child moves σ·√d from its parent whatever the hard region's shape, so in many
dimensions it leaves a thin hard set (a slab 0.04 thick in 16-D: 12 % of σ = 0.1 children of
hard parents stay in it). Recombination moves along the segment between two hard parents, a
direction in which the hard set extends: for a slab or a tube 87–96 % of the children of hard
parents stay hard at d = 4, 16 and 64, with no length scale to set; for a shell the chord between
two of its points leaves it, which the yield-driven mixture of the two measures and corrects.
"""

from __future__ import annotations

import torch
from torch import Tensor

CHILDREN = ("gaussian", "recombination", "adaptive")


def reflect_unit(unit: Tensor) -> Tensor:
    """Fold coordinates into [0, 1] by mirror reflection at the faces (period 2)."""
    folded = torch.remainder(unit, 2.0)
    return torch.where(folded > 1.0, 2.0 - folded, folded)


def jitter(unit: Tensor, sigma: float | Tensor, generator: torch.Generator) -> Tensor:
    """Gaussian perturbations of unit-box points, std ``sigma`` per axis (a number, or a tensor
    broadcasting against ``unit``), reflected at the faces."""
    return reflect_unit(unit + sigma * torch.randn(unit.shape, generator=generator))


def recombine(first: Tensor, second: Tensor, spread: float, generator: torch.Generator) -> Tensor:
    """Children on the lines through pairs of parents, a + u·(b − a) with u ~ U(−spread,
    1 + spread) per child (blend crossover: a little beyond either parent too), reflected at
    the faces. ``first``, ``second``: ``[n, d]`` unit-box parents."""
    u = -spread + (1 + 2 * spread) * torch.rand(first.shape[0], 1, generator=generator)
    return reflect_unit(first + u * (second - first))
