"""Base class for targets with poles: oracle, known Q, bucketed evaluation and PLE."""

from __future__ import annotations

import logging
import math
import os
from abc import abstractmethod
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from nearpole_exp import metrics
from nearpole_exp.config.schemas import check_fits_memory
from nearpole_exp.errors import ProblemError, check
from nearpole_exp.problems.base import ModelQ, Predictor, Problem, ProblemCapabilities, Samples

log = logging.getLogger(__name__)


_GOLDEN = 0x9E3779B97F4A7C15 - 2**64
_MIX1 = 0xBF58476D1CE4E5B9 - 2**64
_MIX2 = 0x94D049BB133111EB - 2**64


def _shift_right(z: Tensor, k: int) -> Tensor:
    """Logical right shift of int64 (torch's >> is arithmetic)."""
    return (z >> k) & ((1 << (64 - k)) - 1)


def _splitmix(z: Tensor) -> Tensor:
    """One splitmix64 step (int64 arithmetic wraps like uint64)."""
    z = z + _GOLDEN
    z = (z ^ _shift_right(z, 30)) * _MIX1
    z = (z ^ _shift_right(z, 27)) * _MIX2
    return z ^ _shift_right(z, 31)


def hashed_normal(x: Tensor, n_out: int, seed: int) -> Tensor:
    """Standard normals ``[n, n_out]`` that are a fixed pseudo-random function of the rows of
    ``x`` and ``seed`` (splitmix64 of the float64 bits, then Box–Muller).

    The same input always gets the same noise, so noisy labels stay reproducible across
    resumes, samplers and acquisition orders, and draw nothing from any global RNG.
    """
    bits = x.detach().cpu().double().reshape(len(x), -1).contiguous().view(torch.int64)
    h = torch.full((len(x),), int(seed), dtype=torch.int64)
    for j in range(bits.shape[1]):
        h = _splitmix(h ^ bits[:, j])
    cols = []
    for k in range(n_out):
        u1, u2 = ((_shift_right(_splitmix(h + 2 * k + s), 11).double() + 0.5) / 2.0**53
                  for s in (1, 2))
        cols.append(torch.sqrt(-2.0 * torch.log(u1)) * torch.cos(2.0 * torch.pi * u2))
    return torch.stack(cols, dim=1)


def refine_roots(q_fn: Predictor, roots: Tensor, spacing: float, dtype: torch.dtype,
                 steps: int = 60) -> Tensor:
    """Bisect each 1D root of ``q_fn`` inside [r − spacing, r + spacing] in ``dtype``.

    Grid roots come from linear interpolation, accurate to about spacing²·|Q''/Q'|; bisection
    brings them to the model's round-off so PLE can resolve poles far below the grid step.
    Roots without a sign change in their bracket (double roots) are returned unchanged.
    """
    if len(roots) == 0:
        return roots
    r = roots.to(dtype)
    lo, hi = r - spacing, r + spacing
    f_lo = torch.sign(q_fn(lo[:, None]).flatten())
    ok = f_lo * torch.sign(q_fn(hi[:, None]).flatten()) < 0
    for _ in range(steps):
        mid = 0.5 * (lo + hi)
        f_mid = torch.sign(q_fn(mid[:, None]).flatten())
        left = f_mid == f_lo
        lo, hi = torch.where(left, mid, lo), torch.where(left, hi, mid)
    return torch.where(ok, 0.5 * (lo + hi), r).double()


@dataclass
class LabelNoise:
    """Relative training-label noise σ (``label_noise``): targets y·(1 + σ·ε), ε ~ N(0, 1) a fixed
    function of x and ``noise_seed`` (evaluation stays exact). 0: exact float64 labels."""

    label_noise: float = 0.0
    noise_seed: int = 0

    def __post_init__(self) -> None:
        check(self.label_noise >= 0, "label_noise", f"must be >= 0, got {self.label_noise}")


def _symlog_decades(ax: Any, values: Tensor) -> None:
    """Symlog y (linear within ±1) with at most about seven labelled ticks: 0 and ±10^k for
    every ``step``-th decade up to the data's largest magnitude."""
    finite = values[torch.isfinite(values)]
    top = float(finite.abs().max()) if finite.numel() else 1.0
    decades = max(math.ceil(math.log10(max(top, 1.0))), 1)
    step = max(1, math.ceil(decades / 3))
    powers = [10.0**k for k in range(step, decades + 1, step)]
    ax.set_yscale("symlog", linthresh=1.0)
    ax.set_yticks([-p for p in reversed(powers)] + [0.0] + powers)


class PoleProblem(Problem):
    """A target y(x) = P(x)/Q(x) on a box, with a known denominator or distance to its poles.

    Subclasses give ``target``, ``q`` and ``distance``; 1D problems also give ``poles``.
    Evaluation uses a uniform grid plus log-spaced points around each pole, so every
    distance bucket B0…B4 is populated.
    """

    kind = "pole"
    # a damped target (e.g. RR-IK's DLS labels) declares labels_have_poles=False
    capabilities = ProblemCapabilities(knows_poles=True, labels_have_poles=True)
    label_noise: float = 0.0
    noise_seed: int = 0

    def __init__(self, low: float | list[float], high: float | list[float], n_eval: int = 2000,
                 decades: tuple[float, float] = (-7.0, -0.5)) -> None:
        low_t = torch.as_tensor(low, dtype=torch.float32).reshape(-1)
        high_t = torch.as_tensor(high, dtype=torch.float32).reshape(-1)
        if low_t.shape != high_t.shape:
            raise ValueError("problem bounds: low and high must have the same length")
        if not bool((high_t > low_t).all()):
            raise ValueError("problem bounds: high must exceed low in every dimension")
        if n_eval < 10:
            raise ValueError(f"problem.n_eval must be at least 10, got {n_eval}")
        check_fits_memory("n_eval", n_eval, 8 * (2 * len(low_t) + 2), "held-out points")
        self._bounds = torch.stack([low_t, high_t], dim=1)
        self.n_eval = n_eval
        self.decades = decades
        self._eval: tuple[Tensor, Tensor, Tensor, Tensor] | None = None

    @property
    def bounds(self) -> Tensor:
        return self._bounds

    @abstractmethod
    def target(self, x: Tensor) -> Tensor:
        """Exact target values ``[n, out]`` (inf or nan exactly on a pole)."""

    @abstractmethod
    def q(self, inputs: Tensor) -> Tensor:
        """The denominator Q at ``inputs`` (signed; zero on the poles)."""

    @abstractmethod
    def distance(self, inputs: Tensor) -> Tensor:
        """Distance of ``inputs`` to the nearest pole (the bucket variable)."""

    @property
    def out_features(self) -> int:
        return int(self.checked("target", self.bounds.mean(dim=1, keepdim=True).T).shape[1])

    def checked(self, method: str, x: Tensor) -> Tensor:
        """``target``, ``q`` or ``distance`` at ``x``, with a clear error when a (user's) problem
        returns another shape than ``[n, out]`` (target) or ``[n]`` (q, distance)."""
        value = getattr(self, method)(x)
        want = "[n, out]" if method == "target" else "[n]"
        ok = (isinstance(value, Tensor) and value.ndim == (2 if method == "target" else 1)
              and len(value) == len(x))
        if not ok:
            got = tuple(value.shape) if isinstance(value, Tensor) else type(value).__name__
            raise ProblemError(f"{type(self).__name__}.{method} returned {got} for {len(x)} inputs; "
                             f"expected a tensor {want} with n = {len(x)} (one row per input)")
        return value

    def poles(self) -> Tensor | None:
        """Known pole locations along the first axis (1D problems), for PLE and plots."""
        return None

    def model_dims(self) -> dict[str, Any]:
        return {"in_features": self.param_dim, "out_features": self.out_features,
                "input_bounds": self.bounds.tolist()}

    def label(self, points: Tensor) -> Samples:
        """Inputs as float32 (the breeders' precision) with float64 targets computed at exactly
        those inputs, so a float64 run trains on exact labels instead of float32-rounded ones
        (a relative label noise of ~3e-8 that bounds how well any sampler can place a pole).

        With ``label_noise`` = σ > 0 the targets are y·(1 + σ·ε), ε ~ N(0, 1) a fixed function
        of the input (:func:`hashed_normal`): relative measurement noise, as a simulator or
        sensor of finite precision gives. Evaluation targets stay exact.
        """
        x = points.float()
        y = self.checked("target", x.double())
        if self.label_noise > 0 and len(x):
            y = y * (1.0 + self.label_noise * hashed_normal(x, y.shape[1], self.noise_seed))
        q, dist = self.checked("q", x), self.checked("distance", x)
        self.warn_nonfinite("q", q, "those samples get weight 0 in |Q|-based samplers "
                            "(never drawn; uniform when no |Q| is finite)")
        self.warn_nonfinite("distance", dist, "the near-pole diagnostics leave them out")
        return Samples(inputs=x, targets=y, source=torch.arange(len(x)), q=q, distance=dist)

    def warn_nonfinite(self, method: str, values: Tensor, consequence: str) -> None:
        """Warn once per problem and method when ``method`` returned NaN/inf: a custom problem's
        bug that would otherwise pass silently."""
        bad = int((~torch.isfinite(values)).sum())
        warned = self.__dict__.setdefault("_nonfinite_warned", set())
        if bad and method not in warned:
            warned.add(method)
            log.warning("%s.%s returned NaN/inf at %d of %d points; %s",
                        type(self).__name__, method, bad, values.numel(), consequence)

    def near_pole_points(self, n: int) -> Tensor:
        """Points at log-spaced distances around each 1D pole, both sides, inside the box."""
        poles = self.poles()
        if poles is None or self.param_dim != 1:
            return torch.empty(0, self.param_dim)
        lo_dec, hi_dec = self.decades
        offsets = torch.logspace(lo_dec, hi_dec, n, dtype=torch.float64)
        pts = torch.cat([p + s * offsets for p in poles.double() for s in (-1.0, 1.0)])
        lo, hi = self.bounds[0].double()
        return pts[(pts > lo) & (pts < hi)].float()[:, None]

    def eval_set(self) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """(x, y, distance, is_uniform) of the held-out evaluation points, built once.

        x is float32; y is float64 at exactly those x, so relative errors are not floored at
        float32 rounding (~3e-8).
        """
        if self._eval is None:
            gen = torch.Generator().manual_seed(12345)
            uniform = self.uniform(self.n_eval, gen)
            near = self.near_pole_points(max(self.n_eval // 10, 10))
            x = torch.cat([uniform, near])
            is_uniform = torch.cat([torch.ones(len(uniform)), torch.zeros(len(near))]).bool()
            y = self.checked("target", x.double())
            keep = torch.isfinite(y).all(dim=1)
            dist = self.checked("distance", x[keep])
            if len(dist) and not bool(torch.isfinite(dist).any()):
                raise ProblemError(f"{type(self).__name__}.distance returned no finite value on the "
                                 f"{len(dist)} evaluation points: the near-pole buckets need the "
                                 "distance of each input to its nearest pole")
            self.warn_nonfinite("distance", dist, "they are left out of the distance buckets "
                                "(counted in eval/distance_nonfinite)")
            self._eval = (x[keep], y[keep], dist, is_uniform[keep])
        return self._eval

    def found_poles(self, predict: Predictor, model_q: ModelQ | None,
                    touch_tol: float = 1e-3) -> Tensor:
        """Pole locations of the fitted model in 1D: roots of its Q (bisected in the model's
        precision), else the k largest peaks of |ŷ| (k: the number of true poles)."""
        lo, hi = self.bounds[0].tolist()
        grid = torch.linspace(lo, hi, 20001)[:, None]
        with torch.no_grad():
            if model_q is not None:
                roots = metrics.roots_on_grid(grid[:, 0], model_q(grid).flatten(), touch_tol=touch_tol)
                return refine_roots(model_q, roots, float(grid[1, 0] - grid[0, 0]), model_q.dtype)
            mag = predict(grid).reshape(len(grid), -1).norm(dim=1).cpu()
        poles = self.poles()
        k = 0 if poles is None else len(poles)
        peak = (mag[1:-1] > mag[:-2]) & (mag[1:-1] >= mag[2:])
        idx = torch.nonzero(peak).flatten() + 1
        top = idx[torch.argsort(mag[idx], descending=True)[:k]]
        return grid[top, 0]

    def evaluate(self, predict: Predictor, model_q: ModelQ | None = None) -> dict[str, float]:
        x, y, dist, is_uniform = self.eval_set()
        with torch.no_grad():
            pred = predict(x).reshape(y.shape).cpu().double()
        y = y.double()
        out = {"eval/mse": float((pred[is_uniform] - y[is_uniform]).pow(2).mean())}
        out.update(metrics.bucket_metrics(pred, y, dist))
        out["eval/near_relerr_median"] = metrics.near_pole_relerr(pred, y, dist)
        poles = self.poles()
        if poles is not None and self.param_dim == 1:
            width = float(self.bounds[0, 1] - self.bounds[0, 0])
            found = self.found_poles(predict, model_q)
            out["eval/ple"] = metrics.pole_localisation_error(poles, found, width)
        return out

    def fit_verdict(self, metrics_: dict[str, float]) -> str | None:
        """Near-pole failure against the trivial predictors (see :func:`metrics.near_pole_failure`)."""
        relerr = metrics_.get("eval/near_relerr_median")
        if relerr is None:
            return None
        width = float(self.bounds[0, 1] - self.bounds[0, 0])
        return metrics.near_pole_failure(float(relerr), metrics_.get("eval/ple"), width)

    def plots(self, predict: Predictor, outdir: str) -> list[str]:
        """Fitted function vs the truth near each pole (1D problems): ±0.3 in x, and ±1e-3 as the
        offset x − pole; symlog y with a few decade ticks, so labels never run together."""
        poles = self.poles()
        if poles is None or self.param_dim != 1:
            return []
        from matplotlib.figure import Figure
        from matplotlib.ticker import MaxNLocator

        paths = []
        for i, pole in enumerate(poles.tolist()):
            fig = Figure(figsize=(10, 3.8), layout="constrained")
            ax = fig.subplots(1, 2)
            for j, radius in enumerate((0.3, 1e-3)):
                lo = max(pole - radius, float(self.bounds[0, 0]))
                hi = min(pole + radius, float(self.bounds[0, 1]))
                x = torch.linspace(lo, hi, 2001)[:, None]
                with torch.no_grad():
                    pred = predict(x).cpu()[:, 0].double()
                truth = self.target(x.double())[:, 0]
                shown = x[:, 0].double() - (pole if j else 0.0)
                ax[j].plot(shown, truth, "k-", lw=1, label="truth")
                ax[j].plot(shown, pred, "r--", lw=1, label="model")
                ax[j].axvline(0.0 if j else pole, color="grey", lw=0.5)
                _symlog_decades(ax[j], torch.cat([truth, pred]))
                ax[j].xaxis.set_major_locator(MaxNLocator(5))
                ax[j].set_ylabel("y (first output)")
                if j:
                    ax[j].ticklabel_format(axis="x", style="sci", scilimits=(0, 0))
                    ax[j].set_xlabel(f"x − {pole:.4g} (offset from the pole)")
                    ax[j].set_title(f"zoom: ±{radius:g} around the pole")
                else:
                    ax[j].set_xlabel("x")
                    ax[j].set_title(f"pole at x = {pole:.4g}, ±{radius:g}")
            ax[0].legend()
            fig.suptitle(f"{type(self).__name__}: fitted model vs truth near pole {i}")
            path = os.path.join(outdir, f"fit_pole{i}.png")
            fig.savefig(path, dpi=90)
            paths.append(path)
        return paths
