"""A fixed-capacity FIFO reservoir of scored simulations: the DDPM's and ratio MLP's training set."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor


class Reservoir:
    """Ring buffer of (unit λ, signal, is_bred, generation, sim_id); the oldest entries are evicted.

    Slots are stable while an entry lives, so a sim's signal can be refreshed in place.
    """

    def __init__(self, capacity: int, dim: int) -> None:
        self.capacity = int(capacity)
        self.dim = int(dim)
        self.unit = torch.zeros(capacity, dim)
        self.signal = torch.zeros(capacity)
        self.is_bred = torch.zeros(capacity, dtype=torch.bool)
        self.generation = torch.zeros(capacity, dtype=torch.long)
        self.sim_id = torch.full((capacity,), -1, dtype=torch.long)
        self.inserted = 0

    @property
    def size(self) -> int:
        return min(self.inserted, self.capacity)

    def add(self, sim_id: Tensor, unit: Tensor, signal: Tensor, is_bred: Tensor,
            generation: Tensor) -> tuple[Tensor, Tensor]:
        """Append entries in order; return (their slots, sim ids evicted to make room).

        If more than ``capacity`` entries come at once, only the newest ``capacity`` are kept
        (the older ones count as evicted immediately, with slot -1).
        """
        k = int(sim_id.shape[0])
        slots = torch.full((k,), -1, dtype=torch.long)
        keep = min(k, self.capacity)
        lost = sim_id[: k - keep]
        start = self.inserted + (k - keep)
        pos = (start + torch.arange(keep)) % self.capacity
        evicted = self.sim_id[pos]
        evicted = torch.cat([evicted[evicted >= 0], lost])
        sl = slice(k - keep, k)
        self.unit[pos] = unit[sl]
        self.signal[pos] = signal[sl]
        self.is_bred[pos] = is_bred[sl]
        self.generation[pos] = generation[sl]
        self.sim_id[pos] = sim_id[sl]
        slots[sl] = pos
        self.inserted += k
        return slots, evicted

    def refresh(self, slots: Tensor, signal: Tensor) -> None:
        """Overwrite the signal of live entries at ``slots``."""
        self.signal[slots] = signal

    def order(self) -> Tensor:
        """Slots of live entries from oldest to newest."""
        n = self.size
        if self.inserted <= self.capacity:
            return torch.arange(n)
        return (self.inserted + torch.arange(n)) % self.capacity

    def bred_fraction(self) -> float:
        """Share R̄ of bred entries among live ones (0 when empty)."""
        n = self.size
        return float(self.is_bred[:n].float().mean()) if n else 0.0

    def state_dict(self) -> dict[str, Any]:
        n = self.size
        return {
            "capacity": self.capacity,
            "inserted": self.inserted,
            "unit": self.unit[:n].clone(),
            "signal": self.signal[:n].clone(),
            "is_bred": self.is_bred[:n].clone(),
            "generation": self.generation[:n].clone(),
            "sim_id": self.sim_id[:n].clone(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if int(state["capacity"]) != self.capacity:
            raise ValueError(
                f"reservoir capacity {state['capacity']} in the state != configured {self.capacity}"
            )
        n = int(state["unit"].shape[0])
        self.inserted = int(state["inserted"])
        self.sim_id.fill_(-1)
        for name in ("unit", "signal", "is_bred", "generation", "sim_id"):
            getattr(self, name)[:n] = state[name]
