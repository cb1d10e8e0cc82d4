"""Active acquisition near poles: a refinable grid plus log-spaced points around roots of Q.

Each adapt round, :meth:`ActiveSampler.propose` returns new points for the runner to label
(``problem.label`` + ``pool.add``):

1. round 0: a tensor-product grid over the box (``initial_grid_size`` points in total).
2. roots of Q: in 1D, sign changes of Q between neighbouring grid points, refined by
   bisection; in nD, Newton projections x ← x − Q·∇Q/‖∇Q‖² from grid points with small |Q|.
   Around every new root, points at log-spaced distances in [near_root_min_distance,
   near_root_max_distance] on both sides (along the normal ∇Q/‖∇Q‖ in nD), so every distance
   bucket B0…B4 of ``metrics.BUCKET_EDGES`` gets samples.
3. grid refinement: every unrefined grid point with |Q| < refinement_threshold (or, in 1D,
   next to a sign change) and level < max_refinement_level gets children at offsets
   k·h_L/r (k = −(r−1)…r−1 per axis, not all 0; h_L = h_0/r^L its spacing), clipped to the box
   and deduplicated; the parent is marked refined. Smallest |Q| first.

``max_grid_points`` is a hard cap on every point ever proposed, and ``points_per_round`` on one
round's steps 2–3; both are filled exactly and never overshot (a parent or root whose points
do not all fit is completed in a later round). Q comes from ``q_fn`` if set (e.g.
a model's ``q_values``), else the problem's known ``problem.q``.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from nearpole_exp.errors import check
from nearpole_exp.metrics import effective_sample_size
from nearpole_exp.rng import generator_state, resolve_device, restore_generator
from nearpole_exp.sampling.base import BatchSampler, SamplerCapabilities, Selection
from nearpole_exp.sampling.distances import q_and_grad
from nearpole_exp.sampling.importance_law import (
    ImportanceSamplerConfig,
    correction_weights,
    importance_weights,
    mixture_draw,
)

if TYPE_CHECKING:
    from nearpole_exp.pool import DrawCounts, Pool
    from nearpole_exp.problems.base import Problem

log = logging.getLogger(__name__)

GRID, ROOT = 0, 1
_HISTORY = 10000


@dataclass
class ActiveSamplerConfig:
    """Grid refinement where |Q| is small and log-spaced points around roots of Q."""

    initial_grid_size: int = 64
    refinement_threshold: float = 0.1
    max_refinement_level: int = 6
    refinement_ratio: int = 2
    max_grid_points: int = 4096
    points_per_round: int = 256
    adapt_frequency: int = 1
    near_root_points: int = 13
    near_root_min_distance: float = 1e-7
    near_root_max_distance: float = 1e-1
    max_roots_per_round: int = 16
    root_merge_distance: float = 1e-3
    bisection_steps: int = 60
    newton_steps: int = 30
    dedup_tolerance: float = 1e-9
    importance_mix: float = 0.0

    def __post_init__(self) -> None:
        check(self.initial_grid_size >= 2, "initial_grid_size", "must be >= 2")
        check(self.refinement_threshold >= 0, "refinement_threshold", "must be >= 0")
        check(self.max_refinement_level >= 0, "max_refinement_level", "must be >= 0")
        check(self.refinement_ratio >= 2, "refinement_ratio", "must be >= 2")
        check(self.max_grid_points >= self.initial_grid_size, "max_grid_points",
              "must be >= initial_grid_size")
        check(self.points_per_round >= 1, "points_per_round", "must be >= 1")
        check(self.adapt_frequency >= 1, "adapt_frequency", "must be >= 1")
        check(self.near_root_points >= 0, "near_root_points", "must be >= 0")
        check(0 < self.near_root_min_distance < self.near_root_max_distance,
              "near_root_min_distance", "must satisfy 0 < min < near_root_max_distance")
        check(self.max_roots_per_round >= 0, "max_roots_per_round", "must be >= 0")
        check(self.root_merge_distance >= 0, "root_merge_distance", "must be >= 0")
        check(self.bisection_steps >= 1, "bisection_steps", "must be >= 1")
        check(self.newton_steps >= 1, "newton_steps", "must be >= 1")
        check(self.dedup_tolerance > 0, "dedup_tolerance", "must be > 0")
        check(0.0 <= self.importance_mix <= 1.0, "importance_mix", "must be in [0, 1]")


QFunction = Callable[[Tensor], Tensor]


def tensor_grid(bounds: Tensor, per_dim: int) -> Tensor:
    """All ``per_dim``^d points of the regular grid over ``bounds`` [d, 2], as [n, d]."""
    axes = [torch.linspace(float(lo), float(hi), per_dim, dtype=torch.float64)
            for lo, hi in bounds.tolist()]
    return torch.cartesian_prod(*axes).reshape(-1, len(axes))


def row_groups(keys: Tensor) -> Tensor:
    """Group id of every row of integer ``keys`` [n, d] (equal rows share one), exactly, by a
    lexicographic sort of one stable 1D sort per column (``torch.unique(dim=0)`` was 10× slower)."""
    n = len(keys)
    order = torch.arange(n)
    for j in reversed(range(keys.shape[1])):
        order = order[torch.sort(keys[order, j], stable=True).indices]
    ordered = keys[order]
    starts = torch.ones(n, dtype=torch.bool)
    starts[1:] = (ordered[1:] != ordered[:-1]).any(dim=1)
    groups = torch.empty(n, dtype=torch.long)
    groups[order] = torch.cumsum(starts.long(), 0) - 1
    return groups


def first_new(existing: Tensor, candidates: Tensor) -> Tensor:
    """Mask of candidate rows (integer keys) that are new and the first of their duplicates."""
    both = torch.cat([existing, candidates])
    if len(both) == 0:
        return torch.zeros(0, dtype=torch.bool)
    inverse = row_groups(both.reshape(len(both), -1))
    pos = torch.arange(len(both))
    first = torch.full((int(inverse.max()) + 1,), len(both), dtype=torch.long)
    first = first.scatter_reduce(0, inverse, pos, reduce="amin")
    return (first[inverse] == pos)[len(existing):]


def far_from(points: Tensor, known: Tensor, radius: float) -> Tensor:
    """Mask of ``points`` farther than ``radius`` from every ``known`` point and every earlier one."""
    if len(points) == 0:
        return torch.zeros(0, dtype=torch.bool)
    keep = torch.ones(len(points), dtype=torch.bool)
    if len(known):
        keep &= torch.cdist(points, known).min(dim=1).values > radius
    near = torch.cdist(points, points) <= radius
    earlier = torch.tril(near, diagonal=-1) & keep[None, :]
    return keep & ~earlier.any(dim=1)


def take_within(new: Tensor, budget: int) -> tuple[Tensor, Tensor]:
    """Budgeted acceptance of candidate groups ``new`` [groups, per_group] (a mask).

    Returns (the first ``budget`` new candidates in row-major order, the groups whose new
    candidates were all taken). A partly taken group is completed in a later round.
    """
    take = new & (torch.cumsum(new.reshape(-1).long(), 0) <= budget).reshape(new.shape)
    return take, (take == new).all(dim=1)


def bisect_roots(q_fn: QFunction, a: Tensor, b: Tensor, steps: int) -> Tensor:
    """Roots in brackets [a, b] (1D, Q changes sign), by ``steps`` vectorised bisections."""
    fa = torch.sign(q_fn(a[:, None]).reshape(-1).double())
    for _ in range(steps):
        m = 0.5 * (a + b)
        fm = torch.sign(q_fn(m[:, None]).reshape(-1).double())
        same = fm == fa
        zero = fm == 0
        a = torch.where(same | zero, m, a)
        b = torch.where(same & ~zero, b, m)
    return 0.5 * (a + b)


def newton_project(q_fn: QFunction, x: Tensor, bounds: Tensor, steps: int,
                   tol: float) -> tuple[Tensor, Tensor, Tensor]:
    """Project points onto Q = 0 along ∇Q; returns (roots, unit normals, converged mask)."""
    for _ in range(steps):
        q, g = q_and_grad(q_fn, x)
        g2 = (g * g).sum(dim=1).clamp_min(1e-300)
        x = torch.minimum(torch.maximum(x - (q / g2)[:, None] * g, bounds[:, 0]), bounds[:, 1])
    q, g = q_and_grad(q_fn, x)
    gn = g.norm(dim=1)
    converged = (q.abs() / gn.clamp_min(1e-300) <= tol) & (gn > 0) & torch.isfinite(q)
    return x, g / gn.clamp_min(1e-300)[:, None], converged


class ActiveSampler(BatchSampler):
    """Proposes points near poles by grid refinement and root ladders; batches are uniform.

    ``bounds`` ([d, 2]) may be given here or are taken from the problem at the first
    :meth:`propose`; ``q_fn`` overrides ``problem.q`` (e.g. a model's ``q_values``).
    """

    config_class = ActiveSamplerConfig  # the schema of its config group option (config.py)

    def __init__(self, config: ActiveSamplerConfig | None = None, *, bounds: Tensor | None = None,
                 q_fn: QFunction | None = None, **overrides: Any) -> None:
        super().__init__()
        self.config = dataclasses.replace(config or ActiveSamplerConfig(), **overrides)
        self.capabilities = SamplerCapabilities(needs_q=self.config.importance_mix > 0,
                                                proposes=True)
        self._importance = ImportanceSamplerConfig(uniform_mix=0.0)
        self.q_fn = q_fn
        self.bounds = None if bounds is None else torch.as_tensor(bounds, dtype=torch.float64)
        self.points = torch.zeros(0, 0, dtype=torch.float64)
        self.level = torch.zeros(0, dtype=torch.long)
        self.refined = torch.zeros(0, dtype=torch.bool)
        self.seeded = torch.zeros(0, dtype=torch.bool)
        self.kind = torch.zeros(0, dtype=torch.long)
        self.q = torch.zeros(0, dtype=torch.float64)
        self.roots = torch.zeros(0, 0, dtype=torch.float64)
        self.history: collections.deque[dict[str, float]] = collections.deque(maxlen=_HISTORY)
        self._last_proposed = 0
        self._per_dim = 0
        self._q_known = True

    # -- geometry --------------------------------------------------------------------------------
    @property
    def dim(self) -> int:
        assert self.bounds is not None
        return int(self.bounds.shape[0])

    def _spacing(self) -> Tensor:
        """Base grid spacing h_0 per axis."""
        assert self.bounds is not None
        return (self.bounds[:, 1] - self.bounds[:, 0]) / (self._per_dim - 1)

    def _keys(self, pts: Tensor) -> Tensor:
        """Integer keys of points quantised at ``dedup_tolerance`` (for deduplication)."""
        assert self.bounds is not None
        return torch.round((pts - self.bounds[:, 0]) / self.config.dedup_tolerance).long()

    def _inside(self, pts: Tensor) -> Tensor:
        assert self.bounds is not None
        return ((pts >= self.bounds[:, 0]) & (pts <= self.bounds[:, 1])).all(dim=1)

    def _append(self, pts: Tensor, q: Tensor, level: Tensor, kind: int) -> None:
        n = len(pts)
        self.points = torch.cat([self.points, pts])
        self.q = torch.cat([self.q, q.double().reshape(-1)])
        self.level = torch.cat([self.level, level])
        self.refined = torch.cat([self.refined, torch.full((n,), kind == ROOT)])
        self.seeded = torch.cat([self.seeded, torch.full((n,), kind == ROOT)])
        self.kind = torch.cat([self.kind, torch.full((n,), kind, dtype=torch.long)])

    def _initial_grid(self) -> Tensor:
        d = self.dim
        per_dim = max(2, math.floor(self.config.initial_grid_size ** (1.0 / d) + 1e-9))
        if per_dim**d > self.config.max_grid_points:
            raise ValueError(f"an initial grid of {per_dim}^{d} points exceeds max_grid_points="
                             f"{self.config.max_grid_points}; raise the cap")
        self._per_dim = per_dim
        self.points = torch.zeros(0, d, dtype=torch.float64)
        self.roots = torch.zeros(0, d, dtype=torch.float64)
        return tensor_grid(self.bounds, per_dim)

    # -- roots -------------------------------------------------------------------------------------
    def _new_roots(self, q_fn: QFunction) -> tuple[Tensor, Tensor]:
        """(roots, unit normals) of Q not known yet, at most ``max_roots_per_round``."""
        cfg = self.config
        grid = self.kind == GRID
        if self.dim == 1:
            order = torch.nonzero(grid).flatten()
            order = order[torch.argsort(self.points[order, 0])]
            x, q = self.points[order, 0], self.q[order]
            s = torch.sign(q)
            change = (s[:-1] * s[1:]) < 0
            brackets = bisect_roots(q_fn, x[:-1][change], x[1:][change], cfg.bisection_steps)
            roots = torch.cat([brackets, x[s == 0]])[:, None]
            normals = torch.ones_like(roots)
        else:
            cand = torch.nonzero(grid & ~self.seeded & (self.q.abs() < cfg.refinement_threshold))
            cand = cand.flatten()
            cand = cand[torch.argsort(self.q[cand].abs())][: cfg.max_roots_per_round]
            self.seeded[cand] = True
            roots, normals, ok = newton_project(q_fn, self.points[cand], self.bounds,
                                                cfg.newton_steps, 0.1 * cfg.near_root_min_distance)
            roots, normals = roots[ok], normals[ok]
        keep = far_from(roots, self.roots, cfg.root_merge_distance)
        return roots[keep][: cfg.max_roots_per_round], normals[keep][: cfg.max_roots_per_round]

    def _root_ladders(self, roots: Tensor, normals: Tensor, budget: int) -> tuple[Tensor, int]:
        """Log-spaced points on both sides of each root within ``budget``; returns (points, n_roots)."""
        cfg = self.config
        if len(roots) == 0 or cfg.near_root_points == 0:
            return torch.zeros(0, self.dim, dtype=torch.float64), 0
        dist = torch.logspace(math.log10(cfg.near_root_min_distance),
                              math.log10(cfg.near_root_max_distance),
                              cfg.near_root_points, dtype=torch.float64)
        steps = torch.cat([-dist.flip(0), dist])
        pts = roots[:, None, :] + steps[None, :, None] * normals[:, None, :]
        flat = pts.reshape(-1, self.dim)
        ok = self._inside(flat) & first_new(self._keys(self.points), self._keys(flat))
        take, complete = take_within(ok.reshape(len(roots), -1), budget)
        self.roots = torch.cat([self.roots, roots[complete]])
        return flat[take.reshape(-1)], int(complete.sum())

    # -- refinement --------------------------------------------------------------------------------
    def _candidates(self) -> Tensor:
        """Indices of grid points to refine, smallest |Q| first."""
        cfg = self.config
        flag = self.q.abs() < cfg.refinement_threshold
        if self.dim == 1:
            order = torch.nonzero(self.kind == GRID).flatten()
            order = order[torch.argsort(self.points[order, 0])]
            s = torch.sign(self.q[order])
            change = (s[:-1] * s[1:]) <= 0
            flag[order[:-1][change]] = True
            flag[order[1:][change]] = True
        ok = flag & (self.kind == GRID) & ~self.refined & (self.level < cfg.max_refinement_level)
        idx = torch.nonzero(ok).flatten()
        return idx[torch.argsort(self.q[idx].abs(), stable=True)]

    def _refine(self, budget: int) -> tuple[Tensor, Tensor, int, int]:
        """Children of refinable points within ``budget``: (points, levels, n_candidates, n_refined)."""
        r = self.config.refinement_ratio
        parents = self._candidates()
        if len(parents) == 0 or budget <= 0:
            return (torch.zeros(0, self.dim, dtype=torch.float64),
                    torch.zeros(0, dtype=torch.long), len(parents), 0)
        ks = torch.arange(-(r - 1), r, dtype=torch.float64)
        offsets = torch.cartesian_prod(*[ks] * self.dim).reshape(-1, self.dim)
        offsets = offsets[(offsets != 0).any(dim=1)]
        h = self._spacing()[None, :] / float(r) ** (self.level[parents].double()[:, None] + 1)
        kids = self.points[parents][:, None, :] + offsets[None, :, :] * h[:, None, :]
        kids = torch.minimum(torch.maximum(kids, self.bounds[:, 0]), self.bounds[:, 1])
        flat = kids.reshape(-1, self.dim)
        new = first_new(self._keys(self.points), self._keys(flat)).reshape(len(parents), -1)
        take, complete = take_within(new, budget)
        self.refined[parents[complete]] = True
        take = take.reshape(-1)
        levels = (self.level[parents] + 1)[:, None].expand(-1, len(offsets)).reshape(-1)
        return flat[take], levels[take], len(parents), int(complete.sum())

    # -- protocol ----------------------------------------------------------------------------------
    def use_q_fn(self, q_fn: QFunction) -> None:
        self.q_fn = q_fn

    def propose(self, problem: Problem, pool: Pool, round_idx: int) -> Tensor | None:
        """New points ``[m, d]`` to label this round (None when not an adapt round)."""
        if self.bounds is None:
            self.bounds = problem.bounds.detach().to(torch.float64).cpu()
        first = len(self.points) == 0
        if not first and round_idx % self.config.adapt_frequency != 0:
            self._last_proposed = 0
            return None
        q_fn = self.q_fn or problem.q
        start = len(self.points)
        if first:
            grid = self._initial_grid()
            q = q_fn(grid)
            self._q_known = q is not None
            if q is None:
                log.warning("active sampler: Q is unknown for this problem; proposing only "
                            "the initial grid")
                q = torch.full((len(grid),), math.nan, dtype=torch.float64)
            self._append(grid, q, torch.zeros(len(grid), dtype=torch.long), GRID)
        record = {"round": float(round_idx), "new_roots": 0.0, "root_points": 0.0,
                  "candidates": 0.0, "refined": 0.0, "children": 0.0}
        if self._q_known:
            budget = min(self.config.points_per_round,
                         self.config.max_grid_points - len(self.points))
            roots, normals = self._new_roots(q_fn)
            ladder, n_roots = self._root_ladders(roots, normals, budget)
            if len(ladder):
                self._append(ladder, q_fn(ladder), torch.zeros(len(ladder), dtype=torch.long),
                             ROOT)
            kids, levels, n_cand, n_ref = self._refine(budget - len(ladder))
            if len(kids):
                self._append(kids, q_fn(kids), levels, GRID)
            record.update(new_roots=float(n_roots), root_points=float(len(ladder)),
                          candidates=float(n_cand), refined=float(n_ref),
                          children=float(len(kids)))
        record["total_points"] = float(len(self.points))
        self.history.append(record)
        new = self.points[start:]
        self._last_proposed = len(new)
        return new.to(problem.bounds.dtype)

    def select(
        self,
        n_pool: int,
        batch_size: int,
        *,
        values: Tensor | None = None,
        prior: Tensor | None = None,
        device: torch.device | None = None,
    ) -> Selection:
        """Uniform over the pool, with an ``importance_mix`` share by 1/|Q|² if configured."""
        q = values
        dev = resolve_device(device, q)
        gen = self.generator(dev)
        mix = self.config.importance_mix
        u = None
        if mix > 0:
            if q is None:
                raise ValueError("ActiveSampler with importance_mix > 0 needs the pool's |Q| as values")
            u = importance_weights(q.to(dev), self._importance)
        draw = mixture_draw(n_pool, batch_size, 1.0 - mix, gen, dev, u=u, prior=prior)
        weights = correction_weights(draw.ratio, self._importance)
        return Selection(draw.idx, weights, effective_sample_size(weights))

    def metrics(self, draws: DrawCounts) -> dict[str, float]:
        q = self.q.abs()
        finite = q[torch.isfinite(q)]
        thr = self.config.refinement_threshold
        return {
            "sampler/active/points": float(len(self.points)),
            "sampler/active/refined": float(self.refined[self.kind == GRID].sum()),
            "sampler/active/roots": float(len(self.roots)),
            "sampler/active/max_level": float(self.level.max()) if len(self.level) else 0.0,
            "sampler/active/proposed": float(self._last_proposed),
            "sampler/active/near_points": float((finite < thr).sum()),
            "sampler/active/q_min": float(finite.min()) if len(finite) else math.nan,
            "sampler/active/q_mean_abs": float(finite.mean()) if len(finite) else math.nan,
        }

    def state_dict(self) -> dict[str, Any]:
        return {
            **generator_state(self._generator),
            "bounds": None if self.bounds is None else self.bounds.clone(),
            "points": self.points.clone(), "level": self.level.clone(),
            "refined": self.refined.clone(), "seeded": self.seeded.clone(),
            "kind": self.kind.clone(), "q": self.q.clone(), "roots": self.roots.clone(),
            "history": [dict(h) for h in self.history],
            "last_proposed": self._last_proposed, "per_dim": self._per_dim,
            "q_known": self._q_known,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._generator = restore_generator(state)
        self.bounds = None if state["bounds"] is None else state["bounds"].clone()
        for name in ("points", "level", "refined", "seeded", "kind", "q", "roots"):
            setattr(self, name, state[name].clone())
        self.history = collections.deque((dict(h) for h in state["history"]), maxlen=_HISTORY)
        self._last_proposed = int(state["last_proposed"])
        self._per_dim = int(state["per_dim"])
        self._q_known = bool(state["q_known"])
