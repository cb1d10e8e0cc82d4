"""landscape: a cheap analytic stand-in for a simulator, hard only in a small corner of [0, 1]^d.

Each point λ ∈ [0, 1]^d yields S samples, one per phase t_s = s/S (s = 0…S−1): the input is
(λ, t_s) and the scalar target is

    f(λ, t) = 2 + ½ cos(π·mean(λ)) cos(πt) + A·g(λ)·sin(ω·Σ_{i<m} λ_i + 2πt),

with the corner envelope g(λ) = Π_{i<m} σ((λ_i − x0)/τ), σ the logistic function, m active
dimensions (``active_dims``; 0 means all d), x0 = 1 − a and a = ``hard_fraction``^(1/m). The
first two terms are smooth and easy; the oscillation (frequency ω) lives where g ≈ 1, so a
surrogate's error concentrates there. f ∈ [2 − ½ − A, 2 + ½ + A] stays away from 0, so the
per-point nRMSE (see :mod:`simulator`) is well-conditioned everywhere.

Known quantities (all analytic):

* hard region H = {λ : λ_i > x0 for every i < m}; its volume fraction is exactly
  ``hard_fraction`` (= a^m).
* difficulty(λ) = g(λ) ∈ (0, 1): the envelope of the part a smooth fit misses, highest in H.
* ideal tilted density p*(λ) = g(λ)/Z, sampling in proportion to the difficulty, with
  Z = Π_{i<m} τ·[softplus((1 − x0)/τ) − softplus(−x0/τ)] (∫₀¹ σ((x − x0)/τ)dx per axis).
  Its mass in H is Π_{i<m} [softplus((1 − x0)/τ) − softplus(0)] / [softplus((1 − x0)/τ) −
  softplus(−x0/τ)] (``ideal_hard_mass``), versus ``hard_fraction`` for uniform sampling.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from nearpole_exp.errors import check
from nearpole_exp.problems.base import IdealPlacement, Predictor
from nearpole_exp.problems.simulator import TrajectoryConfig, TrajectoryProblem


@dataclass
class LandscapeConfig(TrajectoryConfig):
    """Dimension, hard-corner geometry and target frequency of :class:`Landscape`."""

    MAX_DIM: ClassVar[int] = 20

    dim: int = 2
    active_dims: int = 2
    hard_fraction: float = 0.05
    edge_width: float = 0.01
    frequency: float = 20.0
    amplitude: float = 1.0
    samples_per_point: int = 8
    n_eval: int = 1024

    def __post_init__(self) -> None:
        super().__post_init__()
        check(1 <= self.dim <= self.MAX_DIM, "dim", f"must lie in 1…{self.MAX_DIM}, got {self.dim}")
        check(0 <= self.active_dims <= self.dim, "active_dims",
              f"must lie in 0…dim ({self.dim}), got {self.active_dims}")
        check(0 < self.hard_fraction < 1, "hard_fraction",
              f"must lie in (0, 1), got {self.hard_fraction}")
        check(self.edge_width > 0, "edge_width", f"must be positive, got {self.edge_width}")
        check(self.frequency >= 0, "frequency", f"must be non-negative, got {self.frequency}")
        check(0 <= self.amplitude <= 1, "amplitude", f"must lie in [0, 1], got {self.amplitude}")
        check(self.samples_per_point >= 1, "samples_per_point",
              f"must be positive, got {self.samples_per_point}")


class Landscape(TrajectoryProblem):
    """Analytic target on [0, 1]^d whose difficulty sits in a corner of known volume."""

    config_class = LandscapeConfig  # the schema of its config group option (config.py)

    name = "landscape"
    config: LandscapeConfig

    def __init__(self, config: LandscapeConfig | None = None, **overrides: object) -> None:
        super().__init__(dataclasses.replace(config or LandscapeConfig(), **overrides))
        cfg = self.config
        self.active = cfg.active_dims or cfg.dim
        self.side = cfg.hard_fraction ** (1.0 / self.active)
        self.corner = 1.0 - self.side
        self._bounds = torch.tensor([[0.0, 1.0]] * cfg.dim)
        s = cfg.samples_per_point
        self.phases = torch.arange(s, dtype=torch.float32) / s

    @property
    def bounds(self) -> Tensor:
        return self._bounds

    @property
    def hard_fraction(self) -> float:
        """Volume fraction of the hard region H (exact)."""
        return self.side**self.active

    def _axis_integrals(self) -> tuple[float, float]:
        """(∫₀¹ σ((x − x0)/τ) dx, ∫_{x0}^1 σ((x − x0)/τ) dx) for one active axis."""
        tau = self.config.edge_width
        sp = F.softplus
        hi = sp(torch.tensor((1 - self.corner) / tau, dtype=torch.float64))
        whole = tau * float(hi - sp(torch.tensor(-self.corner / tau, dtype=torch.float64)))
        inside = tau * float(hi - math.log(2.0))
        return whole, inside

    @property
    def ideal_hard_mass(self) -> float:
        """Probability that a draw from the ideal density p* lands in H."""
        whole, inside = self._axis_integrals()
        return (inside / whole) ** self.active

    def difficulty(self, params: Tensor) -> Tensor:
        """The corner envelope g(λ) ∈ (0, 1) of points ``[..., d]``, shape ``[...]``."""
        z = (params[..., : self.active].double() - self.corner) / self.config.edge_width
        return torch.sigmoid(z).prod(dim=-1).to(params.dtype)

    def hard_region_mask(self, params: Tensor) -> Tensor:
        """True where λ (``[..., d]``) lies in the hard corner H, shape ``[...]``."""
        return (params[..., : self.active] > self.corner).all(dim=-1)

    def ideal_density(self, params: Tensor) -> Tensor:
        """The ideal tilted sampling density p*(λ) = g(λ)/Z on the unit box, ``[n]``."""
        whole, _ = self._axis_integrals()
        return self.difficulty(params) / whole**self.active

    def ideal_placement(self) -> IdealPlacement:
        """p* and the hard corner [x0, 1]^m with its ideal mass (the box is the unit cube)."""
        m = self.active
        return IdealPlacement(density=self.ideal_density,
                              lows=torch.full((1, m), self.corner, dtype=torch.float64),
                              highs=torch.ones(1, m, dtype=torch.float64),
                              region_masses=torch.tensor([self.ideal_hard_mass], dtype=torch.float64),
                              dim=self.config.dim)

    def target(self, params: Tensor, phase: Tensor) -> Tensor:
        """f(λ, t) for points ``[..., d]`` and phases broadcastable to ``[...]`` (float32)."""
        cfg = self.config
        lam = params.double()
        t = phase.double()
        smooth = 2 + 0.5 * torch.cos(math.pi * lam.mean(dim=-1)) * torch.cos(math.pi * t)
        wave = torch.sin(cfg.frequency * lam[..., : self.active].sum(dim=-1) + 2 * math.pi * t)
        return (smooth + cfg.amplitude * self.difficulty(lam) * wave).float()

    def pairs(self, params: Tensor) -> tuple[Tensor, Tensor]:
        params = params.detach().cpu().float()
        n, s = len(params), len(self.phases)
        inputs = torch.cat([params[:, None, :].expand(n, s, params.shape[1]),
                            self.phases[None, :, None].expand(n, s, 1)], dim=2)
        return inputs, self.target(params[:, None, :], self.phases[None, :])[:, :, None]

    def model_dims(self) -> dict[str, Any]:
        return {"in_features": self.config.dim + 1, "out_features": 1,
                "input_bounds": [*self.bounds.tolist(), [0.0, 1.0]]}

    def extra_metrics(self, params: Tensor, per_point: Tensor) -> dict[str, float]:
        """Mean nRMSE inside and outside the hard region of the held-out set."""
        hard = self.hard_region_mask(params)
        inside = per_point[hard].mean() if hard.any() else torch.tensor(float("nan"))
        outside = per_point[~hard].mean() if (~hard).any() else torch.tensor(float("nan"))
        return {"eval/hard_region_error": float(inside), "eval/easy_region_error": float(outside)}

    def plots(self, predict: Predictor, outdir: str) -> list[str]:
        """Per-point nRMSE of ``predict`` over (λ_0, λ_1), other active axes at the corner's
        centre and inactive axes at ½, next to the difficulty map."""
        if self.config.dim < 2:
            return []
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        side = 64
        axis = (torch.arange(side, dtype=torch.float32) + 0.5) / side
        params = torch.full((side * side, self.config.dim), 0.5)
        params[:, 2 : self.active] = 1.0 - self.side / 2
        params[:, 0] = axis.repeat_interleave(side)
        params[:, 1] = axis.repeat(side)
        inputs, targets = self.pairs(params)
        n, s = inputs.shape[:2]
        flat_targets = targets.reshape(n * s, 1)
        pred = self.predict_flat(predict, inputs.reshape(n * s, -1), flat_targets.shape)
        err = self.per_sample_signal(pred, flat_targets.double()).reshape(n, s).mean(dim=1)
        fig, axes = plt.subplots(1, 2, figsize=(9, 4))
        maps = (("difficulty g(λ)", self.difficulty(params)), ("model nRMSE", err))
        for ax, (title, values) in zip(axes, maps, strict=True):
            shown = ax.imshow(values.reshape(side, side).T.numpy(), origin="lower",
                              extent=(0, 1, 0, 1), cmap="viridis")
            fig.colorbar(shown, ax=ax)
            ax.set_title(title)
            ax.set_xlabel("λ_0")
            ax.set_ylabel("λ_1")
        fig.tight_layout()
        path = os.path.join(outdir, f"{self.name}_error_map.png")
        fig.savefig(path, dpi=80)
        plt.close(fig)
        return [path]
