"""Batch selection, the loop's second lever: which pool samples each gradient step trains on.

:class:`BatchSelection` owns the sampler, the curriculum and the design prior, and every view of
the pool they draw by: |Q| (the problem's, or the model's refreshed every ``q_refresh_every``
steps), what the sampler draws by (|Q| or a distance, prepared once per |Q|), the distance to the
nearest pole (|Q| where the problem has none) and the breeder's design prior. The views are
rebuilt when the pool's ``version`` or the |Q| refresh says so, in one place.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from nearpole_exp.pool import Pool
from nearpole_exp.sampling.base import BatchSampler, PoolView, Selection
from nearpole_exp.sampling.curriculum import Curriculum, NoCurriculum

QFunction = Callable[[Tensor], Tensor]
#: the model's per-sample loss on the whole pool (for samplers that draw by it)
PoolLosses = Callable[[], Tensor]
#: p_design/p_asked of the breeder's simulation ids (None before there is a ratio)
DesignWeights = Callable[[Tensor], Tensor | None]


@dataclass
class Batch:
    """One step's samples: pool rows, their inputs and targets, correction weights, the pool's
    |Q| at those rows where it was computed and their distance to the nearest pole where known."""

    idx: Tensor
    inputs: Tensor
    targets: Tensor
    selection: Selection
    q_abs: Tensor | None = None
    distance: Tensor | None = None

    @property
    def weights(self) -> Tensor:
        return self.selection.weights

    @property
    def near_values(self) -> Tensor | None:
        """What "near a pole" is measured by: the distance, else |Q|."""
        return self.distance if self.distance is not None else self.q_abs


class BatchSelection:
    """Sampler + curriculum + design prior over one pool (see the module docstring).

    ``q_fn`` is the model's Q (``q_source="model"``), else the problem's known Q is read from the
    pool; ``problem_q`` is the problem's Q as a function (for distances that need ∇Q);
    ``design_weights`` gives p_design/p_asked per simulation id, applied as a batch prior with
    power ``design_weighting`` (0: none); ``pool_losses`` gives the model's loss on the pool, for
    a sampler that draws by it (recomputed every ``q_refresh_every`` steps, like the model's |Q|).
    """

    def __init__(self, pool: Pool, sampler: BatchSampler, *, curriculum: Curriculum | None = None,
                 q_fn: QFunction | None = None, problem_q: QFunction | None = None,
                 q_refresh_every: int = 50, design_weighting: float = 0.0,
                 design_weights: DesignWeights | None = None,
                 pool_losses: PoolLosses | None = None) -> None:
        self.pool = pool
        self.sampler = sampler
        self.curriculum = curriculum or NoCurriculum()
        self.q_fn, self.problem_q = q_fn, problem_q
        self.q_refresh_every = q_refresh_every
        self.design_weighting = design_weighting
        self.design_weights = design_weights
        self.pool_losses = pool_losses
        self._q: tuple[int, int, Tensor | None] = (-1, -1, None)  # (pool version, step, |Q|)
        self._draw: tuple[Any, Any] = (None, None)                # (what it was built from, prepared)
        self._q_version = 0
        self._design: tuple[int, Tensor | None] = (-1, None)

    # -------------------------------------------------------------- views of the pool
    def q_abs(self, step: int) -> Tensor | None:
        """|Q| of every pool sample: the problem's, or the model's refreshed on its cadence."""
        version, at, value = self._q
        fresh = version == self.pool.version and (
            self.q_fn is None or step - at < self.q_refresh_every)
        if not fresh:
            if self.q_fn is None:
                q = self.pool.field("q")
                value = None if q is None else q.abs()
            else:
                with torch.no_grad():
                    value = torch.cat([self.q_fn(x).abs() for x in self.pool.inputs.split(65536)])
            self._q = (self.pool.version, step, value)
            self._q_version += 1
        return value

    def q_function(self) -> QFunction | None:
        """Q as a differentiable function of the inputs (the model's or the problem's)."""
        return self.q_fn if self.q_fn is not None else self.problem_q

    def draw_values(self, step: int) -> Any:
        """What the sampler draws by, prepared for many draws; rebuilt only when what it is read
        from changes (|Q|, or the pool and the loss's refresh)."""
        if self.sampler.capabilities.needs_loss:
            if self.pool_losses is None:
                raise ValueError(f"{type(self.sampler).__name__} draws by the model's loss: give "
                                 "the selection pool_losses")
            key: Any = ("loss", self.pool.version, step // self.q_refresh_every)
        else:
            self.q_abs(step)
            key = ("q", self._q_version)
        built_from, values = self._draw
        if built_from != key:
            view = PoolView(self.pool.inputs, lambda: self.q_abs(step), self.q_function(),
                            self.pool_losses)
            raw = self.sampler.draw_values(view)
            values = None if raw is None else self.sampler.prepare(raw)
            self._draw = (key, values)
        return values

    def distance(self, step: int) -> Tensor | None:
        """Distance to the nearest pole of every pool sample (|Q| where the problem has none)."""
        dist = self.pool.field("distance")
        return dist if dist is not None else self.q_abs(step)

    def design_prior(self) -> Tensor | None:
        """Per-sample prior (p_design/p_pool)^α of each sample's simulation, so that batches lean
        back from a breeder-biased pool towards the design; None when α = 0 or there is no ratio."""
        if self.design_weighting <= 0 or self.design_weights is None:
            return None
        version, prior = self._design
        if version != self.pool.version:
            prior = None
            point_sims = self.pool.point_sim_ids
            mine = torch.nonzero(point_sims >= 0)[:, 0]
            w = self.design_weights(point_sims[mine]) if mine.numel() else None
            if w is not None:
                per_point = torch.ones(len(point_sims), dtype=torch.float64)
                per_point[mine] = w.double().pow(self.design_weighting)
                prior = per_point[self.pool.source.cpu()].to(self.pool.inputs.device)
            self._design = (self.pool.version, prior)
        return prior

    def prior(self, step: int) -> Tensor | None:
        """The batch prior: the curriculum's band times the design prior."""
        prior = None
        if not isinstance(self.curriculum, NoCurriculum):  # no pool view to read without one
            values = self.q_abs(step) if self.curriculum.variable == "q_abs" else self.distance(step)
            prior = None if values is None else self.curriculum.prior(values)
        design = self.design_prior()
        if design is not None:
            prior = design if prior is None else prior * design
        return prior

    def objective_weights(self, step: int) -> Tensor | None:
        """Per-sample weights of the objective the batches estimate (sampler, curriculum and
        design prior together); None: the pool mean."""
        needs = self.sampler.capabilities.needs_values
        return self.sampler.objective_weights(len(self.pool),
                                              self.draw_values(step) if needs else None,
                                              self.prior(step))

    # -------------------------------------------------------------- batches
    def whole_pool(self, step: int, device: torch.device, with_q: bool = False) -> Batch:
        """Every pool sample, weighted by :meth:`objective_weights` (mean weight 1): the batch of
        a full-batch optimizer and of the polish."""
        n = len(self.pool)
        weights = self.objective_weights(step)
        weights = (torch.ones(n, dtype=torch.float64, device=device) if weights is None
                   else (weights.to(device) / weights.mean().clamp_min(1e-300)))
        idx = torch.arange(n, device=device)
        q_abs = self.q_abs(step) if with_q else None
        return Batch(idx, self.pool.inputs, self.pool.targets, Selection(idx, weights), q_abs,
                     self.pool.field("distance"))

    def next(self, step: int, batch_size: int, device: torch.device, with_q: bool = False) -> Batch:
        """Draw the batch of ``step`` (and count it); ``with_q`` also gives the rows' |Q|."""
        caps = self.sampler.capabilities
        q_abs = self.q_abs(step) if with_q or caps.needs_q else None
        sel = self.sampler.select(len(self.pool), batch_size,
                                  values=self.draw_values(step) if caps.needs_values else None,
                                  prior=self.prior(step), device=device)
        idx = sel.idx.to(device)
        self.pool.record_draws(idx)
        dist = self.pool.field("distance")
        return Batch(idx, self.pool.inputs[idx], self.pool.targets[idx], sel,
                     None if q_abs is None else q_abs[idx], None if dist is None else dist[idx])

    # -------------------------------------------------------------- rounds and reports
    def end_round(self, round_idx: int, record: dict[str, Any]) -> dict[str, float]:
        """Let the curriculum see the round's record; returns its metrics."""
        self.curriculum.update(round_idx, record)
        return self.curriculum.metrics()

    def metrics(self) -> dict[str, float]:
        """The sampler's metrics and, under a design prior, the share of the pool it draws from."""
        out = self.sampler.metrics(self.pool.draws)
        prior = self._design[1]
        if prior is not None:  # 1: uniform over the pool
            out["train/design_ess"] = float(prior.sum() ** 2 / (prior.pow(2).sum() * len(prior)))
        return out
