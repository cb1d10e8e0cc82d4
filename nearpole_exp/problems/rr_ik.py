"""rr_ik: differential inverse kinematics of a planar 2-link (RR) arm, ZeroProofML's benchmark.

Inputs (θ1, θ2, dx, dy), target dθ with J(θ)·dθ = (dx, dy). Q = det J = l1·l2·sin θ2 vanishes on
the singular lines θ2 ∈ {0, ±π}; the bucket variable is |det J| (ZeroProofML's convention,
edges metrics.BUCKET_EDGES). Two label modes:

- ``exact``: dθ = J⁻¹·d, a true pole (|dθ| ~ |d|/|det J|); the metrics measure pole fidelity.
- ``dls``: damped least squares dθ = Jᵀ(JJᵀ + λ²I)⁻¹·d (λ = 0.01, ZeroProofML's recipe). The
  target is bounded (|dθ| ≤ |d|/(2λ)) and smooth across the lines, so near-singular metrics
  measure the fit to a damped target, not pole fidelity; ``eval/ple`` is omitted.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass

import torch
from torch import Tensor

from nearpole_exp import metrics
from nearpole_exp.errors import check
from nearpole_exp.problems.base import ModelQ, Predictor, ProblemCapabilities
from nearpole_exp.problems.curve2d import symmetric_chamfer
from nearpole_exp.problems.poles import PoleProblem

LABELS = ("exact", "dls")
EVAL_BULK = ("zeroproof", "zeroproof_generator", "uniform")
_PLE_MARGIN = 0.1


@dataclass
class RRIKConfig:
    """Arm, label mode and the ZeroProofML dataset recipe.

    ``d_max`` bounds dx, dy in the box (3σ of ZeroProofML's N(0, 0.1²) displacements, drawn
    from a normal truncated to the box). ``singular_threshold`` and ``singular_share`` define
    the recipe (see :meth:`RRIK.zeroproof_dataset`); ``eval_bulk`` picks the bulk of the
    held-out set (``eval/mse``): the recipe, ZeroProofML's generator as it is
    (``zeroproof_generator``: the test distribution its paper's per-bucket MSEs were measured on,
    :meth:`RRIK.zeroproof_generator_dataset`) or uniform.
    """

    labels: str = "dls"
    damping: float = 0.01
    l1: float = 1.0
    l2: float = 1.0
    d_max: float = 0.3
    d_std: float = 0.1
    singular_threshold: float = 1e-3
    singular_share: float = 0.35
    eval_bulk: str = "zeroproof"
    n_eval: int = 2000
    initial_design: str = "zeroproof"

    def __post_init__(self) -> None:
        check(self.labels in LABELS, "labels", f"must be one of {LABELS}, got {self.labels!r}")
        check(self.damping > 0, "damping", f"must be positive, got {self.damping}")
        check(self.l1 > 0, "l1", f"must be positive, got {self.l1}")
        check(self.l2 > 0, "l2", f"must be positive, got {self.l2}")
        check(self.d_max > 0, "d_max", f"must be positive, got {self.d_max}")
        check(self.d_std > 0, "d_std", f"must be positive, got {self.d_std}")
        check(0 < self.singular_threshold < self.l1 * self.l2 / 2, "singular_threshold",
              f"must lie in (0, l1·l2/2), got {self.singular_threshold}")
        check(0.0 <= self.singular_share <= 1.0, "singular_share",
              f"must lie in [0, 1], got {self.singular_share}")
        check(self.eval_bulk in EVAL_BULK, "eval_bulk",
              f"must be one of {EVAL_BULK}, got {self.eval_bulk!r}")
        check(self.n_eval >= 10, "n_eval", f"must be at least 10, got {self.n_eval}")
        check(self.initial_design in ("zeroproof", "breeder"), "initial_design",
              f"must be 'zeroproof' (the recipe) or 'breeder', got {self.initial_design!r}")


def truncated_normal(n: int, std: float, bound: float, generator: torch.Generator | None,
                     dtype: torch.dtype = torch.float64) -> Tensor:
    """``n`` draws of N(0, std²) conditioned on |z| < bound (inverse CDF, no rejection loop)."""
    edge = math.erf(bound / (std * math.sqrt(2.0)))
    u = (2 * torch.rand(n, generator=generator, dtype=dtype) - 1) * edge
    return std * math.sqrt(2.0) * torch.erfinv(u)


class RRIK(PoleProblem):
    """2-link planar arm inverse kinematics; Q = det J, distance = |det J|."""

    config_class = RRIKConfig  # the schema of its config group option (config.py)

    name = "rr_ik"

    def __init__(self, config: RRIKConfig | None = None, **overrides: object) -> None:
        self.config = dataclasses.replace(config or RRIKConfig(), **overrides)
        cfg = self.config
        self.capabilities = ProblemCapabilities(knows_poles=True,
                                                labels_have_poles=cfg.labels == "exact")
        pi = math.pi
        super().__init__([-pi, -pi, -cfg.d_max, -cfg.d_max], [pi, pi, cfg.d_max, cfg.d_max],
                         cfg.n_eval)

    @property
    def scale(self) -> float:
        """l1·l2, the largest |det J|."""
        return self.config.l1 * self.config.l2

    def jacobian(self, theta: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Entries (j11, j12, j21, j22) of J at rows (θ1, θ2, …) of ``theta`` (any dtype)."""
        l1, l2 = self.config.l1, self.config.l2
        t1, t12 = theta[:, 0], theta[:, 0] + theta[:, 1]
        return (-l1 * torch.sin(t1) - l2 * torch.sin(t12), -l2 * torch.sin(t12),
                l1 * torch.cos(t1) + l2 * torch.cos(t12), l2 * torch.cos(t12))

    def target(self, x: Tensor) -> Tensor:
        x64 = x.double()
        j11, j12, j21, j22 = self.jacobian(x64)
        dx, dy = x64[:, 2], x64[:, 3]
        if self.config.labels == "exact":
            det = self.scale * torch.sin(x64[:, 1])
            dtheta = torch.stack([j22 * dx - j12 * dy, -j21 * dx + j11 * dy], dim=1) / det[:, None]
            return dtheta.to(x.dtype)
        lam2 = self.config.damping**2
        a, b, c = j11 * j11 + j12 * j12, j11 * j21 + j12 * j22, j21 * j21 + j22 * j22
        det_a = (self.scale * torch.sin(x64[:, 1])) ** 2 + lam2 * (a + c) + lam2 * lam2
        u1 = ((c + lam2) * dx - b * dy) / det_a
        u2 = (-b * dx + (a + lam2) * dy) / det_a
        return torch.stack([j11 * u1 + j21 * u2, j12 * u1 + j22 * u2], dim=1).to(x.dtype)

    def q(self, inputs: Tensor) -> Tensor:
        return (self.scale * torch.sin(inputs[:, 1].double())).to(inputs.dtype)

    def distance(self, inputs: Tensor) -> Tensor:
        return self.q(inputs).abs()

    def _displacements(self, n: int, generator: torch.Generator | None) -> Tensor:
        cfg = self.config
        return torch.stack([truncated_normal(n, cfg.d_std, cfg.d_max, generator)
                            for _ in range(2)], dim=1)

    def _angles(self, n: int, generator: torch.Generator | None) -> Tensor:
        return (2 * torch.rand(n, generator=generator, dtype=torch.float64) - 1) * math.pi

    def initial_design(self, n: int, generator: torch.Generator | None = None) -> Tensor | None:
        """Round 0's points: ZeroProofML's recipe when ``initial_design == "zeroproof"``."""
        if self.config.initial_design != "zeroproof":
            return None
        return self.zeroproof_dataset(n, generator=generator)

    def zeroproof_dataset(self, n: int = 20000, singular_share: float | None = None,
                          generator: torch.Generator | None = None) -> Tensor:
        """ZeroProofML's RR-IK sampling recipe: points ``[n, 4]`` (float32) for an initial pool.

        round(n·share) *singular* rows: θ2 = s + δ with s ∈ {0, π} equally likely and
        δ ~ N(0, thr²) truncated so that |det J| < thr (thr = ``singular_threshold``). The
        other rows are *regular*: θ2 uniform on {|det J| ≥ 2·thr}. θ1 ~ U[−π, π];
        dx, dy ~ N(0, d_std²) truncated to the box. Then every bucket B0…B4 that is empty
        gets one row (replacing a row of the same kind from the fullest bucket), and rows are
        shuffled. Deviations from ZeroProofML, on purpose: its untruncated δ puts about a third
        of its "singular" rows above thr, and its clipping to [−π, π] puts about half of the
        π-side rows exactly on θ2 = π; here θ2 wraps instead and the singular share is exactly
        the share with |det J| < thr.
        """
        cfg = self.config
        share = cfg.singular_share if singular_share is None else singular_share
        check(0.0 <= share <= 1.0, "singular_share", f"must lie in [0, 1], got {share}")
        check(n >= 1, "n", f"must be positive, got {n}")
        thr = cfg.singular_threshold
        n_sing = round(n * share)
        delta_max = math.asin(thr / self.scale)
        delta = truncated_normal(n_sing, thr, delta_max, generator)
        side = math.pi * (torch.rand(n_sing, generator=generator) < 0.5).double()
        sing = torch.remainder(side + delta + math.pi, 2 * math.pi) - math.pi
        alpha = math.asin(2 * thr / self.scale)
        half = math.pi - 2 * alpha
        p = torch.rand(n - n_sing, generator=generator, dtype=torch.float64) * 2 * half
        regular = torch.where(p < half, -math.pi + alpha + p, alpha + p - half)
        theta2 = torch.cat([sing, regular])
        singular = torch.arange(n) < n_sing
        theta2 = self._fill_buckets(theta2, singular, alpha)
        pts = torch.stack([self._angles(n, generator), theta2], dim=1)
        pts = torch.cat([pts, self._displacements(n, generator)], dim=1)
        return pts[torch.randperm(n, generator=generator)].float()

    def zeroproof_generator_dataset(self, n: int = 20000, generator: torch.Generator | None = None,
                                    min_detj: float = 1e-6, attempts: int = 100) -> Tensor:
        """Points drawn as ZeroProofML's own RR-IK generator draws them (its recipe: share
        0.35, threshold 1e-3, ``min_detj`` 1e-6, displacements N(0, 0.1²)), clipping and all:
        θ2 ~ N(0 or π, thr²) clipped to [−π, π], so that about half of the π-side singular rows
        sit exactly on θ2 = π (|det J| ≈ 1e-16, bucket B0: ~9 % of the rows); one row exactly on
        each singular line; regular rows uniform, redrawn up to ``attempts`` times while
        |det J| < 2·thr or < ``min_detj``; displacements not truncated. Their paper's per-bucket
        MSEs were measured on a stratified 20 % of such a set, so this is the bulk to compare
        them with (``eval_bulk="zeroproof_generator"``)."""
        cfg = self.config
        thr, pi = cfg.singular_threshold, math.pi
        n_sing = int(n * cfg.singular_share)
        theta1 = self._angles(n, generator)
        near_pi = torch.rand(n_sing, generator=generator) >= 0.5
        sing = (pi * near_pi.double() + thr * torch.randn(n_sing, generator=generator,
                                                          dtype=torch.float64)).clamp(-pi, pi)
        if n_sing >= 2:
            sing[0], sing[1] = 0.0, pi
        tries = self._angles((n - n_sing) * attempts, generator).reshape(n - n_sing, attempts)
        det = self.scale * torch.sin(tries).abs()
        ok = (det >= 2 * thr) & (det >= min_detj)
        ok[:, -1] = True  # the last try is kept whatever it is
        regular = tries.gather(1, ok.double().argmax(dim=1, keepdim=True))[:, 0]
        theta2 = torch.cat([sing, regular])
        d = cfg.d_std * torch.randn(n, 2, generator=generator, dtype=torch.float64)
        return torch.cat([torch.stack([theta1, theta2], dim=1), d], dim=1).float()

    def _fill_buckets(self, theta2: Tensor, singular: Tensor, alpha: float) -> Tensor:
        """Give each empty bucket one row of the kind (singular or regular) that can reach it."""
        thr = self.config.singular_threshold
        det = self.scale * torch.sin(theta2).abs()
        buckets = metrics.bucket_index(det)
        edges = metrics.BUCKET_EDGES
        theta2 = theta2.clone()
        for k in range(len(edges) - 1):
            if bool((buckets == k).any()):
                continue
            lo, hi = edges[k], min(edges[k + 1], self.scale)
            kind, lo, hi = ((singular, lo, min(hi, 0.999 * thr)) if lo < thr
                            else (~singular, max(lo, self.scale * math.sin(alpha)), hi))
            counts = torch.bincount(buckets[kind], minlength=len(edges) - 1)
            if hi <= lo or int(counts.sum()) == 0:
                continue
            donor = torch.nonzero(kind & (buckets == int(counts.argmax()))).flatten()[0]
            value = math.sqrt(max(lo, hi * 1e-2) * hi)
            theta2[donor] = math.asin(value / self.scale)
            buckets[donor] = k
        return theta2

    def near_pole_points(self, n: int) -> Tensor:
        """4n points with |det J| log-spaced over ``decades`` on both sides of θ2 = 0 and ±π.

        θ1 is uniform and dx, dy follow the recipe's truncated normal (fixed seed), so the
        per-bucket MSE is comparable with ZeroProofML's.
        """
        gen = torch.Generator().manual_seed(2024)
        lo, hi = self.decades
        det = torch.logspace(lo, hi, n, dtype=torch.float64).clamp_max(self.scale)
        delta = torch.asin(det / self.scale)
        theta2 = torch.cat([delta, -delta, math.pi - delta, -math.pi + delta])
        m = len(theta2)
        pts = torch.stack([self._angles(m, gen), theta2], dim=1)
        return torch.cat([pts, self._displacements(m, gen)], dim=1).float()

    def eval_set(self) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Bulk (the recipe or uniform, per ``eval_bulk``) plus near-singular points, built once."""
        if self._eval is None:
            gen = torch.Generator().manual_seed(12345)
            if self.config.eval_bulk == "zeroproof":
                bulk = self.zeroproof_dataset(self.n_eval, generator=gen)
            elif self.config.eval_bulk == "zeroproof_generator":
                bulk = self.zeroproof_generator_dataset(self.n_eval, generator=gen)
            else:
                bulk = self.uniform(self.n_eval, gen)
            near = self.near_pole_points(max(self.n_eval // 10, 10))
            x = torch.cat([bulk, near])
            is_bulk = torch.cat([torch.ones(len(bulk)), torch.zeros(len(near))]).bool()
            y = self.target(x.double())
            keep = torch.isfinite(y).all(dim=1)
            self._eval = (x[keep], y[keep], self.distance(x[keep]), is_bulk[keep])
        return self._eval

    def evaluate(self, predict: Predictor, model_q: ModelQ | None = None) -> dict[str, float]:
        """Base metrics (``eval/mse`` on the bulk, per-bucket relerr/MSE/count on |det J|) plus
        ``eval/ple`` for exact labels and a model with ``q_values``.

        With the recipe bulk (``eval_bulk="zeroproof"``) also ``eval/recipe_mse/B*`` and
        ``eval/recipe_count/B*``: per-bucket MSE on the recipe's test distribution alone (the
        base buckets add log-spaced near-singular points), ZeroProofML's protocol.
        """
        out = super().evaluate(predict, model_q)
        if self.config.eval_bulk != "uniform":
            x, y, dist, bulk = self.eval_set()
            with torch.no_grad():
                pred = predict(x[bulk]).reshape(y[bulk].shape).cpu().double()
            stats = metrics.bucket_metrics(pred, y[bulk].double(), dist[bulk])
            for k in range(len(metrics.BUCKET_EDGES) - 1):
                out[f"eval/recipe_mse/B{k}"] = stats[f"eval/bucket_mse/B{k}"]
                out[f"eval/recipe_count/B{k}"] = stats[f"eval/bucket_count/B{k}"]
        if model_q is not None and self.config.labels == "exact":
            out["eval/ple"] = self.singular_set_error(model_q)
        return out

    def singular_set_error(self, q_values: Predictor) -> float:
        """Mean over 16 lines (4 θ1 × 4 displacements) of the symmetric Chamfer distance along
        θ2 between the model's Q roots and the true singular set {−π, 0, π}, capped at 2π.

        Roots come from sign changes on a grid over [−π − 0.1, π + 0.1], so a root on ±π is
        seen from both sides.
        """
        d = self.config.d_std
        theta1 = torch.linspace(-math.pi, math.pi, 5)[:-1] + 0.3
        disp = torch.tensor([[d, 0.0], [0.0, -d], [0.7 * d, 0.7 * d], [-0.4 * d, 0.9 * d]])
        grid = torch.linspace(-math.pi - _PLE_MARGIN, math.pi + _PLE_MARGIN, 4001)
        lines = torch.cartesian_prod(torch.arange(4), torch.arange(4))
        rows = torch.cat([theta1[lines[:, 0], None].expand(-1, len(grid))[..., None],
                          grid.expand(len(lines), -1)[..., None],
                          disp[lines[:, 1], None, :].expand(-1, len(grid), -1)], dim=2)
        with torch.no_grad():
            values = q_values(rows.reshape(-1, 4)).reshape(len(lines), len(grid)).cpu().double()
        true = torch.tensor([-math.pi, 0.0, math.pi], dtype=torch.float64)
        errors = []
        for v in values:
            roots = metrics.roots_on_grid(grid.double(), v)
            gap = (roots[:, None] - true[None]).abs()
            errors.append(symmetric_chamfer(gap.min(dim=1).values if len(roots) else roots,
                                            gap.min(dim=0).values if len(roots) else roots,
                                            2 * math.pi))
        return float(sum(errors) / len(errors))

    def plots(self, predict: Predictor, outdir: str) -> list[str]:
        """Relative error vs |det J| (scatter) and per-bucket MSE / median relative error."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        x, y, dist, _ = self.eval_set()
        with torch.no_grad():
            pred = predict(x).reshape(y.shape).cpu().double()
        rel = metrics.relative_error(pred, y.double())
        stats = metrics.bucket_metrics(pred, y.double(), dist.double())
        names = [f"B{k}" for k in range(len(metrics.BUCKET_EDGES) - 1)]
        fig, ax = plt.subplots(1, 2, figsize=(11, 4))
        ax[0].scatter(dist.clamp_min(1e-9).numpy(), rel.clamp_min(1e-12).numpy(), s=3, alpha=0.4)
        ax[0].set(xscale="log", yscale="log", xlabel="|det J|", ylabel="relative error",
                  title=f"rr_ik ({self.config.labels} labels)")
        for edge in metrics.BUCKET_EDGES[1:-1]:
            ax[0].axvline(edge, color="grey", lw=0.5)
        pos = torch.arange(len(names)).numpy()
        ax[1].bar(pos - 0.2, [stats[f"eval/bucket_mse/{b}"] for b in names], 0.4, label="MSE")
        ax[1].bar(pos + 0.2, [stats[f"eval/relerr_median/{b}"] for b in names], 0.4,
                  label="median rel. error")
        ax[1].set(xticks=pos, xticklabels=names, yscale="log", title="per bucket")
        ax[1].legend()
        fig.tight_layout()
        path = os.path.join(outdir, "rr_ik_error_vs_detj.png")
        fig.savefig(path, dpi=90)
        plt.close(fig)
        return [path]
