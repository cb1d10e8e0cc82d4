"""Importance sampling of pool samples by inverse distance to a pole, with unbiased corrections.

Sampling density (per pool sample i, before a curriculum prior):

    π_i = (1 − s)·u_i/Σu + s/N,   u_i = 1 / ((a_i/a_ref)^(p/T) + 1/max_weight)

with a_i = max(|Q_i|, min_q_abs) (or the Newton distance |Q|/‖∇Q‖), p = weight_power,
T = temperature and s the uniform share of the batch (``uniform_mix``; for hybrid batches
1 − importance_batch_ratio·(1 − uniform_mix)).

Order of operations, and why (the original applied temperature *after* a hard cap, so with its
defaults every sample with |Q| < 0.1 got the same weight, a two-level step function):

1. floor: a = max(|Q|, min_q_abs); NaN stays NaN, ±inf stays inf.
2. tempered log-weight: log w = −(p/T)·log(a/a_ref), so T only changes the effective power.
3. soft cap: u = 1/(1/w + 1/max_weight), a smooth, strictly decreasing function of a bounded by
   max_weight, so near-pole samples are always ranked by closeness (no plateau) and no sample
   can dominate. ``a_ref`` is the median of a over the pool (``cap_reference="median"``, on a
   deterministic strided subsample of about 8192 values): the median sample gets
   u = 1/(1 + 1/max_weight) ≈ 1, so max_weight bounds the ratio of any weight to a typical
   sample's, and the weights do not change when Q is rescaled (the P/Q gauge);
   ``cap_reference="absolute"`` uses a_ref = 1 like the original.
4. NaN Q → u = 0; |Q| = inf → u = 0; Q = 0 → the floor. If every u is 0 the importance part
   falls back to uniform and ``n_fallbacks`` counts it.
5. defensive mixture with the uniform density (share s), which bounds the correction ratios
   by 1/s.

The uniform and importance parts of a batch are stratified (round(s·B) uniform draws), and the
correction weights use the realised share, so they stay exactly unbiased. All draws are with
replacement, so ``batch_size`` may exceed the pool size. Importance draws use the inverse CDF
(cumulative sum + searchsorted), which has no 2^24 category limit unlike ``torch.multinomial``.
The weights and their cumulative sum are cached per |Q| tensor, so draws between refreshes of
|Q| cost O(batch · log N).

**ZeroProofML's law exactly** (``cap="hard"``, ``cap_reference="absolute"``, ``uniform_mix=0``;
the preset ``sampler=importance_zeroproof``, which also sets ``weights_target="none"`` because
ZeroProofML feeds no correction weights to the loss):

    π_i ∝ min(max(|Q_i|, min_q_abs)^(−p), max_weight)^(1/T).

How the default differs, and why: with ZeroProofML's defaults (p = 2, max_weight = 100) every
sample with |Q| < 0.1 gets the same weight, so its batches cannot tell a sample at |Q| = 1e-6 from
one at 0.09 and ``min_q_abs`` never matters; the absolute cap also depends on the scale of Q
(rescaling P and Q together changes the law). The default soft cap keeps near-pole samples ranked
by closeness, references the cap to the pool's median (scale-free), and keeps a 10 % uniform
share so that correction ratios stay bounded.

``weights_target="none"`` drops the corrections on purpose: the loss then follows the sampling
density, i.e. the objective itself leans towards the poles (a tilted fit). With corrections the
expected gradient is uniform's; tilted, a rational model of the truth's degrees locates the pole
far faster at equal steps (benchmarks/nearpole.md), while one with spare denominator degrees
converges more slowly than under the uniform objective.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from nearpole_exp.errors import check
from nearpole_exp.metrics import effective_sample_size
from nearpole_exp.rng import resolve_device
from nearpole_exp.sampling.base import BatchSampler, Selection

log = logging.getLogger(__name__)

_MEDIAN_SAMPLE = 8192
DISTANCES = ("abs_q", "newton")
CAP_REFERENCES = ("median", "absolute")
CAPS = ("soft", "hard")
WEIGHT_TARGETS = ("prior", "uniform", "none")


@dataclass
class ImportanceSamplerConfig:
    """Importance sampling by 1/|Q|^p (see the module docstring for the exact formula)."""

    weight_power: float = 2.0
    min_q_abs: float = 1e-6
    max_weight: float = 100.0
    temperature: float = 1.0
    cap: str = "soft"
    cap_reference: str = "median"
    importance_batch_ratio: float = 0.7
    uniform_mix: float = 0.1
    distance: str = "abs_q"
    newton_kappa: float = 1e-8
    self_normalize: bool = True
    max_correction: float = 0.0
    weights_target: str = "prior"

    def __post_init__(self) -> None:
        check(self.weight_power >= 0, "weight_power", "must be >= 0")
        check(self.min_q_abs > 0, "min_q_abs", "must be > 0")
        check(self.max_weight > 0, "max_weight", "must be > 0")
        check(self.temperature > 0, "temperature", "must be > 0")
        check(self.cap in CAPS, "cap", f"must be one of {CAPS}, got {self.cap!r}")
        check(self.cap_reference in CAP_REFERENCES, "cap_reference",
              f"must be one of {CAP_REFERENCES}, got {self.cap_reference!r}")
        check(0.0 <= self.importance_batch_ratio <= 1.0, "importance_batch_ratio",
              "must be in [0, 1]")
        check(0.0 <= self.uniform_mix <= 1.0, "uniform_mix", "must be in [0, 1]")
        check(self.distance in DISTANCES, "distance",
              f"must be one of {DISTANCES}, got {self.distance!r}")
        check(self.newton_kappa > 0, "newton_kappa", "must be > 0")
        check(self.max_correction >= 0, "max_correction", "must be >= 0 (0 disables the clip)")
        check(self.weights_target in WEIGHT_TARGETS, "weights_target",
              f"must be one of {WEIGHT_TARGETS}, got {self.weights_target!r}")


def reference_scale(a: Tensor, mode: str) -> Tensor | float:
    """a_ref: the median of the non-NaN values of ``a`` (strided subsample), or 1."""
    if mode == "absolute":
        return 1.0
    return torch.nanmedian(a[:: max(1, a.numel() // _MEDIAN_SAMPLE)])


def importance_weights(values: Tensor, config: ImportanceSamplerConfig) -> Tensor:
    """Unnormalised importance weights of the pool (NaN/inf → 0): soft cap u_i ∈ [0,
    max_weight]; hard cap (ZeroProofML) u_i = min((a_i/a_ref)^(−p), max_weight)^(1/T)."""
    a = values.detach().reshape(-1)
    a = a.float() if a.dtype != torch.float64 else a
    a = a.abs().clamp_min_(config.min_q_abs)
    ref = reference_scale(a, config.cap_reference)
    if config.cap == "hard":
        u = a.div_(ref).pow_(-config.weight_power).clamp_max_(config.max_weight)
        u = u.pow_(1.0 / config.temperature)
    else:
        power = config.weight_power / config.temperature
        u = a.div_(ref).pow_(power).add_(1.0 / config.max_weight).reciprocal_()
    return u.nan_to_num_(nan=0.0, posinf=0.0, neginf=0.0)


def _inverse_cdf(density: Tensor, k: int, gen: torch.Generator,
                 cdf: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """``k`` indices drawn ∝ ``density`` with replacement, and the density's total (float64);
    ``cdf`` is the density's float64 cumulative sum when the caller has it cached."""
    if cdf is None:
        cdf = torch.cumsum(density, 0, dtype=torch.float64)
    total = cdf[-1]
    draws = torch.rand(k, generator=gen, device=density.device, dtype=torch.float64) * total
    idx = torch.searchsorted(cdf, draws, right=True).clamp_max_(density.numel() - 1)
    return idx, total


@dataclass
class MixtureDraw:
    """One stratified draw from (1 − s)·importance + s·base (base = uniform or the prior)."""

    idx: Tensor
    ratio: Tensor
    fallback: bool


def mixture_draw(
    n_pool: int,
    batch_size: int,
    uniform_share: float,
    gen: torch.Generator,
    device: torch.device,
    *,
    u: Tensor | None = None,
    u_cdf: Tensor | None = None,
    prior: Tensor | None = None,
    weights_target: str = "prior",
) -> MixtureDraw:
    """Draw a batch from the importance/uniform mixture (times ``prior``) with density ratios.

    ``ratio_i`` = target_i/π_i where the target is the prior-shaped pool distribution
    (``weights_target="prior"``, or uniform without a prior) or the uniform pool
    (``"uniform"``, which undoes a curriculum). ``u_cdf``, the cumulative sum of ``u``, skips
    the O(n) scan on every draw while ``u`` is unchanged (only used without a prior).
    """
    if n_pool <= 0:
        raise ValueError("cannot select a batch from an empty pool")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    fallback = False
    r: Tensor | None = None
    if prior is not None:
        if prior.numel() != n_pool:
            raise ValueError(f"prior has {prior.numel()} values for a pool of {n_pool}")
        r = prior.detach().reshape(-1).to(device=device, dtype=torch.float32)
        r = r.nan_to_num(nan=0.0, posinf=0.0).clamp_min_(0.0)
        if not bool(r.sum() > 0):
            r, fallback = None, True
    if u is None:
        uniform_share = 1.0
    n_uni = round(uniform_share * batch_size)
    n_imp = batch_size - n_uni
    share = n_uni / batch_size
    parts: list[Tensor] = []
    zsum: Tensor | float = float(n_pool)
    if r is not None:
        idx_base, zsum = _inverse_cdf(r, n_uni, gen)
    else:
        idx_base = torch.randint(0, n_pool, (n_uni,), generator=gen, device=device)
    imp_total: Tensor | float = zsum
    dens: Tensor | None = None
    if n_imp > 0:
        assert u is not None
        dens = u.to(device) if r is None else u.to(device) * r
        idx_imp, imp_total = _inverse_cdf(dens, n_imp, gen, u_cdf if r is None else None)
        if not bool(imp_total > 0):
            fallback = True
            dens = None
            if r is not None:
                idx_imp, imp_total = _inverse_cdf(r, n_imp, gen)
            else:
                idx_imp = torch.randint(0, n_pool, (n_imp,), generator=gen, device=device)
                imp_total = zsum
        parts.append(idx_imp)
    parts.append(idx_base)
    idx = torch.cat(parts)
    idx = idx[torch.randperm(batch_size, generator=gen, device=device)]
    # g_i = π_i / r_i: the mixture density divided by the prior multiplier.
    if dens is None:
        g = torch.full((batch_size,), 1.0, dtype=torch.float64, device=device) / zsum
    else:
        assert u is not None
        u_sel = u.to(device)[idx].double()
        g = (1.0 - share) * u_sel / imp_total + share / zsum
    if weights_target == "uniform" and r is not None:
        ratio = 1.0 / (n_pool * r[idx].double() * g)
    else:
        ratio = 1.0 / (zsum * g)
    return MixtureDraw(idx, ratio, fallback)


def correction_weights(ratio: Tensor, config: ImportanceSamplerConfig) -> Tensor:
    """Clip density ratios at ``max_correction`` (if > 0), then self-normalise to mean 1;
    all ones with ``weights_target="none"`` (the loss follows the sampling density)."""
    if config.weights_target == "none":
        return torch.ones_like(ratio, dtype=torch.float32)
    w = ratio
    if config.max_correction > 0:
        w = w.clamp_max(config.max_correction)
    if config.self_normalize:
        w = w / w.mean()
    return w.float()


def q_and_grad(q_fn: Callable[[Tensor], Tensor], x: Tensor,
               chunk_size: int = 65536) -> tuple[Tensor, Tensor]:
    """Q(x) [n] and ∇ₓQ [n, d] by autograd in chunks (rows must not interact: no batchnorm)."""
    if len(x) == 0:
        return x.new_zeros(0), x.detach().flatten(1) if x.dim() > 1 else x.new_zeros(0, 1)
    qs, grads = [], []
    for chunk in x.detach().split(chunk_size):
        xc = chunk.clone().requires_grad_(True)
        with torch.enable_grad():
            q = q_fn(xc).reshape(-1)
            (g,) = torch.autograd.grad(q.sum(), xc, allow_unused=True)
        qs.append(q.detach())
        grads.append(torch.zeros_like(xc) if g is None else g.detach())
    return torch.cat(qs), torch.cat(grads).reshape(len(x), -1)


def newton_distance(q_fn: Callable[[Tensor], Tensor], x: Tensor, kappa: float = 1e-8,
                    chunk_size: int = 65536) -> Tensor:
    """Gauge-invariant distance |Q|/max(‖∇ₓQ‖, κ): the length of one Newton step to Q = 0."""
    q, g = q_and_grad(q_fn, x, chunk_size)
    return q.abs() / g.norm(dim=1).clamp_min(kappa)


@dataclass
class _WeightCache:
    """Weights of one |Q| tensor, valid while it is the same object at the same version (an
    in-place change bumps ``_version``; holding ``q`` keeps its memory from being reused)."""

    q: Tensor
    version: int
    u: Tensor
    cdf: Tensor

    def matches(self, q: Tensor) -> bool:
        return q is self.q and q._version == self.version


class ImportanceSampler(BatchSampler):
    """Batches drawn ∝ a soft-capped, tempered 1/|Q|^p mixed with uniform; returns corrections.

    Plain use: ``ImportanceSampler(ImportanceSamplerConfig(weight_power=2.0)).sample_batch(x, q,
    batch_size=128)`` gives ``(batch_x, idx)``; the runner calls :meth:`select`.
    """

    config_class = ImportanceSamplerConfig  # the schema of its config group option (config.py)

    needs_q = True

    def __init__(self, config: ImportanceSamplerConfig | None = None, **overrides: Any) -> None:
        super().__init__()
        self.config = dataclasses.replace(config or ImportanceSamplerConfig(), **overrides)
        self.last_selection: Selection | None = None
        self.n_fallbacks = 0
        self._last_q: Tensor | None = None
        self._cache: _WeightCache | None = None

    # -- densities ---------------------------------------------------------------------------
    def compute_weights(self, q: Tensor) -> Tensor:
        """Normalised sampling probabilities π over the pool (defensive mixture included)."""
        u = importance_weights(q, self.config).double()
        total = u.sum()
        n = u.numel()
        if n == 0:
            raise ValueError("cannot compute weights of an empty pool")
        if not bool(total > 0):
            self.n_fallbacks += 1
            return torch.full_like(u, 1.0 / n)
        s = self.config.uniform_mix
        return (1.0 - s) * u / total + s / n

    def draw_values(self, inputs: Tensor, q_abs: Tensor,
                    q_fn: Callable[[Tensor], Tensor] | None) -> Tensor:
        """``config.distance`` of every pool sample: |Q|, or the Newton distance |Q|/‖∇Q‖."""
        if self.config.distance == "abs_q":
            return q_abs
        return self.distance_values(inputs, q_abs, q_fn)

    def distance_values(self, inputs: Tensor, q: Tensor | None = None,
                        q_fn: Callable[[Tensor], Tensor] | None = None) -> Tensor:
        """The per-sample values to pass as ``q`` to :meth:`select`, per ``config.distance``."""
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
    def _select(self, n_pool: int, batch_size: int, uniform_share: float, q: Tensor | None,
                prior: Tensor | None, device: torch.device | str | None) -> Selection:
        if q is None:
            raise ValueError("ImportanceSampler needs the pool's |Q| (or distance) as q")
        if n_pool <= 0:
            raise ValueError("cannot select a batch from an empty pool")
        if q.numel() != n_pool:
            raise ValueError(f"q has {q.numel()} values for a pool of {n_pool}")
        dev = resolve_device(device, q)
        q = q.to(dev)
        gen = self.generator(dev)
        u = u_cdf = None
        if uniform_share < 1.0:
            u, u_cdf = self._weights(q)
        draw = mixture_draw(n_pool, batch_size, uniform_share, gen, dev, u=u, u_cdf=u_cdf,
                            prior=prior, weights_target=self.config.weights_target)
        self.n_fallbacks += int(draw.fallback)
        weights = correction_weights(draw.ratio, self.config)
        sel = Selection(draw.idx, weights, effective_sample_size(weights))
        self._record(n_pool, sel, q)
        return sel

    def _weights(self, q: Tensor) -> tuple[Tensor, Tensor]:
        """Importance weights of ``q`` and their cumulative sum, cached while ``q`` is the same,
        unmodified tensor (the runner refreshes |Q| on a cadence, so most steps reuse them)."""
        cache = self._cache
        if cache is None or not cache.matches(q):
            u = importance_weights(q, self.config)
            cache = _WeightCache(q, q._version, u, torch.cumsum(u, 0, dtype=torch.float64))
            self._cache = cache
        return cache.u, cache.cdf

    def clear_cache(self) -> None:
        """Forget cached weights (they are also recomputed whenever ``q`` changes)."""
        self._cache = None

    def select(
        self,
        n_pool: int,
        batch_size: int,
        *,
        q: Tensor | None = None,
        prior: Tensor | None = None,
        device: torch.device | None = None,
    ) -> Selection:
        """Importance batch with a defensive uniform share ``uniform_mix``."""
        return self._select(n_pool, batch_size, self.config.uniform_mix, q, prior, device)

    def select_hybrid(
        self,
        n_pool: int,
        batch_size: int,
        *,
        q: Tensor | None = None,
        prior: Tensor | None = None,
        device: torch.device | None = None,
    ) -> Selection:
        """Hybrid batch: ``importance_batch_ratio`` by importance, the rest uniform."""
        share = 1.0 - self.config.importance_batch_ratio * (1.0 - self.config.uniform_mix)
        return self._select(n_pool, batch_size, share, q, prior, device)

    def sample_batch(self, x_pool: Tensor, q_pool: Tensor,
                     batch_size: int) -> tuple[Tensor, Tensor]:
        """``(batch_x, idx)`` drawn by :meth:`select` and counted (:meth:`get_statistics`);
        weights are in ``last_selection``."""
        sel = self.select(len(x_pool), batch_size, q=q_pool, device=x_pool.device)
        self.record(sel.idx, len(x_pool))
        return x_pool[sel.idx], sel.idx

    def hybrid_sample(self, x_pool: Tensor, q_pool: Tensor,
                      batch_size: int) -> tuple[Tensor, Tensor]:
        """``(batch_x, idx)`` of a shuffled importance + uniform batch on the pool's device."""
        sel = self.select_hybrid(len(x_pool), batch_size, q=q_pool, device=x_pool.device)
        self.record(sel.idx, len(x_pool))
        return x_pool[sel.idx], sel.idx

    # -- statistics -----------------------------------------------------------------------------
    def _record(self, n_pool: int, sel: Selection, q: Tensor) -> None:
        """The last selection and |Q| (for metrics); draw counts are kept by :meth:`record`."""
        self._last_q = q
        self.last_selection = sel

    def get_statistics(self) -> dict[str, float]:
        """Draw counts and diversity so far, and |Q| of the drawn samples.

        The |Q| statistics weight the pool's latest |Q| (the ``q`` of the last draw) by the
        draw counts, so they are exact for a fixed Q and "how near the current poles we have
        been drawing" when Q is a model's and changes.
        """
        nan = math.nan
        counts, total = self.draws.counts(), self.draws.total
        if total == 0:
            return {"total_samples": 0.0, "unique_samples": 0.0, "sample_diversity": nan,
                    "max_sample_count": 0.0, "min_sample_count": 0.0, "mean_q_abs": nan,
                    "min_q_abs": nan, "n_fallbacks": float(self.n_fallbacks)}
        drawn = counts[counts > 0]
        unique = drawn.numel()
        mean_q = min_q = nan
        if self._last_q is not None:
            a = self._last_q.reshape(-1).abs().double()
            c = self.draws.counts(a.numel()).to(a.device, torch.float64)
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
            "n_fallbacks": float(self.n_fallbacks),
        }

    def sample_counts(self, n_pool: int | None = None) -> Tensor:
        """How often each pool index has been drawn (a tensor on the sampler's device)."""
        return self.draws.counts(n_pool)

    def metrics(self) -> dict[str, float]:
        stats = self.get_statistics()
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
        if "counts" in state:  # written before the counts had one owner
            counts = state["counts"]
            self.draws.load_state_dict({"counts": torch.zeros(0, dtype=torch.int64)
                                        if counts is None else counts, "total": state["n_total"]})
        self.n_fallbacks = int(state["n_fallbacks"])
