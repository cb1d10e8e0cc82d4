"""Metric formulas shared by all problems (names: docs/architecture.md, "Metric names")."""

from __future__ import annotations

import itertools

import torch
from torch import Tensor

BUCKET_EDGES = (0.0, 1e-5, 1e-4, 1e-3, 1e-2, float("inf"))


def effective_sample_size(weights: Tensor) -> float:
    """Kish effective sample size of a weight vector."""
    total = weights.sum()
    return float(total * total / (weights * weights).sum().clamp_min(1e-300))


def bucket_index(distance: Tensor, edges: tuple[float, ...] = BUCKET_EDGES) -> Tensor:
    """Bucket of each distance: B0 = [e0, e1], Bk = (e_k, e_{k+1}]."""
    inner = torch.tensor(edges[1:-1], dtype=distance.dtype, device=distance.device)
    return torch.bucketize(distance.abs(), inner, right=False)


def relative_error(pred: Tensor, target: Tensor) -> Tensor:
    """Per-sample ‖pred − target‖ / ‖target‖ over the output dims (floored at 1e-12)."""
    diff = (pred - target).reshape(len(pred), -1).norm(dim=1)
    return diff / target.reshape(len(target), -1).norm(dim=1).clamp_min(1e-12)


def bucket_metrics(pred: Tensor, target: Tensor, distance: Tensor) -> dict[str, float]:
    """Median relative error, MSE and count per distance bucket B0…B4; points whose distance is
    NaN/inf belong to no bucket and are counted in ``eval/distance_nonfinite``."""
    rel = relative_error(pred, target)
    sq = (pred - target).reshape(len(pred), -1).pow(2).mean(dim=1)
    finite = torch.isfinite(distance)
    buckets = bucket_index(distance).masked_fill(~finite, -1)
    out: dict[str, float] = {}
    if not bool(finite.all()):
        out["eval/distance_nonfinite"] = float((~finite).sum())
    for b in range(len(BUCKET_EDGES) - 1):
        mask = buckets == b
        n = int(mask.sum())
        out[f"eval/bucket_count/B{b}"] = float(n)
        out[f"eval/relerr_median/B{b}"] = float(rel[mask].median()) if n else float("nan")
        out[f"eval/bucket_mse/B{b}"] = float(sq[mask].mean()) if n else float("nan")
    return out


#: Distance within which an evaluation point counts as near a pole (buckets B0…B3).
NEAR_DISTANCE = 1e-2
#: A near-pole fit fails when its median relative error is at least this share of the trivial
#: (zero) predictor's, which is exactly 1.
NEAR_FAIL_RELERR = 0.5
#: ... or when the poles it places are off by at least this share of the domain width.
NEAR_FAIL_PLE = 1e-2


def near_pole_relerr(pred: Tensor, target: Tensor, distance: Tensor) -> float:
    """Median relative error over the evaluation points within :data:`NEAR_DISTANCE` of a pole
    (NaN when there are none)."""
    near = torch.isfinite(distance) & (distance.abs() <= NEAR_DISTANCE)
    if not bool(near.any()):
        return float("nan")
    return float(relative_error(pred[near], target[near]).median())


def near_pole_failure(relerr: float, ple: float | None, width: float) -> str | None:
    """Why a fit failed near its poles, judged against trivial predictors: predicting 0 has
    relative error 1 everywhere, and reporting no pole scores a PLE of the domain width."""
    reasons = []
    if not relerr < NEAR_FAIL_RELERR:  # NaN (a non-finite prediction) fails too
        reasons.append(f"median relative error within {NEAR_DISTANCE:g} of a pole is {relerr:.3g} "
                       f"(predicting 0 scores 1; a fit should be below {NEAR_FAIL_RELERR:g})")
    if ple is not None and not ple < NEAR_FAIL_PLE * width:
        reasons.append(f"the poles it places are {ple:.3g} off (PLE; no pole at all scores the "
                       f"width {width:g}; a fit should be below {NEAR_FAIL_PLE * width:.3g})")
    return "; ".join(reasons) or None


def pole_localisation_error(true_poles: Tensor, found: Tensor, width: float) -> float:
    """Mean distance between true poles and found poles under the best one-to-one matching.

    A true pole with no partner counts as ``width`` (the domain width), so missing a pole is
    never better than placing one badly. Exact assignment for up to 7 poles, greedy above.
    """
    true_poles = true_poles.flatten().double()
    found = found.flatten().double()
    k = len(true_poles)
    if k == 0:
        return 0.0
    if len(found) == 0:
        return float(width)
    cost = (true_poles[:, None] - found[None, :]).abs().clamp_max(width)
    if k <= 7 and len(found) <= 9:
        best = float("inf")
        cols = range(len(found))
        for perm in itertools.permutations(cols, min(k, len(found))):
            total = sum(float(cost[i, j]) for i, j in enumerate(perm)) + width * (k - len(perm))
            best = min(best, total)
        return best / k
    total, used = 0.0, set()
    for i in range(k):
        order = torch.argsort(cost[i])
        j = next((int(j) for j in order if int(j) not in used), None)
        total += width if j is None else float(cost[i, j])
        if j is not None:
            used.add(j)
    return total / k


def roots_on_grid(grid: Tensor, values: Tensor, touch_tol: float = 0.0) -> Tensor:
    """Roots of a 1D function sampled on an increasing grid.

    Sign changes are located by linear interpolation. With ``touch_tol > 0``, local minima of
    |f| below ``touch_tol · max|f|`` also count: a close pair of roots inside one grid cell
    shows no sign change but is still a (double) pole of 1/f.
    """
    s = torch.sign(values)
    change = (s[:-1] * s[1:]) < 0
    x0, x1 = grid[:-1][change], grid[1:][change]
    v0, v1 = values[:-1][change], values[1:][change]
    exact = grid[1:-1][(values[1:-1] == 0) & (s[:-2] * s[2:] < 0)]
    roots = torch.sort(torch.cat([x0 - v0 * (x1 - x0) / (v1 - v0), exact])).values
    if touch_tol > 0 and len(values) > 2:
        mag = values.abs()
        low = (mag[1:-1] <= mag[:-2]) & (mag[1:-1] <= mag[2:]) & (mag[1:-1] < touch_tol * mag.max())
        touch = grid[1:-1][low]
        near_change = (touch[:, None] - roots[None, :]).abs().min(dim=1).values if len(roots) else None
        spacing = float(grid[1] - grid[0])
        if near_change is not None:
            touch = touch[near_change > 2 * spacing]
        roots = torch.sort(torch.cat([roots, touch])).values
    return roots


def trajectory_metrics(nrmse: Tensor) -> dict[str, float]:
    """Statistics of per-trajectory nRMSE over a held-out set (docs/architecture.md names)."""
    v = nrmse.double()
    q = torch.quantile(v, torch.tensor([0.5, 0.95, 0.99], dtype=v.dtype))
    return {
        "eval/nrmse_mean": float(v.mean()),
        "eval/nrmse_std": float(v.std(unbiased=False)),
        "eval/nrmse_p50": float(q[0]),
        "eval/nrmse_p95": float(q[1]),
        "eval/nrmse_p99": float(q[2]),
        "eval/nrmse_max": float(v.max()),
    }
