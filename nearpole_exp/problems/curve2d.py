"""curve2d: y = 1/Q(x) + smooth on a 2D box, whose poles form a curve {Q = 0}.

Two curves: an ellipse Q = ((x1−c1)/a)² + ((x2−c2)/b)² − 1 and a sine graph
Q = x2 − h − A·sin(ω·x1 + φ). The distance to the pole curve is the exact Euclidean one
(up to float64 round-off): a coarse search over the curve's parameter t followed by
safeguarded Newton steps on ½‖γ(t) − x‖², so buckets B0…B4 are true distance decades.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass

import torch
from torch import Tensor

from nearpole_exp.errors import check
from nearpole_exp.problems.base import ModelQ, Predictor
from nearpole_exp.problems.poles import LabelNoise, PoleProblem

SHAPES = ("ellipse", "sine")
_CHUNK = 2048
_NEWTON_STEPS = 8


@dataclass
class Curve2DConfig(LabelNoise):
    """The pole curve (``shape`` and its parameters), the smooth part and the box.

    ``smooth`` = (c1, c2, c3) adds c1·x1 + c2·x2 + c3·x1·x2. ``ple_grid`` is the side of the
    grid on which the model's zero set of Q is traced for ``eval/ple``.
    """

    shape: str = "ellipse"
    low: tuple[float, ...] = (-1.0, -1.0)
    high: tuple[float, ...] = (1.0, 1.0)
    center: tuple[float, ...] = (0.1, -0.05)
    axes: tuple[float, ...] = (0.6, 0.35)
    amplitude: float = 0.4
    frequency: float = 3.0
    phase: float = 0.0
    offset: float = 0.0
    smooth: tuple[float, ...] = (0.5, -0.3, 0.2)
    n_eval: int = 2000
    ple_grid: int = 257

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("low", "high", "center", "axes", "smooth"):
            setattr(self, name, tuple(float(v) for v in getattr(self, name)))
        check(self.shape in SHAPES, "shape", f"must be one of {SHAPES}, got {self.shape!r}")
        check(len(self.low) == 2 and len(self.high) == 2, "low", "low and high need 2 entries")
        for name in ("low", "high"):
            check(all(math.isfinite(v) for v in getattr(self, name)), name,
                  f"must be finite numbers (the box is sampled uniformly), got {getattr(self, name)}")
        above = all(h > lo for lo, h in zip(self.low, self.high, strict=True))
        check(above, "high", "must exceed low in every dimension")
        check(len(self.smooth) == 3, "smooth", "must be (c1, c2, c3) of x1, x2, x1·x2")
        check(self.n_eval >= 10, "n_eval", f"must be at least 10, got {self.n_eval}")
        check(self.ple_grid >= 16, "ple_grid", f"must be at least 16, got {self.ple_grid}")
        if self.shape == "ellipse":
            check(len(self.center) == 2, "center", "needs 2 entries")
            check(len(self.axes) == 2 and min(self.axes) > 0, "axes", "needs 2 positive entries")
            inside = all(self.low[k] < self.center[k] - self.axes[k]
                         and self.center[k] + self.axes[k] < self.high[k] for k in range(2))
            check(inside, "axes", "the ellipse must lie strictly inside the box")
        else:
            check(self.frequency > 0, "frequency", "must be positive")
            check(self.amplitude > 0, "amplitude", "must be positive")
            inside = self.low[1] < self.offset - self.amplitude < self.offset + self.amplitude
            check(inside and self.offset + self.amplitude < self.high[1], "amplitude",
                  "the sine curve must lie strictly inside the box in x2")


class _Ellipse:
    """γ(t) = c + (a cos t, b sin t), t ∈ [0, 2π)."""

    def __init__(self, center: tuple[float, ...], axes: tuple[float, ...]) -> None:
        self.c1, self.c2 = center
        self.a, self.b = axes

    def q(self, x: Tensor) -> Tensor:
        return ((x[:, 0] - self.c1) / self.a) ** 2 + ((x[:, 1] - self.c2) / self.b) ** 2 - 1.0

    def grad_q(self, x: Tensor) -> Tensor:
        return torch.stack([2 * (x[:, 0] - self.c1) / self.a**2,
                            2 * (x[:, 1] - self.c2) / self.b**2], dim=1)

    def gamma(self, t: Tensor, order: int = 0) -> Tensor:
        """γ and its derivatives (``order`` 0, 1, 2) at parameters ``t``."""
        cos, sin = torch.cos(t), torch.sin(t)
        if order == 0:
            return torch.stack([self.c1 + self.a * cos, self.c2 + self.b * sin], dim=1)
        if order == 1:
            return torch.stack([-self.a * sin, self.b * cos], dim=1)
        return torch.stack([-self.a * cos, -self.b * sin], dim=1)

    def search_params(self, x: Tensor) -> Tensor:
        return torch.linspace(0, 2 * math.pi, 513, dtype=x.dtype, device=x.device)[:-1]

    def params_in_box(self, m: int, low: tuple[float, ...], high: tuple[float, ...]) -> Tensor:
        return 2 * math.pi * (torch.arange(m, dtype=torch.float64) + 0.5) / m


class _Sine:
    """γ(t) = (t, h + A sin(ω t + φ)), t ∈ ℝ."""

    def __init__(self, amplitude: float, frequency: float, phase: float, offset: float) -> None:
        self.amp, self.freq, self.phase, self.offset = amplitude, frequency, phase, offset

    def q(self, x: Tensor) -> Tensor:
        return x[:, 1] - self.offset - self.amp * torch.sin(self.freq * x[:, 0] + self.phase)

    def grad_q(self, x: Tensor) -> Tensor:
        d1 = -self.amp * self.freq * torch.cos(self.freq * x[:, 0] + self.phase)
        return torch.stack([d1, torch.ones_like(d1)], dim=1)

    def gamma(self, t: Tensor, order: int = 0) -> Tensor:
        arg = self.freq * t + self.phase
        w = self.amp * self.freq**order
        if order == 0:
            return torch.stack([t, self.offset + self.amp * torch.sin(arg)], dim=1)
        if order == 1:
            return torch.stack([torch.ones_like(t), w * torch.cos(arg)], dim=1)
        return torch.stack([torch.zeros_like(t), -w * torch.sin(arg)], dim=1)

    def search_params(self, x: Tensor) -> Tensor:
        """Parameters covering every possible nearest point of ``x``: the vertical distance
        |x2 − γ2(x1)| bounds the distance, so the foot lies within that of x1."""
        reach = float((x[:, 1] - self.offset).abs().max()) + self.amp
        lo, hi = float(x[:, 0].min()) - reach, float(x[:, 0].max()) + reach
        speed = math.sqrt(1.0 + (self.amp * self.freq) ** 2)
        n = max(int((hi - lo) * speed / 0.005), 16)
        return torch.linspace(lo, hi, n, dtype=x.dtype, device=x.device)

    def params_in_box(self, m: int, low: tuple[float, ...], high: tuple[float, ...]) -> Tensor:
        return low[0] + (high[0] - low[0]) * (torch.arange(m, dtype=torch.float64) + 0.5) / m


def symmetric_chamfer(found_to_true: Tensor, true_to_found: Tensor, cap: float) -> float:
    """½(mean found→true + mean true→found), each capped at ``cap``; ``cap`` if either is empty."""
    if len(found_to_true) == 0 or len(true_to_found) == 0:
        return float(cap)
    return 0.5 * (min(float(found_to_true.mean()), cap) + min(float(true_to_found.mean()), cap))


def point_segment_distance(points: Tensor, segments: Tensor) -> Tensor:
    """Distance of each point ``[p, 2]`` to the nearest of the segments ``[s, 2, 2]``."""
    a, b = segments[:, 0], segments[:, 1]
    ab = b - a
    len2 = (ab * ab).sum(dim=1).clamp_min(1e-300)
    rows = max(1, 4_000_000 // max(len(segments), 1))
    out = []
    for chunk in points.split(rows):
        ap = chunk[:, None, :] - a[None]
        t = ((ap * ab[None]).sum(-1) / len2).clamp(0.0, 1.0)
        diff = ap - t[..., None] * ab[None]
        out.append(diff.norm(dim=-1).min(dim=1).values)
    return torch.cat(out)


def zero_set(values: Tensor, g1: Tensor, g2: Tensor) -> tuple[Tensor, Tensor]:
    """Crossing points ``[f, 2]`` and segments ``[s, 2, 2]`` of {v = 0} (marching squares).

    ``values[i, j]`` is sampled at (g1[i], g2[j]). A crossing lies on each grid edge whose
    ends differ in sign (zero counts as positive), placed by linear interpolation; each cell
    joins its crossings in cyclic edge order (saddles get two segments).
    """
    x1, x2 = torch.meshgrid(g1, g2, indexing="ij")
    pts = torch.stack([x1, x2], dim=-1)
    pos = values >= 0

    def edges(va: Tensor, vb: Tensor, pa: Tensor, pb: Tensor,
              sa: Tensor, sb: Tensor) -> tuple[Tensor, Tensor]:
        mask = sa != sb
        w = torch.where(mask, va / torch.where(mask, va - vb, torch.ones_like(va)), 0.0)
        return mask, pa + w[..., None] * (pb - pa)

    m0, p0 = edges(values[:-1], values[1:], pts[:-1], pts[1:], pos[:-1], pos[1:])
    m1, p1 = edges(values[:, :-1], values[:, 1:], pts[:, :-1], pts[:, 1:], pos[:, :-1], pos[:, 1:])
    found = torch.cat([p0[m0], p1[m1]])
    cell_mask = torch.stack([m0[:, :-1], m1[1:, :], m0[:, 1:], m1[:-1, :]], dim=2).reshape(-1, 4)
    active = cell_mask.any(dim=1)
    cell_mask = cell_mask[active]
    sides = (p0[:, :-1], p1[1:, :], p0[:, 1:], p1[:-1, :])
    cell_pts = torch.stack([side.reshape(-1, 2)[active] for side in sides], dim=1)
    count = cell_mask.sum(dim=1)
    order = torch.argsort((~cell_mask).to(torch.int8), dim=1, stable=True)
    ordered = torch.gather(cell_pts, 1, order[..., None].expand(-1, -1, 2))
    segs = [ordered[count >= 2][:, 0:2], ordered[count == 4][:, 2:4]]
    return found, torch.cat(segs)


class Curve2D(PoleProblem):
    """A pole curve in 2D; distance = exact Euclidean distance to the curve."""

    config_class = Curve2DConfig  # the schema of its config group option (config.py)

    name = "curve2d"

    def __init__(self, config: Curve2DConfig | None = None, **overrides: object) -> None:
        self.config = dataclasses.replace(config or Curve2DConfig(), **overrides)
        cfg = self.config
        super().__init__(list(cfg.low), list(cfg.high), cfg.n_eval)
        self.label_noise, self.noise_seed = float(cfg.label_noise), int(cfg.noise_seed)
        if cfg.shape == "ellipse":
            self.curve: _Ellipse | _Sine = _Ellipse(cfg.center, cfg.axes)
        else:
            self.curve = _Sine(cfg.amplitude, cfg.frequency, cfg.phase, cfg.offset)

    @property
    def diameter(self) -> float:
        """Length of the box diagonal, the cap of ``eval/ple``."""
        return float((self.bounds[:, 1] - self.bounds[:, 0]).double().norm())

    def target(self, x: Tensor) -> Tensor:
        x64 = x.double()
        c1, c2, c3 = self.config.smooth
        smooth = c1 * x64[:, 0] + c2 * x64[:, 1] + c3 * x64[:, 0] * x64[:, 1]
        return (1.0 / self.curve.q(x64) + smooth)[:, None].to(x.dtype)

    def q(self, inputs: Tensor) -> Tensor:
        return self.curve.q(inputs.double()).to(inputs.dtype)

    def foot_params(self, x64: Tensor) -> Tensor:
        """Curve parameter t of the nearest curve point to each row of ``x64`` (float64)."""
        out = []
        for chunk in x64.split(_CHUNK):
            grid = self.curve.search_params(chunk)
            step = float(grid[1] - grid[0])
            t0 = grid[torch.cdist(chunk, self.curve.gamma(grid)).argmin(dim=1)]
            best_d2 = (self.curve.gamma(t0) - chunk).square().sum(dim=1)
            t = t0
            for _ in range(_NEWTON_STEPS):
                r = self.curve.gamma(t) - chunk
                g1, g2 = self.curve.gamma(t, 1), self.curve.gamma(t, 2)
                speed2 = (g1 * g1).sum(dim=1)
                curv = speed2 + (r * g2).sum(dim=1)
                hess = torch.where(curv > 0.1 * speed2, curv, speed2)
                t = t - ((r * g1).sum(dim=1) / hess).clamp(-step, step)
            refined = (self.curve.gamma(t) - chunk).square().sum(dim=1)
            out.append(torch.where(refined <= best_d2, t, t0))
        return torch.cat(out) if out else torch.empty(0, dtype=x64.dtype, device=x64.device)

    def distance(self, inputs: Tensor) -> Tensor:
        x64 = inputs.double()
        foot = self.curve.gamma(self.foot_params(x64))
        return (x64 - foot).norm(dim=1).to(inputs.dtype)

    def curve_points(self, m: int) -> tuple[Tensor, Tensor]:
        """``m`` points on the curve inside the box and their unit normals ∇Q/‖∇Q‖ (float64)."""
        cfg = self.config
        on = self.curve.gamma(self.curve.params_in_box(m, cfg.low, cfg.high))
        grad = self.curve.grad_q(on)
        return on, grad / grad.norm(dim=1, keepdim=True)

    def near_pole_points(self, n: int) -> Tensor:
        """2n points at log-spaced distances along the normal of the curve, one per side each.

        Offsets 10^decades are paired with curve positions by a fixed random permutation, so
        that every bucket B0…B3 spans the whole curve; points leaving the box are dropped.
        """
        gen = torch.Generator().manual_seed(2024)
        on, normal = self.curve_points(n)
        offsets = torch.logspace(*self.decades, n, dtype=torch.float64)
        sides = []
        for side in (1.0, -1.0):
            perm = torch.randperm(n, generator=gen)
            sides.append(on[perm] + side * offsets[:, None] * normal[perm])
        pts = torch.cat(sides)
        b = self.bounds.double()
        inside = ((pts > b[:, 0]) & (pts < b[:, 1])).all(dim=1)
        return pts[inside].float()

    def evaluate(self, predict: Predictor, model_q: ModelQ | None = None) -> dict[str, float]:
        """Base metrics plus ``eval/ple`` for models exposing ``q_values`` (else no ple: a
        plain predictor has no zero set, and ridges of |ŷ| are not a reliable substitute)."""
        out = super().evaluate(predict, model_q)
        if model_q is not None:
            out["eval/ple"] = self.pole_curve_error(model_q)
        return out

    def pole_curve_error(self, q_values: Predictor) -> float:
        """Symmetric Chamfer distance between the model's {Q = 0} and the true curve.

        The model's zero set is traced by marching squares on a ``ple_grid``² grid over the
        box. found→true: exact distances of its crossing points to the true curve.
        true→found: distance of 2000 true curve points to the nearest traced segment.
        Capped at the box diagonal, which is also the value when no zero set is found.
        """
        b = self.bounds.double()
        n = self.config.ple_grid
        g1 = torch.linspace(float(b[0, 0]), float(b[0, 1]), n, dtype=torch.float64)
        g2 = torch.linspace(float(b[1, 0]), float(b[1, 1]), n, dtype=torch.float64)
        pts = torch.stack(torch.meshgrid(g1, g2, indexing="ij"), dim=-1).reshape(-1, 2)
        with torch.no_grad():
            values = q_values(pts.float()).reshape(n, n).double().cpu()
        found, segments = zero_set(values, g1, g2)
        if len(found) == 0 or len(segments) == 0:
            return self.diameter
        true_pts, _ = self.curve_points(2000)
        return symmetric_chamfer(self.distance(found), point_segment_distance(true_pts, segments),
                                 self.diameter)

    def plots(self, predict: Predictor, outdir: str) -> list[str]:
        """Heat maps of log10|y| (truth, model) and log10|error|, with the true pole curve."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        b = self.bounds
        n = 201
        g1 = torch.linspace(float(b[0, 0]), float(b[0, 1]), n)
        g2 = torch.linspace(float(b[1, 0]), float(b[1, 1]), n)
        pts = torch.stack(torch.meshgrid(g1, g2, indexing="ij"), dim=-1).reshape(-1, 2)
        truth = self.target(pts)[:, 0].double()
        with torch.no_grad():
            pred = predict(pts).reshape(len(pts), -1)[:, 0].cpu().double()
        panels = {"truth log10|y|": truth.abs(), "model log10|ŷ|": pred.abs(),
                  "log10|ŷ − y|": (pred - truth).abs()}
        curve, _ = self.curve_points(1000)
        extent = (float(b[0, 0]), float(b[0, 1]), float(b[1, 0]), float(b[1, 1]))
        fig, axes = plt.subplots(1, 3, figsize=(14, 4.2))
        for ax, (title, mag) in zip(axes, panels.items(), strict=True):
            img = torch.log10(mag.clamp_min(1e-12)).reshape(n, n).T
            im = ax.imshow(img.numpy(), origin="lower", extent=extent, aspect="auto",
                           cmap="viridis")
            ax.plot(curve[:, 0].numpy(), curve[:, 1].numpy(), "w.", ms=0.6)
            ax.set_title(title)
            fig.colorbar(im, ax=ax)
        fig.tight_layout()
        path = os.path.join(outdir, "curve2d_heatmap.png")
        fig.savefig(path, dpi=90)
        plt.close(fig)
        return [path]
