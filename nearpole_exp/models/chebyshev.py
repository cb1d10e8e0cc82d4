"""Chebyshev polynomial bases on [-1, 1]^d: T_0…T_n in one variable, and in d variables the
products T_{e1}(t1)···T_{ed}(td) of total degree e1 + … + ed ≤ n, ordered by total degree so that
the basis of degree m is a prefix of the basis of any higher degree."""

from __future__ import annotations

import itertools
from math import comb

import torch
from torch import Tensor


def chebyshev(t: Tensor, degree: int) -> Tensor:
    """Chebyshev polynomials T_0…T_degree at ``t`` (shape [n]), as [n, degree + 1]."""
    cols = [torch.ones_like(t), t]
    for _ in range(2, degree + 1):
        cols.append(2 * t * cols[-1] - cols[-2])
    return torch.stack(cols[: degree + 1], dim=1)


def exponents(dim: int, degree: int) -> Tensor:
    """The exponent tuples of total degree ≤ ``degree`` in ``dim`` variables, [terms, dim], by
    total degree first (then lexicographically)."""
    rows = sorted((e for e in itertools.product(range(degree + 1), repeat=dim) if sum(e) <= degree),
                  key=lambda e: (sum(e), tuple(-v for v in e)))
    return torch.tensor(rows, dtype=torch.long).reshape(-1, dim)


def n_terms(dim: int, degree: int) -> int:
    """How many terms the basis of total degree ≤ ``degree`` in ``dim`` variables has."""
    return comb(degree + dim, dim) if degree >= 0 else 0


def total_degree_basis(t: Tensor, powers: Tensor) -> Tensor:
    """The products Π_j T_{e_j}(t_j) for each exponent row of ``powers``, at points ``t``
    [n, dim], as [n, terms]."""
    degree = int(powers.max()) if powers.numel() else 0
    out = None
    for j in range(t.shape[1]):
        factor = chebyshev(t[:, j], degree)[:, powers[:, j]]
        out = factor if out is None else out * factor
    return out
