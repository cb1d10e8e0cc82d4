"""The importance sampler: batches drawn by the importance law (:mod:`.importance_law`), from a
fresh |Q| or a prepared draw table, with correction weights."""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from nearpole_exp.pool import DrawCounts
from nearpole_exp.rng import resolve_device
from nearpole_exp.sampling.base import BatchSampler, PoolView, SamplerCapabilities, Selection
from nearpole_exp.sampling.distances import newton_distance
from nearpole_exp.sampling.importance_law import (
    MULTINOMIAL_MAX,
    DrawTable,
    ImportanceSamplerConfig,
    build_table,
    correction_weights,
    importance_weights,
    mixture_draw,
)

log = logging.getLogger(__name__)


class ImportanceSampler(BatchSampler):
    """Batches drawn ∝ a soft-capped, tempered 1/|Q|^p mixed with uniform; returns corrections.

    Plain use: ``ImportanceSampler(ImportanceSamplerConfig(weight_power=2.0)).select(n, 128,
    values=q.abs())``; ZeroProofML's method names are :class:`~.zeroproof.ZeroProofSampler`.
    """

    config_class = ImportanceSamplerConfig  # the schema of its config group option (config.py)

    capabilities = SamplerCapabilities(needs_q=True)

    def __init__(self, config: ImportanceSamplerConfig | None = None, **overrides: Any) -> None:
        super().__init__()
        self.config = dataclasses.replace(config or ImportanceSamplerConfig(), **overrides)
        self.last_selection: Selection | None = None
        self.n_fallbacks = 0
        self.last_values: Tensor | None = None
        self._scratch: DrawTable | None = None  # buffers reused by draws from a fresh |Q|
        self._work: Tensor | None = None

    def _fell_back(self, n: int) -> None:
        """Count draws that went uniform for want of a usable weight; the first one is logged
        (in a training loop of one's own, nothing else would show it)."""
        if n and self.n_fallbacks == 0:
            log.warning("importance sampler: no |Q| in the pool gives a finite positive weight "
                        "(all NaN or inf?): batches are drawn uniformly until one does "
                        "(counted in sampler/importance/fallbacks)")
        self.n_fallbacks += n

    # -- densities ---------------------------------------------------------------------------
    def compute_weights(self, q: Tensor) -> Tensor:
        """Normalised sampling probabilities π over the pool (defensive mixture included)."""
        u = importance_weights(q, self.config).double()
        total = u.sum()
        n = u.numel()
        if n == 0:
            raise ValueError("cannot compute weights of an empty pool")
        if not bool(total > 0):
            self._fell_back(1)
            return torch.full_like(u, 1.0 / n)
        s = self.config.uniform_mix
        return (1.0 - s) * u / total + s / n

    def draw_values(self, view: PoolView) -> Tensor | None:
        """``config.distance`` of every pool sample: |Q|, or the Newton distance |Q|/‖∇Q‖."""
        q_abs = view.q_abs()
        if self.config.distance == "abs_q" or q_abs is None:
            return q_abs
        return self.distance_values(view.inputs, q_abs, view.q_fn)

    def distance_values(self, inputs: Tensor, q: Tensor | None = None,
                        q_fn: Callable[[Tensor], Tensor] | None = None) -> Tensor:
        """The per-sample values to pass as ``values`` to :meth:`select`, per ``config.distance``."""
        if self.config.distance == "newton":
            if q_fn is None:
                raise ValueError("distance='newton' needs a differentiable q_fn "
                                 "(e.g. model.q_values)")
            return newton_distance(q_fn, inputs, self.config.newton_kappa)
        if q is None:
            if q_fn is None:
                raise ValueError("distance='abs_q' needs q or q_fn")
            with torch.no_grad():
                q = q_fn(inputs)
        return q.detach().reshape(-1).abs()

    # -- drawing -------------------------------------------------------------------------------
    def prepare(self, values: Tensor) -> DrawTable:
        """The draw table of ``values`` for :meth:`select` (pass it as ``values``): later draws
        skip the O(N) weights and cumulative sum. A snapshot, so it never goes stale: call again
        after |Q| changes (the batch selection does, on its refresh cadence)."""
        return build_table(values.detach(), self.config, self.config.uniform_mix)

    def prepare_hybrid(self, values: Tensor) -> DrawTable:
        """:meth:`prepare` for :meth:`select_hybrid`'s share."""
        return build_table(values.detach(), self.config, self.hybrid_share)

    @property
    def hybrid_share(self) -> float:
        """The uniform share of a hybrid batch: 1 − importance_batch_ratio·(1 − uniform_mix)."""
        return 1.0 - self.config.importance_batch_ratio * (1.0 - self.config.uniform_mix)

    def _select(self, n_pool: int, batch_size: int, uniform_share: float,
                q: Tensor | DrawTable | None, prior: Tensor | None,
                device: torch.device | str | None) -> Selection:
        if q is None:
            raise ValueError("ImportanceSampler needs the pool's |Q| (or distance) as values")
        if n_pool <= 0:
            raise ValueError("cannot select a batch from an empty pool")
        n_q = len(q) if isinstance(q, DrawTable) else q.numel()
        if n_q != n_pool:
            raise ValueError(f"values has {n_q} entries for a pool of {n_pool}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if prior is None and uniform_share < 1.0:
            table = q if isinstance(q, DrawTable) and q.share == uniform_share else None
            values = q.values if isinstance(q, DrawTable) else q
            if table is None and n_pool <= MULTINOMIAL_MAX:
                sel = self._draw_fresh(values.detach(), uniform_share, batch_size)
                if sel is not None:
                    return sel
            elif table is None:
                table = self._scratch = build_table(values.detach(), self.config, uniform_share,
                                                    out=self._scratch)
            if table is not None and table.total > 0:
                return self._draw_table(table, batch_size)
        values = q.values if isinstance(q, DrawTable) else q
        dev = resolve_device(device, values)
        values = values.to(dev)
        u = None if uniform_share >= 1.0 else importance_weights(values, self.config)
        draw = mixture_draw(n_pool, batch_size, uniform_share, self.generator(dev), dev, u=u,
                            prior=prior, weights_target=self.config.weights_target)
        self._fell_back(int(draw.fallback))
        weights = correction_weights(draw.ratio, self.config)
        sel = Selection(draw.idx, weights)
        self._record(n_pool, sel, values)
        return sel

    def _draw_fresh(self, values: Tensor, share: float, batch_size: int) -> Selection | None:
        """A draw from a |Q| read now, on a pool small enough for ``torch.multinomial``: the
        mixture weights in a reused buffer, no cumulative sum kept (None if every weight is 0)."""
        n = values.numel()
        work = self._work
        if work is None or work.numel() != n or work.device != values.device:
            work = self._work = torch.empty(n, dtype=torch.float32, device=values.device)
        u = importance_weights(values, self.config, out=work)
        total = float(u.sum())
        if not total > 0:
            return None
        if share > 0:
            u.add_(total * share / ((1.0 - share) * n))
            total /= 1.0 - share
        idx = torch.multinomial(u, batch_size, replacement=True,
                                generator=self.generator(values.device))
        sel = Selection(idx, self._ratios(u[idx].reciprocal_(), total, n, batch_size))
        self._record(n, sel, values)
        return sel

    def _ratios(self, inv: Tensor, total: float, n: int, batch_size: int) -> Tensor:
        """Correction weights from 1/u'_i of the drawn samples: the ratios 1/(N·π_i) =
        Σu'/(N·u'_i), clipped and self-normalised per the config (in place)."""
        cfg = self.config
        if cfg.weights_target == "none":
            return torch.ones(batch_size, device=inv.device)
        if not cfg.self_normalize or cfg.max_correction > 0:
            inv.mul_(total / n)
            if cfg.max_correction > 0:
                inv.clamp_max_(cfg.max_correction)
        return inv.div_(inv.mean()) if cfg.self_normalize else inv

    def _draw_table(self, table: DrawTable, batch_size: int) -> Selection:
        """i.i.d. draws from the mixture π_i = u'_i/Σu' by inverse CDF, with correction ratios
        1/(N·π_i) = Σu'/(N·u'_i) (self-normalised: ∝ 1/u'_i): the hot path, five O(batch) ops."""
        cdf = table.cdf
        r = torch.rand(batch_size, generator=self.generator(cdf.device), device=cdf.device,
                       dtype=torch.float64)
        idx = torch.searchsorted(cdf, r, right=True)
        sel = Selection(idx, self._ratios(table.inv[idx], table.total, len(table), batch_size))
        self._record(len(table), sel, table.values)
        return sel

    def select(
        self,
        n_pool: int,
        batch_size: int,
        *,
        values: Tensor | DrawTable | None = None,
        prior: Tensor | None = None,
        device: torch.device | None = None,
    ) -> Selection:
        """Importance batch with a defensive uniform share ``uniform_mix``."""
        return self._select(n_pool, batch_size, self.config.uniform_mix, values, prior, device)

    def select_hybrid(
        self,
        n_pool: int,
        batch_size: int,
        *,
        values: Tensor | DrawTable | None = None,
        prior: Tensor | None = None,
        device: torch.device | None = None,
    ) -> Selection:
        """Hybrid batch: ``importance_batch_ratio`` by importance, the rest uniform."""
        return self._select(n_pool, batch_size, self.hybrid_share, values, prior, device)

    def objective_weights(self, n_pool: int, values: Tensor | DrawTable | None = None,
                          prior: Tensor | None = None) -> Tensor | None:
        """With correction weights the batches estimate the pool mean (or the prior's mean with
        ``weights_target="prior"``); without them (``weights_target="none"``), the sampling law
        itself: π = (1 − s)·u·r/Σ(u·r) + s·r/Σr for the importance weights u, the prior r (1
        without one) and the uniform share s."""
        return self._objective(n_pool, values, prior, self.config.uniform_mix)

    def _objective(self, n_pool: int, values: Tensor | DrawTable | None, prior: Tensor | None,
                   share: float) -> Tensor | None:
        target = self.config.weights_target
        r = None if prior is None else prior.detach().double().nan_to_num(0.0).clamp_min(0)
        if target == "uniform" or (target == "prior" and r is None):
            return None
        if target == "prior":
            return r
        raw = values.values if isinstance(values, DrawTable) else values
        if raw is None:
            raise ValueError("ImportanceSampler needs the pool's |Q| (or distance) as values")
        base = torch.ones(n_pool, dtype=torch.float64, device=raw.device) if r is None else r.to(raw.device)
        u = importance_weights(raw, self.config).double() * base
        pi = share * base / base.sum().clamp_min(1e-300)
        if bool(u.sum() > 0):
            pi = pi + (1 - share) * u / u.sum()
        else:
            pi = pi + (1 - share) * base / base.sum().clamp_min(1e-300)
        return pi * n_pool

    # -- statistics -----------------------------------------------------------------------------
    def _record(self, n_pool: int, sel: Selection, values: Tensor) -> None:
        """The last selection and the values it drew by (for metrics)."""
        self.last_values = values
        self.last_selection = sel

    def metrics(self, draws: DrawCounts) -> dict[str, float]:
        stats = draw_statistics(draws, self.last_values, self.n_fallbacks)
        sel = self.last_selection
        return {
            "sampler/importance/diversity": stats["sample_diversity"],
            "sampler/importance/ess": math.nan if sel is None else sel.ess,
            "sampler/importance/weight_max": math.nan if sel is None else float(sel.weights.max()),
            "sampler/importance/fallbacks": float(self.n_fallbacks),
            "sampler/importance/mean_q_abs": stats["mean_q_abs"],
        }

    # -- persistence ---------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "n_fallbacks": self.n_fallbacks}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.n_fallbacks = int(state["n_fallbacks"])


def draw_statistics(draws: DrawCounts, last_q: Tensor | None, n_fallbacks: int) -> dict[str, float]:
    """Draw counts and diversity so far, and |Q| of the drawn samples.

    The |Q| statistics weight the pool's latest |Q| (the values of the last draw) by the draw
    counts, so they are exact for a fixed Q and "how near the current poles we have been
    drawing" when Q is a model's and changes.
    """
    nan = math.nan
    counts, total = draws.counts(), draws.total
    if total == 0:
        return {"total_samples": 0.0, "unique_samples": 0.0, "sample_diversity": nan,
                "max_sample_count": 0.0, "min_sample_count": 0.0, "mean_q_abs": nan,
                "min_q_abs": nan, "n_fallbacks": float(n_fallbacks)}
    drawn = counts[counts > 0]
    unique = drawn.numel()
    mean_q = min_q = nan
    if last_q is not None:
        a = last_q.reshape(-1).abs().double()
        c = draws.counts(a.numel()).to(a.device, torch.float64)
        seen = (c > 0) & ~torch.isnan(a)
        if bool(seen.any()):
            mean_q = float((c * a)[seen].sum() / c[seen].sum())
            min_q = float(a[seen].min())
    return {
        "total_samples": float(total),
        "unique_samples": float(unique),
        "sample_diversity": unique / total,
        "max_sample_count": float(drawn.max()),
        "min_sample_count": float(drawn.min()),
        "mean_q_abs": mean_q,
        "min_q_abs": min_q,
        "n_fallbacks": float(n_fallbacks),
    }
