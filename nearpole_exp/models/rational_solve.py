"""The exact minimiser of the linearised rational objective over a model's linear coefficients.

For P = A·p and Q = B·q, linear in coefficient vectors p (one per output) and q with ‖q‖ = 1,
the objective Σ_i w_i·mean_k (P_ik − y_ik·Q_i)² / (1 + mean_k y_ik²) is a quadratic form in q
once each p_k is eliminated by weighted least squares: q is the right singular vector of the
smallest singular value of the stacked residual operators (I − H)·W^½·diag(y_k)·B, H the
projection onto W^½·A's columns, and then each p_k is its least-squares fit. With a basis
ordered by degree, :func:`select_degree` fits increasing denominator degrees on part of the data
and keeps the smallest whose held-out prediction error is within a factor of the best: spare
degrees would otherwise let Q vanish on curves where P does too (pole–zero doublets). The error
is the quotient's, |P/Q − y|²/(1 + y²), not the linearised residual's: with noisy labels a spare
factor of Q can shrink the linearised residual of the noisiest samples (those near the poles)
without predicting them any better.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

#: A held-out objective below this is round-off (a residual of 1e-12 of a unit-norm Q).
ROUND_OFF = 1e-24


@dataclass
class LinearFit:
    """Coefficients of P ``[terms_p, out]`` and Q ``[terms_q]`` (unit norm), and the objective."""

    p: Tensor
    q: Tensor
    objective: float


def _weights(y: Tensor, w: Tensor | None) -> Tensor:
    """Per-sample weights of the residual: the sample weight over (1 + mean_k y²) and the
    number of outputs (the loss is a mean over them)."""
    base = 1.0 / (1.0 + y.pow(2).mean(dim=1))
    sample = torch.ones_like(base) if w is None else w.to(base)
    return sample * base / y.shape[1]


def solve(a: Tensor, b: Tensor, y: Tensor, w: Tensor | None = None) -> LinearFit:
    """The exact minimiser for P-basis ``a`` [n, ta], Q-basis ``b`` [n, tb], targets ``y``
    [n, out] and sample weights ``w`` [n] (float64 throughout)."""
    a, b, y = a.double(), b.double(), y.double()
    root = _weights(y, w).sqrt()[:, None]
    aw = a * root
    # W^½·A by its SVD, rank-revealing: the projection H and the least squares of p use only the
    # directions above round-off (MKL's lstsq gave other bits for other memory alignments, so a
    # resumed run's fit differed from an uninterrupted one's in the last place)
    u, s, vh_a = torch.linalg.svd(aw, full_matrices=False)
    keep = s > s[0] * max(aw.shape) * torch.finfo(s.dtype).eps
    u, s, vh_a = u[:, keep], s[keep], vh_a[keep]
    blocks = []
    for k in range(y.shape[1]):
        scaled = b * (y[:, k : k + 1] * root)
        blocks.append(scaled - u @ (u.T @ scaled))
    _, _, vh = torch.linalg.svd(torch.cat(blocks), full_matrices=False)
    q = vh[-1]
    if float((b @ q).mean()) < 0:  # the sign is free: Q positive on average
        q = -q
    rhs = torch.cat([(b @ q)[:, None] * y[:, k : k + 1] * root for k in range(y.shape[1])], dim=1)
    p = vh_a.T @ ((u.T @ rhs) / s[:, None])
    return LinearFit(p, q, objective(a, b, y, p, q, w))


def objective(a: Tensor, b: Tensor, y: Tensor, p: Tensor, q: Tensor, w: Tensor | None = None) -> float:
    """The linearised objective of coefficients ``p``, ``q``, normalised by the total weight."""
    a, b, y = a.double(), b.double(), y.double()
    r = (a @ p - y * (b @ q)[:, None]).pow(2).sum(dim=1) * _weights(y, w)
    total = float(len(y)) if w is None else float(w.double().sum())
    return float(r.sum()) / max(total, 1e-300)


def prediction_error(a: Tensor, b: Tensor, y: Tensor, p: Tensor, q: Tensor,
                     w: Tensor | None = None) -> float:
    """The weighted mean of |P/Q − y|² / (1 + y²) (means over the outputs), infinite where Q = 0."""
    a, b, y = a.double(), b.double(), y.double()
    pred = (a @ p) / (b @ q)[:, None]
    err = ((pred - y).pow(2).mean(dim=1) / (1.0 + y.pow(2).mean(dim=1))).nan_to_num(nan=float("inf"))
    weights = torch.ones_like(err) if w is None else w.to(err)
    return float((weights * err).sum() / weights.sum().clamp_min(1e-300))


def select_degree(a: Tensor, b: Tensor, y: Tensor, w: Tensor | None, q_terms: list[int],
                  p_terms: list[int], holdout: float, tolerance: float) -> int:
    """The index of the smallest candidate degree (basis prefixes ``p_terms[i]``, ``q_terms[i]``)
    whose prediction error on a held-out ``holdout`` share of the rows (a fixed split) is within
    ``1 + tolerance`` of the best candidate's, or at round-off."""
    n = len(y)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(0))
    cut = max(1, round(n * (1 - holdout)))
    fit_rows, held = order[:cut], order[cut:]
    if len(held) == 0:
        return len(q_terms) - 1
    scores = []
    for tp, tq in zip(p_terms, q_terms, strict=True):
        wf = None if w is None else w[fit_rows]
        fit = solve(a[fit_rows, :tp], b[fit_rows, :tq], y[fit_rows], wf)
        wh = None if w is None else w[held]
        scores.append(prediction_error(a[held, :tp], b[held, :tq], y[held], fit.p, fit.q, wh))
    best = min(scores)
    return next(i for i, s in enumerate(scores) if s <= best * (1 + tolerance) + ROUND_OFF)
