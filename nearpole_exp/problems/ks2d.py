"""ks2d: the Kuramoto–Sivashinsky equation u_t + Δu + Δ²u + ½|∇u|² = 0 on the periodic square
[0, L)², mean-free.

Parameters λ = (L, c_1…c_k): the side and the amplitudes of a 2-D Fourier initial condition
(``ic_terms``; d = 1 + k). Wave vectors with |k| < 1 grow, so a small square settles and a large
one is chaotic (the hard region). The ½|∇u|² term feeds the mean, which only drifts; its k = 0
part is dropped, so the field stays mean-free (the usual choice for the 2-D equation). Each
simulation runs with spacing L/N ≤ 0.55 and dt ≤ 0.05, the 1-D equation's rule
(``problems/resolution.py``): its scales are the same along each axis.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch
from torch import Tensor

from nearpole_exp.errors import check
from nearpole_exp.problems import resolution
from nearpole_exp.problems.resolution import Requirement
from nearpole_exp.problems.simulator2d import (
    Simulator2DConfig,
    Simulator2DProblem,
    gradient_squared,
    side_points,
)


@dataclass
class KS2DConfig(Simulator2DConfig):
    """Side lengths, initial-condition amplitudes and grids of the 2-D KS problem."""

    length_low: float = 8.0
    length_high: float = 24.0

    def __post_init__(self) -> None:
        super().__post_init__()
        check(self.length_low > 0, "length_low", f"must be positive, got {self.length_low}")
        check(math.isfinite(self.length_high), "length_high",
              f"must be finite, got {self.length_high}")
        check(self.length_high > self.length_low, "length_high",
              f"must exceed length_low ({self.length_low}), got {self.length_high}")
        self.check_resolution()

    def hardest_key(self) -> str:
        return "length_high"

    def box_requirement(self) -> Requirement:
        return ks2d_requirement(torch.tensor([self.length_high]))


def ks2d_requirement(length: Tensor) -> Requirement:
    """Spacing ≤ ``KS_DX`` per axis and dt ≤ ``KS_DT`` (the 1-D rule, axis by axis)."""
    return Requirement(points=side_points(length, resolution.KS_DX),
                       dt=torch.full(length.shape, resolution.KS_DT, dtype=torch.float64))


class KuramotoSivashinsky2D(Simulator2DProblem):
    """Batched pseudo-spectral 2-D KS solver (ETDRK4, 2/3 dealiasing, float64, resolved per row)."""

    config_class = KS2DConfig  # the schema of its config group option (config.py)

    name = "ks2d"
    config: KS2DConfig

    def __init__(self, config: KS2DConfig | None = None, **overrides: object) -> None:
        super().__init__(dataclasses.replace(config or KS2DConfig(), **overrides))
        cfg = self.config
        self._bounds = torch.cat([torch.tensor([[cfg.length_low, cfg.length_high]]),
                                  cfg.ic_bounds().float()])

    @property
    def bounds(self) -> Tensor:
        return self._bounds

    def domain_length(self, params: Tensor) -> Tensor:
        return params[:, 0].double()

    def linear_operator(self, kx: Tensor, ky: Tensor, params: Tensor) -> Tensor:
        k2 = kx * kx + ky * ky
        return k2 - k2 * k2

    def nonlinear(self, v: Tensor, kx: Tensor, ky: Tensor, params: Tensor) -> Tensor:
        n_grid = v.shape[-2]
        out = torch.fft.rfft2(-0.5 * gradient_squared(v, kx, ky, n_grid))
        out[..., 0, 0] = 0  # mean-free: the mean's drift is dropped
        return out

    def requirement(self, params: Tensor) -> Requirement:
        return ks2d_requirement(self.domain_length(params))
