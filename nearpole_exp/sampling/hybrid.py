"""Hybrid sampling: importance + uniform batches, and active refinement every k rounds.

Each batch draws ``importance_batch_ratio`` of its samples by importance (see
:mod:`nearpole_exp.sampling.importance`) and the rest uniformly (stratified, shuffled), with
correction weights for the mixture density π = ρ(1 − α)·q_w + (1 − ρ(1 − α))·U
(ρ = importance_batch_ratio, α = uniform_mix). Every ``active_every`` rounds (0: never) an
internal :class:`ActiveSampler` proposes new points near small |Q| and roots of Q.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from nearpole_exp.errors import check
from nearpole_exp.sampling.active import ActiveSampler, ActiveSamplerConfig
from nearpole_exp.sampling.base import BatchSampler, PoolView, SamplerCapabilities, Selection
from nearpole_exp.sampling.importance import ImportanceSampler
from nearpole_exp.sampling.importance_law import ImportanceSamplerConfig

if TYPE_CHECKING:
    from nearpole_exp.pool import DrawCounts, Pool
    from nearpole_exp.problems.base import Problem


@dataclass
class HybridSamplerConfig(ImportanceSamplerConfig):
    """Importance fields (inherited) plus the active-refinement cadence and its main knobs."""

    uniform_mix: float = 0.0
    active_every: int = 5
    active_initial_grid_size: int = 64
    active_refinement_threshold: float = 0.1
    active_max_refinement_level: int = 6
    active_max_grid_points: int = 4096
    active_points_per_round: int = 256
    active_near_root_points: int = 13

    def __post_init__(self) -> None:
        super().__post_init__()
        check(self.active_every >= 0, "active_every", "must be >= 0 (0 disables)")

    def importance_config(self) -> ImportanceSamplerConfig:
        """The inherited importance fields as an :class:`ImportanceSamplerConfig`."""
        names = [f.name for f in dataclasses.fields(ImportanceSamplerConfig)]
        return ImportanceSamplerConfig(**{n: getattr(self, n) for n in names})

    def active_config(self) -> ActiveSamplerConfig:
        """The ``active_*`` fields as an :class:`ActiveSamplerConfig` (adapting every call)."""
        return ActiveSamplerConfig(
            initial_grid_size=self.active_initial_grid_size,
            refinement_threshold=self.active_refinement_threshold,
            max_refinement_level=self.active_max_refinement_level,
            max_grid_points=self.active_max_grid_points,
            points_per_round=self.active_points_per_round,
            near_root_points=self.active_near_root_points,
            adapt_frequency=1,
        )


class HybridSampler(BatchSampler):
    """Mixture batches from an :class:`ImportanceSampler` plus periodic active proposals."""

    config_class = HybridSamplerConfig  # the schema of its config group option (config.py)

    capabilities = SamplerCapabilities(needs_q=True, proposes=True)

    def __init__(self, config: HybridSamplerConfig | None = None, *, bounds: Tensor | None = None,
                 **overrides: Any) -> None:
        super().__init__()
        self.config = dataclasses.replace(config or HybridSamplerConfig(), **overrides)
        self.importance = ImportanceSampler(self.config.importance_config())
        self.active = ActiveSampler(self.config.active_config(), bounds=bounds)
        self.active_rounds = 0

    def use_q_fn(self, q_fn: Callable[[Tensor], Tensor]) -> None:
        self.active.use_q_fn(q_fn)

    def prepare(self, values: Tensor) -> Any:
        return self.importance.prepare_hybrid(values)

    def draw_values(self, view: PoolView) -> Tensor | None:
        return self.importance.draw_values(view)

    def select(
        self,
        n_pool: int,
        batch_size: int,
        *,
        values: Any = None,
        prior: Tensor | None = None,
        device: torch.device | None = None,
    ) -> Selection:
        """A shuffled importance + uniform batch with mixture correction weights."""
        return self.importance.select_hybrid(n_pool, batch_size, values=values, prior=prior,
                                             device=device)

    def objective_weights(self, n_pool: int, values: Any = None,
                          prior: Tensor | None = None) -> Tensor | None:
        return self.importance._objective(n_pool, values, prior, self.importance.hybrid_share)

    def propose(self, problem: Problem, pool: Pool, round_idx: int) -> Tensor | None:
        """Active proposals on rounds divisible by ``active_every``, else None."""
        every = self.config.active_every
        if every == 0 or round_idx % every != 0:
            return None
        self.active_rounds += 1
        return self.active.propose(problem, pool, round_idx)

    def metrics(self, draws: DrawCounts) -> dict[str, float]:
        return {**self.importance.metrics(draws), **self.active.metrics(draws),
                "sampler/hybrid/active_rounds": float(self.active_rounds)}

    def state_dict(self) -> dict[str, Any]:
        return {"importance": self.importance.state_dict(), "active": self.active.state_dict(),
                "active_rounds": self.active_rounds}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.importance.load_state_dict(state["importance"])
        self.active.load_state_dict(state["active"])
        self.active_rounds = int(state["active_rounds"])
