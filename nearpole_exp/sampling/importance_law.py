"""The importance law: per-sample weights by inverse distance to a pole, mixture draws with their
correction ratios, and draw tables (what :class:`~nearpole_exp.sampling.importance.ImportanceSampler`
draws with).

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
   deterministic strided subsample of about 1024 values): the median sample gets
   u = 1/(1 + 1/max_weight) ≈ 1, so max_weight bounds the ratio of any weight to a typical
   sample's, and the weights do not change when Q is rescaled (the P/Q gauge);
   ``cap_reference="absolute"`` uses a_ref = 1 like the original.
4. NaN Q → u = 0; |Q| = inf → u = 0; Q = 0 → the floor. If every u is 0 the importance part
   falls back to uniform and ``n_fallbacks`` counts it.
5. defensive mixture with the uniform density (share s), which bounds the correction ratios
   by 1/s.

Without a prior, a batch is B i.i.d. draws from π by inverse CDF (cumulative sum +
searchsorted, no 2^24 category limit unlike ``torch.multinomial``) with correction ratios
1/(N·π_i); with a prior (a curriculum) the uniform and importance parts are stratified
(round(s·B) base draws) and the weights use the realised share. Both are exactly unbiased; all
draws are with replacement, so ``batch_size`` may exceed the pool size.

Speed: ``select(q=tensor)`` reads |Q| afresh at every call (a handful of O(N) passes into
buffers the sampler reuses), so no way of changing |Q| can leave stale weights;
``select(q=sampler.prepare(q))`` draws from a :class:`DrawTable`, a snapshot of the weights and
their cumulative sum, in O(batch · log N). The runner prepares a table whenever it refreshes |Q|.

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

from dataclasses import dataclass

import torch
from torch import Tensor

from nearpole_exp.errors import check

_MEDIAN_SAMPLE = 1024
DISTANCES = ("abs_q", "newton")
CAP_REFERENCES = ("median", "absolute")
CAPS = ("soft", "hard")
#: Pools up to this size draw from a fresh |Q| with ``torch.multinomial`` (no cumulative sum to
#: build); larger ones build a table in reused buffers (multinomial allocates per call).
MULTINOMIAL_MAX = 2**20
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


def importance_weights(values: Tensor, config: ImportanceSamplerConfig,
                       out: Tensor | None = None) -> Tensor:
    """Unnormalised importance weights of the pool (NaN/inf → 0): soft cap u_i ∈ [0,
    max_weight]; hard cap (ZeroProofML) u_i = min((a_i/a_ref)^(−p), max_weight)^(1/T). Written
    in place into ``out`` when given (a buffer the sampler reuses), else into a new tensor
    (float64 for float64 values, float32 otherwise)."""
    flat = values.detach().reshape(-1)
    if out is None:
        dtype = torch.float64 if flat.dtype == torch.float64 else torch.float32
        out = torch.empty(flat.numel(), dtype=dtype, device=flat.device)
    a = torch.abs(flat, out=out) if flat.dtype == out.dtype else out.copy_(flat).abs_()
    a.clamp_min_(config.min_q_abs)
    ref = reference_scale(a, config.cap_reference)
    if config.cap == "hard":
        u = a.div_(ref).pow_(-config.weight_power).clamp_max_(config.max_weight)
        if config.temperature != 1.0:
            u.pow_(1.0 / config.temperature)
    else:
        power = config.weight_power / config.temperature
        u = a.div_(ref).pow_(power).add_(1.0 / config.max_weight).reciprocal_()
    return u.nan_to_num_(nan=0.0, posinf=0.0, neginf=0.0)


def _inverse_cdf(density: Tensor, k: int, gen: torch.Generator) -> tuple[Tensor, Tensor]:
    """``k`` indices drawn ∝ ``density`` with replacement, and the density's total (float64)."""
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
    prior: Tensor | None = None,
    weights_target: str = "prior",
) -> MixtureDraw:
    """Draw a batch from the importance/uniform mixture (times ``prior``) with density ratios.

    ``ratio_i`` = target_i/π_i where the target is the prior-shaped pool distribution
    (``weights_target="prior"``, or uniform without a prior) or the uniform pool
    (``"uniform"``, which undoes a curriculum). The batch is stratified: round(s·B) draws
    from the base, the rest by importance.
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
        idx_imp, imp_total = _inverse_cdf(dens, n_imp, gen)
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


@dataclass
class DrawTable:
    """What importance draws need from one |Q| snapshot, for one uniform share s, with the
    mixture weights u'_i = u_i + s/(1 − s)·Σu/N ∝ π_i: their float64 cumulative sum normalised to
    end at 1, and 1/u'_i (float32). A snapshot: changing |Q| afterwards, in any way, never
    changes it (:meth:`ImportanceSampler.prepare` makes one; :meth:`select` accepts it in place of
    |Q| and then skips the O(N) work)."""

    values: Tensor  # the |Q| it was built from (statistics only)
    share: float
    inv: Tensor     # 1/u'_i, float32 [N] (inf where the weight is 0: never drawn)
    cdf: Tensor     # cumulative sum of u' / Σu', float64 [N], cdf[-1] == 1
    total: float    # Σu'; 0 when every weight is 0 (the draw falls back to uniform)

    def __len__(self) -> int:
        return self.inv.numel()


def build_table(values: Tensor, config: ImportanceSamplerConfig, share: float,
                out: DrawTable | None = None) -> DrawTable:
    """A :class:`DrawTable` of ``values`` (|Q| or a distance) for uniform share ``share`` < 1,
    reusing ``out``'s buffers when they fit (no new memory to fault in on a refresh)."""
    n = values.numel()
    fits = out is not None and len(out) == n and out.inv.device == values.device
    work = out.inv if fits else torch.empty(n, dtype=torch.float32, device=values.device)
    cdf = out.cdf if fits else torch.empty(n, dtype=torch.float64, device=values.device)
    u = importance_weights(values, config, out=work)
    if share > 0:  # float32 sum (cascaded): a dtype argument would copy the pool to float64
        u.add_(float(u.sum()) * share / ((1.0 - share) * n))
    cdf.copy_(u).cumsum_(0)  # in the float64 buffer: no float64 temporary of the pool
    total = float(cdf[-1]) if n else 0.0
    if total > 0:
        cdf.div_(total)
    return DrawTable(values, share, u.reciprocal_(), cdf, total)
