"""OGAS's conditioning: sim scores mapped to DDPM conditions (rolling min/max or rank) and the
target difficulties a generation is asked for."""

from __future__ import annotations

from collections import deque
from typing import Any

import torch
from torch import Tensor


class MinMaxQueues:
    """Rolling queues of recent batch minima and maxima; c = (s − mean(min)) / (mean(max) − mean(min))."""

    def __init__(self, length: int) -> None:
        self.mins: deque[float] = deque(maxlen=length)
        self.maxs: deque[float] = deque(maxlen=length)

    def push(self, values: Tensor, calls: Tensor | None = None) -> None:
        """Record the min and max of each tell call's (clipped) signals, in call order (one
        call when ``calls`` is None; calls without values record nothing)."""
        if values.numel() == 0:
            return
        if calls is None:
            calls = torch.zeros(values.shape[0], dtype=torch.long)
        n = int(calls.max()) + 1
        present = torch.bincount(calls, minlength=n) > 0
        lo = torch.zeros(n).scatter_reduce(0, calls, values, "amin", include_self=False)
        hi = torch.zeros(n).scatter_reduce(0, calls, values, "amax", include_self=False)
        self.mins.extend(lo[present].tolist())
        self.maxs.extend(hi[present].tolist())

    def normalise(self, signal: Tensor) -> Tensor:
        """Signal mapped so that the recent typical minimum is 0 and maximum is 1."""
        if not self.mins:
            return signal.clone()
        lo = sum(self.mins) / len(self.mins)
        hi = sum(self.maxs) / len(self.maxs)
        return (signal - lo) / max(hi - lo, 1e-12)

    def state_dict(self) -> dict[str, Any]:
        return {"mins": list(self.mins), "maxs": list(self.maxs)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.mins.clear()
        self.maxs.clear()
        self.mins.extend(float(v) for v in state["mins"])
        self.maxs.extend(float(v) for v in state["maxs"])


def conditions(signal: Tensor, queues: MinMaxQueues, mode: str = "minmax",
               normalize: bool = True, clip_3_sigma: bool = False) -> Tensor:
    """DDPM conditions for a set of sim scores (e.g. the whole reservoir).

    ``minmax``: rolling min/max normalisation (raw scores when ``normalize`` is False);
    ``rank``: empirical CDF within ``signal``, in (0, 1]. Optionally clipped to mean ± 3σ.
    """
    if signal.numel() == 0:
        return signal.clone()
    if mode == "rank":
        ordered = torch.sort(signal).values
        c = torch.searchsorted(ordered, signal, right=True).float() / signal.numel()
    elif normalize:
        c = queues.normalise(signal)
    else:
        c = signal.clone()
    if clip_3_sigma and c.numel() > 1:
        mu, sd = c.mean(), c.std()
        c = torch.minimum(torch.maximum(c, mu - 3 * sd), mu + 3 * sd)
    return c


def sample_indices(cond: Tensor, n: int, alpha: float, generator: torch.Generator) -> Tensor:
    """``n`` reservoir indices drawn with P(j) ∝ max(c_j, 0)^alpha (uniform if all are ≤ 0)."""
    p = cond.clamp_min(0).double() ** alpha
    if not bool(p.sum() > 0):
        p = torch.ones_like(p)
    return torch.multinomial(p, n, replacement=True, generator=generator)


def sample_targets(cond: Tensor, n: int, strategy: str, alpha: float, quantile: float,
                   generator: torch.Generator) -> Tensor:
    """``n`` target difficulties from the reservoir's conditions ``cond``.

    ``proportional``: c_j picked with P(j) ∝ max(c_j, 0)^alpha (uniform if all are ≤ 0);
    ``uniform_quantile``: c* ~ U[Q_quantile(c), max(c)].
    """
    if n == 0 or cond.numel() == 0:
        return torch.zeros(0)
    if strategy == "uniform_quantile":
        lo = torch.quantile(cond, quantile)
        hi = cond.max()
        return lo + (hi - lo) * torch.rand(n, generator=generator)
    return cond[sample_indices(cond, n, alpha, generator)].float()
