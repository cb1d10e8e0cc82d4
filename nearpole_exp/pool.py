"""The labelled pool: every training sample acquired so far, stored as growing tensors, and how
often each was drawn into a batch (kept with the rows it counts, so eviction moves both)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from nearpole_exp.problems.base import Samples

_FIELDS = ("inputs", "targets", "source", "sim_id", "q", "distance")
NO_SIM = -1  # the sim id of a point the breeder did not ask for (a sampler's proposal, a prescribed design)


class DrawCounts:
    """Per-row draw counts that grow with the pool; O(batch) per record (``index_add_``)."""

    def __init__(self) -> None:
        self._counts = torch.zeros(0, dtype=torch.int64)
        self.total = 0

    def __len__(self) -> int:
        return self._counts.numel()

    def add(self, idx: Tensor, n_pool: int | None = None) -> None:
        """Count one draw of each index (repeats count) of a pool of ``n_pool`` rows (default:
        the largest index + 1). With ``n_pool`` given there is no host sync (the trainer's case);
        an index outside ``[0, n_pool)`` raises ``IndexError``."""
        idx = idx.reshape(-1).long()
        if idx.numel() == 0:
            return
        n = n_pool if n_pool is not None else max(int(idx.max()) + 1, 0)
        self._ensure(n, idx.device)
        self._counts = self._counts.to(idx.device)
        self._counts[:n].index_add_(0, idx, torch.ones_like(idx))
        self.total += idx.numel()

    def _ensure(self, n: int, device: torch.device) -> None:
        if self._counts.numel() < n:
            grown = torch.zeros(max(n, 2 * self._counts.numel()), dtype=torch.int64, device=device)
            grown[: self._counts.numel()] = self._counts.to(device)
            self._counts = grown

    def drop_oldest(self, n: int) -> None:
        """The pool evicted its ``n`` oldest rows: row i is now row i − n."""
        if n > 0:
            self._counts = self._counts[n:].clone()

    def counts(self, n_pool: int | None = None) -> Tensor:
        """Counts of rows ``0 … n_pool − 1`` (zeros for rows never drawn)."""
        n = self._counts.numel() if n_pool is None else n_pool
        out = torch.zeros(n, dtype=torch.int64, device=self._counts.device)
        m = min(n, self._counts.numel())
        out[:m] = self._counts[:m]
        return out

    def state_dict(self) -> dict[str, Any]:
        return {"counts": self._counts.cpu().clone(), "total": self.total}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._counts = state["counts"].clone().long()
        self.total = int(state["total"])



class Pool:
    """Append-only tensor store with amortised O(1) growth and optional FIFO capacity.

    Samples with non-finite inputs or targets (e.g. a label exactly on a pole) are
    dropped on entry and counted in ``n_rejected``; they never reach a model. Every acquired point
    has a global source id (its row in :attr:`point_sim_ids`) and the breeder's simulation id
    (``NO_SIM`` when the breeder did not ask for it); each sample carries both. ``draws`` counts
    how often each row was drawn into a batch; ``version`` changes whenever rows do, so views
    derived from the pool (|Q|, draw tables) know when to be rebuilt.
    """

    def __init__(self, capacity: int = 0) -> None:
        self.capacity = capacity
        self._data: dict[str, Tensor | None] = dict.fromkeys(_FIELDS)
        self._size = 0
        self.n_sources = 0
        self.point_sim_ids = torch.empty(0, dtype=torch.long)
        self.n_rejected = 0
        self.n_evicted = 0
        self.draws = DrawCounts()
        self.version = 0

    def __len__(self) -> int:
        return self._size

    def _grow(self, name: str, value: Tensor, need: int) -> None:
        current = self._data[name]
        if current is None:
            shape = (max(need, 1024), *value.shape[1:])
            self._data[name] = torch.empty(shape, dtype=value.dtype, device=value.device)
        elif current.shape[0] < need:
            bigger = torch.empty((max(need, 2 * current.shape[0]), *current.shape[1:]),
                                 dtype=current.dtype, device=current.device)
            bigger[: self._size] = current[: self._size]
            self._data[name] = bigger

    def add(self, samples: Samples, n_points: int | None = None, sim_ids: Tensor | None = None) -> Tensor:
        """Append labelled samples; returns the global source ids given to their ``n_points`` points.

        ``n_points`` defaults to ``len(sim_ids)``, else ``max(samples.source) + 1``; pass it when
        some acquired points produced no samples at all. ``sim_ids`` are the points' simulation ids
        (default ``NO_SIM``).
        """
        if n_points is None:
            n_points = len(sim_ids) if sim_ids is not None else (
                int(samples.source.max().item()) + 1 if len(samples) else 0)
        if sim_ids is None:
            sim_ids = torch.full((n_points,), NO_SIM, dtype=torch.long)
        if len(sim_ids) != n_points:
            raise ValueError(f"sim_ids: {len(sim_ids)} ids for {n_points} points")
        ids = torch.arange(self.n_sources, self.n_sources + n_points)
        self.n_sources += n_points
        self.point_sim_ids = torch.cat([self.point_sim_ids, sim_ids.long().cpu()])
        flat_in = samples.inputs.reshape(len(samples), -1)
        flat_out = samples.targets.reshape(len(samples), -1)
        keep = torch.isfinite(flat_in).all(1) & torch.isfinite(flat_out).all(1)
        self.n_rejected += int((~keep).sum())
        values = {
            "inputs": samples.inputs[keep],
            "targets": samples.targets[keep],
            "source": (samples.source[keep] + ids[0] if n_points else samples.source[keep]).long(),
            "sim_id": sim_ids.long().cpu()[samples.source[keep].cpu()].to(samples.inputs.device),
            "q": None if samples.q is None else samples.q[keep],
            "distance": None if samples.distance is None else samples.distance[keep],
        }
        m = int(keep.sum())
        for name, value in values.items():
            if value is None:
                continue
            self._grow(name, value, self._size + m)
            self._data[name][self._size : self._size + m] = value  # type: ignore[index]
        self._size += m
        if self.capacity and self._size > self.capacity:
            self._evict(self._size - self.capacity)
        self.version += 1
        return ids

    def _evict(self, n: int) -> None:
        """Drop the ``n`` oldest samples (FIFO)."""
        for name, value in self._data.items():
            if value is not None:
                self._data[name] = value[n : self._size].clone()
        self._size -= n
        self.n_evicted += n
        self.draws.drop_oldest(n)

    def record_draws(self, idx: Tensor) -> None:
        """Count one draw of each row in ``idx`` (a batch that was trained on)."""
        self.draws.add(idx, self._size)

    def simulated(self, idx: Tensor) -> tuple[Tensor, Tensor]:
        """(simulation ids, mask of the rows that have one) of rows ``idx``, on the CPU."""
        sim_ids = self.sim_ids[idx].cpu()
        return sim_ids, sim_ids != NO_SIM

    def field(self, name: str) -> Tensor | None:
        """The live rows of a field: ``inputs``, ``targets``, ``source``, ``sim_id``, ``q``,
        ``distance`` (how often each was drawn: :attr:`draws`)."""
        value = self._data[name]
        return None if value is None else value[: self._size]

    @property
    def inputs(self) -> Tensor:
        return self.field("inputs")  # type: ignore[return-value]

    @property
    def targets(self) -> Tensor:
        return self.field("targets")  # type: ignore[return-value]

    @property
    def source(self) -> Tensor:
        return self.field("source")  # type: ignore[return-value]

    @property
    def sim_ids(self) -> Tensor:
        """Each sample's simulation id (``NO_SIM`` for points the breeder did not ask for)."""
        return self.field("sim_id")  # type: ignore[return-value]

    def to(self, device: torch.device) -> Pool:
        """Move the storage to ``device``."""
        for name, value in self._data.items():
            if value is not None:
                self._data[name] = value.to(device)
        return self

    def state_dict(self) -> dict[str, Any]:
        data = {k: (None if v is None else v[: self._size].cpu().clone()) for k, v in self._data.items()}
        return {"data": data, "size": self._size, "n_sources": self.n_sources,
                "point_sim_ids": self.point_sim_ids.clone(),
                "n_rejected": self.n_rejected, "n_evicted": self.n_evicted,
                "draws": self.draws.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict`; one written before the pool kept sim ids needs them given as
        ``point_sim_ids`` (the runner's former ``breeder_ids``)."""
        self._data = {name: state["data"].get(name) for name in _FIELDS}
        self.point_sim_ids = state["point_sim_ids"].long()
        if self._data["sim_id"] is None and self._data["source"] is not None:
            self._data["sim_id"] = self.point_sim_ids[self._data["source"].cpu()]
        self._size = int(state["size"])
        self.n_sources = int(state["n_sources"])
        self.n_rejected = int(state["n_rejected"])
        self.n_evicted = int(state["n_evicted"])
        if "draws" in state:  # earlier checkpoints kept them with the sampler (the runner moves them)
            self.draws.load_state_dict(state["draws"])
        self.version += 1
