"""Per-simulation records: parameters, provenance, EMA of the difficulty signal, the first value
seen, observation counts (shared by Breed and OGAS)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

NOT_IN_RESERVOIR = -1
EVICTED = -2
# where a sim's parameters came from (``SimHistory.source``)
SOURCE_DESIGN = 0
SOURCE_GENERATOR = 1
SOURCE_LOCAL = 2
SOURCE_RECOMBINATION = 3
# the proposals of a bred point, by the names the mixtures and yields use
PROPOSAL_SOURCES = {"generator": SOURCE_GENERATOR, "local": SOURCE_LOCAL,
                    "recombination": SOURCE_RECOMBINATION}
FIELDS = ("unit", "is_bred", "generation", "target", "signal", "first", "source", "count", "slot")


def validate_signals(sim_ids: Tensor, values: Tensor, n_asked: int,
                     calls: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor, int]:
    """Check a ``tell`` call; return (ids, values, calls) with non-finite values dropped, and
    their count. ``calls`` numbers the tell calls values come from (all 0 when None).

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
    calls = (torch.zeros_like(ids) if calls is None
             else torch.as_tensor(calls).to(device="cpu", dtype=torch.long))
    if calls.shape != ids.shape or (calls.numel() and bool((calls.diff() < 0).any())):
        raise ValueError("calls must number the values' tell calls in order: one non-decreasing "
                         "index per value")
    if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= n_asked):
        bad = ids[(ids < 0) | (ids >= n_asked)][:5].tolist()
        raise ValueError(f"sim ids {bad} were never asked (only ids 0..{n_asked - 1} exist)")
    finite = torch.isfinite(vals)
    n_dropped = int((~finite).sum())
    return ids[finite], vals[finite], calls[finite], n_dropped


class SimHistory:
    """A growing table keyed by sim id: unit-cube parameters, is_bred, proposal source,
    generation, target condition, EMA signal, first reported signal, observation count and
    reservoir slot. Updates are vectorised.

    ``first`` is the mean of the first ``tell`` of a sim: the surrogate's loss there before it
    trained on that sim, an unbiased look at its error, unlike the EMA of later, fitted losses.
    """

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
            "first": torch.full((capacity,), float("nan")),
            "source": torch.zeros(capacity, dtype=torch.long),
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
              target: Tensor, source: Tensor | None = None) -> None:
        """Store parameters for ids ``first..first+n-1`` (new ids, or not yet observed ones);
        ``source`` (SOURCE_*) defaults to SOURCE_LOCAL for bred points, SOURCE_DESIGN otherwise."""
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
        self.source[ids] = (torch.where(is_bred, SOURCE_LOCAL, SOURCE_DESIGN) if source is None
                            else source)
        self.signal[ids] = float("nan")
        self.first[ids] = float("nan")
        self.slot[ids] = NOT_IN_RESERVOIR
        self.size = max(self.size, end)

    def update(self, ids: Tensor, values: Tensor, calls: Tensor | None = None,
               threshold: int = 1) -> tuple[Tensor, Tensor]:
        """Fold per-sample ``values`` into each sim's EMA, as consecutive tell calls numbered by
        ``calls`` (one call when None); return the unique ids touched, and for each the first
        call after which its observation count reached ``threshold`` (−1: not in these calls).

        In each call several samples of one sim are averaged first, then
        s ← (1−α)·s + α·mean (the first ever mean is taken as is). The calls are replayed in
        layers (every sim's first call in the batch, then its second …), each one vectorised
        over sims with the same operations as one call: the result is bit for bit that of
        calling one by one, at a cost set by the most calls any sim is in, not by their number.
        """
        calls = torch.zeros_like(ids) if calls is None else calls
        if ids.numel() == 0:
            return ids.clone(), ids.clone()
        span = int(ids.max()) + 1
        keys, inv = torch.unique(calls * span + ids, return_inverse=True)  # by call, then sim
        sums = torch.zeros(keys.shape[0]).index_add_(0, inv, values)
        counts = torch.bincount(inv, minlength=keys.shape[0])
        mean = sums / counts
        sim, call = keys % span, keys // span
        order = torch.sort(sim, stable=True).indices  # each sim's calls in order
        sim, call, mean, counts = sim[order], call[order], mean[order], counts[order]
        uniq, per_sim = torch.unique_consecutive(sim, return_counts=True)
        owner = torch.repeat_interleave(torch.arange(uniq.shape[0]), per_sim)
        rank = torch.arange(sim.shape[0]) - (torch.cumsum(per_sim, 0) - per_sim)[owner]
        layered = torch.sort(rank, stable=True).indices
        reached = torch.full((uniq.shape[0],), -1, dtype=torch.long)
        a = self.ema_alpha
        for rows in torch.split(layered, torch.bincount(rank).tolist()):
            s, m = sim[rows], mean[rows]
            old = self.signal[s]
            seen = self.count[s] > 0
            self.signal[s] = torch.where(seen, (1 - a) * old + a * m, m)
            self.first[s] = torch.where(seen, self.first[s], m)
            self.count[s] += counts[rows]
            hit = (self.count[s] >= threshold) & (reached[owner[rows]] < 0)
            reached[owner[rows][hit]] = call[rows][hit]
        return uniq, reached

    def state_dict(self) -> dict[str, Any]:
        n = self.size
        return {"size": n, **{name: getattr(self, name)[:n].clone() for name in FIELDS}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        n = int(state["size"])
        self.size = 0
        self._alloc(max(n, 1024))
        for name in FIELDS:
            if name in state:
                getattr(self, name)[:n] = state[name]
        if "source" not in state:  # a checkpoint from before sources were recorded
            self.source[:n] = torch.where(self.is_bred[:n], SOURCE_LOCAL, SOURCE_DESIGN)
        self.size = n
