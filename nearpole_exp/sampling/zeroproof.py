"""ZeroProofML's sampler API (``sample_batch``, ``hybrid_sample``, ``get_statistics``,
``sample_counts``) as a thin adapter over :class:`~.importance.ImportanceSampler`, for code
ported from ZeroProofML. It keeps its own draw counts (in the runner the pool keeps them)."""

from __future__ import annotations

from typing import Any

from torch import Tensor

from nearpole_exp.pool import DrawCounts
from nearpole_exp.sampling.base import Selection
from nearpole_exp.sampling.importance import ImportanceSampler, draw_statistics
from nearpole_exp.sampling.importance_law import ImportanceSamplerConfig


class ZeroProofSampler:
    """``ZeroProofSampler(ImportanceSamplerConfig(...))``: batches of pool inputs by the importance
    law, counted; the last batch's correction weights are in ``last_selection.weights``."""

    def __init__(self, config: ImportanceSamplerConfig | None = None, **overrides: Any) -> None:
        self.sampler = ImportanceSampler(config, **overrides)
        self.draws = DrawCounts()

    @property
    def config(self) -> ImportanceSamplerConfig:
        return self.sampler.config

    @property
    def last_selection(self) -> Selection | None:
        return self.sampler.last_selection

    def sample_batch(self, x_pool: Tensor, q_pool: Tensor, batch_size: int) -> tuple[Tensor, Tensor]:
        """``(batch_x, idx)`` of an importance batch (defensive uniform share ``uniform_mix``)."""
        sel = self.sampler.select(len(x_pool), batch_size, values=q_pool, device=x_pool.device)
        self.draws.add(sel.idx, len(x_pool))
        return x_pool[sel.idx], sel.idx

    def hybrid_sample(self, x_pool: Tensor, q_pool: Tensor, batch_size: int) -> tuple[Tensor, Tensor]:
        """``(batch_x, idx)`` of a shuffled importance + uniform batch (``importance_batch_ratio``)."""
        sel = self.sampler.select_hybrid(len(x_pool), batch_size, values=q_pool,
                                         device=x_pool.device)
        self.draws.add(sel.idx, len(x_pool))
        return x_pool[sel.idx], sel.idx

    def get_statistics(self) -> dict[str, float]:
        """Draws so far, their diversity and the |Q| of the drawn samples (:func:`draw_statistics`)."""
        return draw_statistics(self.draws, self.sampler.last_values, self.sampler.n_fallbacks)

    def sample_counts(self, n_pool: int | None = None) -> Tensor:
        """How often each pool index has been drawn."""
        return self.draws.counts(n_pool)

    def state_dict(self) -> dict[str, Any]:
        return {"sampler": self.sampler.state_dict(), "draws": self.draws.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.sampler.load_state_dict(state["sampler"])
        self.draws.load_state_dict(state["draws"])
