"""Neighbour-averaged difficulty: a sim's loss is a one-sample, noisy estimate of the local
difficulty E[loss | λ]; averaging it over the k nearest scored sims in the unit box gives the
generator a smooth conditional to learn, so high targets cover a whole hard region instead of
the neighbourhoods of its few worst sims."""

from __future__ import annotations

import math

import torch
from torch import Tensor

CHUNK = 1024


def knn_mean(query: Tensor, points: Tensor, values: Tensor, k: int) -> Tensor:
    """Mean of ``values`` over the ``k`` nearest ``points`` (Euclidean) of each ``query`` row.

    ``query`` [m, d], ``points`` [n, d], ``values`` [n] → [m]; k is capped at n, and k ≤ 1
    returns the nearest point's value. Rows are processed in chunks to bound memory.
    """
    n = points.shape[0]
    if query.shape[0] == 0 or n == 0:
        return torch.zeros(query.shape[0], dtype=values.dtype)
    k = max(1, min(int(k), n))
    out = []
    for rows in query.split(CHUNK):
        idx = torch.cdist(rows, points).topk(k, dim=1, largest=False).indices
        out.append(values[idx].mean(dim=1))
    return torch.cat(out)


def loo_neighbours(points: Tensor, values: Tensor, max_k: int = 64) -> int:
    """How many neighbours to average over, chosen by leave-one-out: the k ∈ {1, 2, 4, …, max_k}
    whose mean over the k nearest *other* points predicts each point's value with the least
    squared error. A smooth, noise-free score picks 1 (its nearest neighbour already predicts
    it: no smoothing is needed); a noisy one picks the k that balances noise against blur.

    Where no neighbour mean predicts the values better than the mean of all the others (by one
    standard error of the paired difference), the neighbours carry no local information — pure
    noise, or a dimension where Euclidean neighbours are no longer near (a 16-D slab: every k
    predicted worse than the global mean) — and averaging would only pull every score to the
    mean and erase which sims were hard: then 1, each sim keeps its own score."""
    n = points.shape[0]
    candidates = [k for k in (2 ** i for i in range(8)) if k <= min(max_k, n - 1)]
    if len(candidates) < 2:
        return 1
    kmax = candidates[-1]
    dist = torch.cdist(points, points)
    dist.fill_diagonal_(float("inf"))
    v = values.double()
    neighbours = v[dist.topk(kmax, dim=1, largest=False).indices]
    means = neighbours.cumsum(dim=1) / torch.arange(1, kmax + 1, dtype=torch.float64)
    errors = (means[:, [k - 1 for k in candidates]] - v[:, None]).pow(2)
    best = int(errors.mean(dim=0).argmin())
    others = (v.sum() - v) / (n - 1)
    gain = (others - v).pow(2) - errors[:, best]
    if float(gain.mean()) <= float(gain.std()) / math.sqrt(n):
        return 1
    return candidates[best]


def knn_radius(points: Tensor, k: int) -> Tensor:
    """Distance of each of ``points`` [n, d] to its k-th nearest other point ([n]; k capped at
    n − 1, zeros when n < 2)."""
    n = points.shape[0]
    if n < 2:
        return torch.zeros(n, dtype=points.dtype)
    k = max(1, min(int(k), n - 1))
    out = []
    for rows in points.split(CHUNK):
        out.append(torch.cdist(rows, points).topk(k + 1, dim=1, largest=False).values[:, k])
    return torch.cat(out)


def adaptive_bandwidth(points: Tensor, scale: float) -> Tensor:
    """Per-point kernel widths ``scale`` · r_k with k = ⌈√n⌉ (adaptive-bandwidth smoothing: a
    point in a sparse or wide cloud gets a wide kernel, one in a small dense region a narrow
    one, so the width follows the size of the region the generator targets)."""
    k = max(1, int(torch.tensor(float(points.shape[0])).sqrt().ceil()))
    return scale * knn_radius(points, k)
