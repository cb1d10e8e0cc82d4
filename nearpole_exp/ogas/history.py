"""Per-simulation records: parameters, provenance, EMA of the difficulty signal, observation counts,
and the rolling min/max queues that normalise the signal."""

from __future__ import annotations

from collections import deque
from typing import Any

import torch
from torch import Tensor

NOT_IN_RESERVOIR = -1
EVICTED = -2


def validate_signals(sim_ids: Tensor, values: Tensor, n_asked: int) -> tuple[Tensor, Tensor, int]:
    """Check a ``tell`` call; return (ids, values) with non-finite values dropped, and their count.

    Raises ValueError for mismatched shapes, non-integer ids and ids never asked.
    """
    ids = torch.as_tensor(sim_ids)
    vals = torch.as_tensor(values)
    if vals.ndim == 2 and vals.shape[1] == 1:
        vals = vals[:, 0]
    if ids.ndim != 1 or vals.ndim != 1 or ids.shape[0] != vals.shape[0]:
        raise ValueError(
            f"tell expects sim_ids [n] and values [n] (or [n, 1]); got {tuple(ids.shape)} and "
            f"{tuple(vals.shape)}"
        )
    if ids.is_floating_point() or ids.is_complex() or ids.dtype == torch.bool:
        raise ValueError(f"sim_ids must be integers, got dtype {ids.dtype}")
    ids = ids.to(device="cpu", dtype=torch.long)
    vals = vals.to(device="cpu", dtype=torch.float32)
    if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= n_asked):
        bad = ids[(ids < 0) | (ids >= n_asked)][:5].tolist()
        raise ValueError(f"sim ids {bad} were never asked (only ids 0..{n_asked - 1} exist)")
    finite = torch.isfinite(vals)
    n_dropped = int((~finite).sum())
    return ids[finite], vals[finite], n_dropped


class SimHistory:
    """A growing table keyed by sim id: unit-cube parameters, is_bred, generation, target
    condition, EMA signal, observation count and reservoir slot. Updates are vectorised."""

    def __init__(self, dim: int, ema_alpha: float, capacity: int = 1024) -> None:
        self.dim = dim
        self.ema_alpha = float(ema_alpha)
        self.size = 0
        self._alloc(max(capacity, 1))

    def _alloc(self, capacity: int) -> None:
        old = getattr(self, "unit", None)
        fresh = {
            "unit": torch.zeros(capacity, self.dim),
            "is_bred": torch.zeros(capacity, dtype=torch.bool),
            "generation": torch.zeros(capacity, dtype=torch.long),
            "target": torch.full((capacity,), float("nan")),
            "signal": torch.full((capacity,), float("nan")),
            "count": torch.zeros(capacity, dtype=torch.long),
            "slot": torch.full((capacity,), NOT_IN_RESERVOIR, dtype=torch.long),
        }
        if old is not None:
            for name, tensor in fresh.items():
                tensor[: self.size] = getattr(self, name)[: self.size]
        for name, tensor in fresh.items():
            setattr(self, name, tensor)

    @property
    def capacity(self) -> int:
        return int(self.unit.shape[0])

    def write(self, first: int, unit: Tensor, is_bred: Tensor, generation: int,
              target: Tensor) -> None:
        """Store parameters for ids ``first..first+n-1`` (new ids, or not yet observed ones)."""
        n = unit.shape[0]
        end = first + n
        if end > self.capacity:
            self._alloc(max(end, 2 * self.capacity))
        ids = slice(first, end)
        if bool((self.count[ids] > 0).any()):
            raise ValueError("cannot overwrite parameters of simulations that already reported")
        self.unit[ids] = unit
        self.is_bred[ids] = is_bred
        self.generation[ids] = generation
        self.target[ids] = target
        self.signal[ids] = float("nan")
        self.slot[ids] = NOT_IN_RESERVOIR
        self.size = max(self.size, end)

    def update(self, ids: Tensor, values: Tensor) -> Tensor:
        """Fold per-sample ``values`` into each sim's EMA; return the unique ids touched.

        Several samples of one sim in a call are averaged first, then
        s ← (1−α)·s + α·mean (the first ever mean is taken as is).
        """
        uniq, inv = torch.unique(ids, return_inverse=True)
        sums = torch.zeros(uniq.shape[0]).index_add_(0, inv, values)
        counts = torch.bincount(inv, minlength=uniq.shape[0])
        mean = sums / counts
        old = self.signal[uniq]
        seen = self.count[uniq] > 0
        a = self.ema_alpha
        self.signal[uniq] = torch.where(seen, (1 - a) * old + a * mean, mean)
        self.count[uniq] += counts
        return uniq

    def state_dict(self) -> dict[str, Any]:
        n = self.size
        return {
            "size": n,
            "unit": self.unit[:n].clone(),
            "is_bred": self.is_bred[:n].clone(),
            "generation": self.generation[:n].clone(),
            "target": self.target[:n].clone(),
            "signal": self.signal[:n].clone(),
            "count": self.count[:n].clone(),
            "slot": self.slot[:n].clone(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        n = int(state["size"])
        self.size = 0
        self._alloc(max(n, 1024))
        for name in ("unit", "is_bred", "generation", "target", "signal", "count", "slot"):
            getattr(self, name)[:n] = state[name]
        self.size = n


class MinMaxQueues:
    """Rolling queues of recent batch minima and maxima; c = (s − mean(min)) / (mean(max) − mean(min))."""

    def __init__(self, length: int) -> None:
        self.mins: deque[float] = deque(maxlen=length)
        self.maxs: deque[float] = deque(maxlen=length)

    def push(self, values: Tensor) -> None:
        """Record the min and max of one batch of (clipped) signals."""
        if values.numel():
            self.mins.append(float(values.min()))
            self.maxs.append(float(values.max()))

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
    p = cond.clamp_min(0).double() ** alpha
    if not bool(p.sum() > 0):
        p = torch.ones_like(p)
    idx = torch.multinomial(p, n, replacement=True, generator=generator)
    return cond[idx].float()
