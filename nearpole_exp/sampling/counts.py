"""How often each pool sample has been drawn into a batch: the one record of draw counts, kept by
the sampler that draws (``BatchSampler.draws``) and shifted when the pool evicts its oldest rows."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor


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
