"""Melissa's ``OGASBreeder`` method names, as a thin adapter over the ask/tell protocol: for code
written against Melissa (``next_parameters`` stages a generation, ``concretize_resampled_parameters``
writes it after the last submitted id, ``checkpoint_state``/``restart_from_checkpoint``)."""

from __future__ import annotations

from typing import Any

from torch import Tensor

from nearpole_exp.acquisition.ogas.breeder import OGASBreeder


class MelissaOGASBreeder(OGASBreeder):
    """:class:`OGASBreeder` with Melissa's two-phase API; the staged generation is part of its
    checkpoint."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._staged: dict[str, Any] | None = None

    def train_sampler(self) -> int:
        """Trigger training: ``train_steps_per_ask`` inline steps (synchronous mode, returns how
        many ran); the background thread's steps are scheduled with every generation (0)."""
        return self.request_training()

    def next_parameters(self, max_breeding_count: int = -1) -> Tensor:
        """Stage the next generation of ``max_breeding_count`` points (-1: the remaining
        ``total_budget``) and return them in box coordinates; concretise them afterwards."""
        n = int(max_breeding_count)
        if n < 0:
            budget = self.config.breeder.total_budget
            if budget is None:
                raise ValueError("max_breeding_count=-1 needs breeder.total_budget")
            n = max(budget - self.n_asked, 0)
        self._staged = self.draw_generation(n)
        return self._to_box(self._staged["unit"])

    def concretize_resampled_parameters(self, last_submitted_sim_id: int) -> tuple[int, int]:
        """Write the staged generation at ids ``last_submitted_sim_id + 1 …`` (overwriting ids
        asked but never submitted); returns (first id, last id)."""
        if self._staged is None:
            raise RuntimeError("no staged generation: call next_parameters first")
        if not -1 <= int(last_submitted_sim_id) < self.n_asked:
            raise ValueError(f"last_submitted_sim_id must lie in [-1, {self.n_asked - 1}], got "
                             f"{last_submitted_sim_id}")
        first = int(last_submitted_sim_id) + 1
        generation = self.commit(self._staged, first)
        self._staged = None
        return first, first + len(generation) - 1

    def checkpoint_state(self) -> dict[str, Any]:
        """:meth:`state_dict` plus the staged generation, if any."""
        staged = None if self._staged is None else {
            k: (v.clone() if isinstance(v, Tensor) else v) for k, v in self._staged.items()}
        return {**self.state_dict(), "staged": staged}

    def restart_from_checkpoint(self, state: dict[str, Any]) -> None:
        """Restore :meth:`checkpoint_state` output."""
        self.load_state_dict(state)
        self._staged = state.get("staged")
