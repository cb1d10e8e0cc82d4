"""landscape_multi: the analytic landscape with several separated hard regions of different
sizes and difficulty, where a local, parent-driven search tends to collapse onto one of them.

Region r is an axis-aligned box over the m active dimensions with volume fraction v_r, centre
c_r, amplitude A_r and frequency ω_r; its envelope g_r(λ) is a product of logistic edges
σ((λ_i − lo_i)/τ)·σ((hi_i − λ_i)/τ), an edge on the unit box's boundary left out (the corner
region of :mod:`landscape` is the case lo = 1 − v^(1/m), hi = 1). The target is

    f(λ, t) = 2 + ½ cos(π·mean(λ)) cos(πt) + Σ_r A_r·g_r(λ)·sin(ω_r·Σ_{i<m} λ_i + 2πt),

the difficulty is Σ_r A_r g_r(λ), and the ideal tilted density p* ∝ difficulty, with its
normaliser and per-region masses from exact one-dimensional integrals of the edge products.
Defaults: a 3 % corner (A 1, ω 20), a 1.5 % interior box (A 0.7, ω 30) and a 0.6 % box near a
face (A 0.5, ω 40).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import torch
from torch import Tensor

from nearpole_exp.errors import check
from nearpole_exp.problems.base import IdealPlacement
from nearpole_exp.problems.landscape import Landscape, LandscapeConfig

QUAD_POINTS = 200_001


@dataclass
class MultiRegionLandscapeConfig(LandscapeConfig):
    """Regions of :class:`MultiRegionLandscape`: one entry per region in each list.

    ``centers`` holds each region's centre over the active axes; a shorter row is repeated
    cyclically (so a 2-vector serves any number of active dimensions).
    """

    volumes: list[float] = field(default_factory=lambda: [0.03, 0.015, 0.006])
    centers: list[list[float]] = field(default_factory=lambda: [[1.0], [0.3, 0.65], [0.7, 0.12]])
    amplitudes: list[float] = field(default_factory=lambda: [1.0, 0.7, 0.5])
    frequencies: list[float] = field(default_factory=lambda: [20.0, 30.0, 40.0])

    def __post_init__(self) -> None:
        super().__post_init__()
        n = len(self.volumes)
        check(n >= 1, "volumes", "needs at least one region")
        for key in ("centers", "amplitudes", "frequencies"):
            check(len(getattr(self, key)) == n, key,
                  f"needs one entry per region ({n}), got {len(getattr(self, key))}")
        check(all(0 < v < 1 for v in self.volumes), "volumes", "each must lie in (0, 1)")
        check(all(0 <= a <= 1 for a in self.amplitudes), "amplitudes",
              "each must lie in [0, 1] (regions are apart, so f ≥ 0.5 stays away from 0)")
        check(all(len(c) >= 1 for c in self.centers), "centers", "each needs at least one value")


class MultiRegionLandscape(Landscape):
    """Analytic target on [0, 1]^d with several hard boxes of known volume and ideal mass."""

    config_class = MultiRegionLandscapeConfig  # the schema of its config group option (config.py)

    name = "landscape_multi"
    config: MultiRegionLandscapeConfig

    def __init__(self, config: MultiRegionLandscapeConfig | None = None,
                 **overrides: object) -> None:
        super().__init__(dataclasses.replace(config or MultiRegionLandscapeConfig(), **overrides))
        cfg = self.config
        m = self.active
        lows, highs = [], []
        for r, volume in enumerate(cfg.volumes):
            side = volume ** (1.0 / m)
            centre = torch.tensor([cfg.centers[r][i % len(cfg.centers[r])] for i in range(m)],
                                  dtype=torch.float64)
            lo = (centre - side / 2).clamp(0.0, 1.0 - side)
            lows.append(lo)
            highs.append(lo + side)
        self.lows, self.highs = torch.stack(lows), torch.stack(highs)
        self._check_separated()
        self.amplitudes = torch.tensor(cfg.amplitudes, dtype=torch.float64)
        self.frequencies = torch.tensor(cfg.frequencies, dtype=torch.float64)
        self._masses = torch.stack([self._region_integral(r) for r in range(len(cfg.volumes))])

    def _check_separated(self) -> None:
        tau = self.config.edge_width
        for a in range(len(self.lows)):
            for b in range(a + 1, len(self.lows)):
                gap = torch.maximum(self.lows[a] - self.highs[b], self.lows[b] - self.highs[a])
                check(bool((gap > 5 * tau).any()), "centers",
                      f"regions {a} and {b} overlap or touch (keep them 5·edge_width apart)")

    def _edges(self, x: Tensor, r: int) -> Tensor:
        """Per-axis logistic edges of region r at points ``x`` ``[..., m]`` (float64)."""
        tau = self.config.edge_width
        lo, hi = self.lows[r], self.highs[r]
        inner_lo = (lo > 0).double()
        inner_hi = (hi < 1).double()
        up = torch.sigmoid((x - lo) / tau) ** inner_lo
        down = torch.sigmoid((hi - x) / tau) ** inner_hi
        return up * down

    def _region_integral(self, r: int) -> Tensor:
        """∫ g_r over the unit box (product of exact-enough 1D integrals of the edges)."""
        x = torch.linspace(0.0, 1.0, QUAD_POINTS, dtype=torch.float64)
        axis = self._edges(x[:, None].expand(-1, self.active), r)
        return torch.trapezoid(axis, x, dim=0).prod()

    @property
    def hard_fraction(self) -> float:
        return float(sum(self.config.volumes))

    def region_of(self, params: Tensor) -> Tensor:
        """Index of the hard region each point ``[..., d]`` lies in, −1 outside all, ``[...]``."""
        x = params[..., : self.active].double()
        out = torch.full(x.shape[:-1], -1, dtype=torch.long)
        for r in range(len(self.lows)):
            inside = ((x > self.lows[r]) & (x < self.highs[r])).all(dim=-1)
            out[inside] = r
        return out

    def hard_region_mask(self, params: Tensor) -> Tensor:
        return self.region_of(params) >= 0

    def region_difficulties(self, params: Tensor) -> Tensor:
        """A_r·g_r(λ) per region, ``[..., R]`` (float64)."""
        x = params[..., : self.active].double()
        return torch.stack([self.amplitudes[r] * self._edges(x, r).prod(dim=-1)
                            for r in range(len(self.lows))], dim=-1)

    def difficulty(self, params: Tensor) -> Tensor:
        return self.region_difficulties(params).sum(dim=-1).to(params.dtype)

    def ideal_density(self, params: Tensor) -> Tensor:
        z = float((self.amplitudes * self._masses).sum())
        return (self.region_difficulties(params).sum(dim=-1) / z).to(params.dtype)

    @property
    def ideal_region_masses(self) -> Tensor:
        """Probability that a draw from p* lands in each region, ``[R]`` (float64)."""
        weights = self.amplitudes * self._masses
        inside = []
        for r in range(len(self.lows)):
            axis_inside = self._edge_mass_inside(r)
            inside.append(self.amplitudes[r] * axis_inside)
        return torch.stack(inside) / weights.sum()

    def _edge_mass_inside(self, r: int) -> Tensor:
        """∫ over region r's own box of g_r."""
        parts = []
        for i in range(self.active):
            x = torch.linspace(float(self.lows[r, i]), float(self.highs[r, i]), QUAD_POINTS,
                               dtype=torch.float64)
            full = x[:, None].expand(-1, self.active).clone()
            parts.append(torch.trapezoid(self._edges(full, r)[:, i], x))
        return torch.stack(parts).prod()

    @property
    def ideal_hard_mass(self) -> float:
        return float(self.ideal_region_masses.sum())

    def ideal_placement(self) -> IdealPlacement:
        return IdealPlacement(density=self.ideal_density, lows=self.lows.clone(),
                              highs=self.highs.clone(), region_masses=self.ideal_region_masses,
                              dim=self.config.dim)

    def target(self, params: Tensor, phase: Tensor) -> Tensor:
        lam = params.double()
        t = phase.double()
        smooth = 2 + 0.5 * torch.cos(math.pi * lam.mean(dim=-1)) * torch.cos(math.pi * t)
        total = lam[..., : self.active].sum(dim=-1)
        waves = torch.sin(self.frequencies * total[..., None] + 2 * math.pi * t[..., None])
        return (smooth + (self.region_difficulties(lam) * waves).sum(dim=-1)).float()

    def extra_metrics(self, params: Tensor, per_point: Tensor) -> dict[str, float]:
        """Hard/easy means as in :class:`Landscape`, and the mean nRMSE in each region."""
        out = super().extra_metrics(params, per_point)
        region = self.region_of(params)
        for r in range(len(self.lows)):
            inside = per_point[region == r]
            out[f"eval/region_error/{r}"] = float(inside.mean()) if len(inside) else float("nan")
        return out
