"""gray_scott2d: the Gray–Scott reaction–diffusion system on the periodic square [0, L)²,

    u_t = D_u Δu − u v² + F (1 − u),        v_t = D_v Δv + u v² − (F + κ) v,

two species (u feeds v). Parameters λ = (F, c_1…c_k): the feed rate, whose range crosses
Pearson's (1993) pattern regimes at κ = ``kill`` (decay to the uniform state u = 1, v = 0 at high
F; spots and stripes below), and the amplitudes of a 2-D Fourier perturbation of v around
``v_mean`` (u = 1 − v at t = 0), ``ic_terms`` of them (d = 1 + k). Diffusion is exact in ETDRK4
and the reaction explicit. Resolution: the smallest pattern scale is the v-diffusion length
ℓ = √(D_v/(F + κ)); each simulation runs with spacing ≤ ℓ/``GS_POINTS_PER_LENGTH`` and
dt ≤ ``GS_DT``/(1 + F + κ) (calibrated against a finer solve: tests/test_simulators_2d.py).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch
from torch import Tensor

from nearpole_exp.errors import check
from nearpole_exp.problems import spectral2d
from nearpole_exp.problems.resolution import Requirement
from nearpole_exp.problems.simulator2d import Simulator2DConfig, Simulator2DProblem

GS_POINTS_PER_LENGTH = 2.0
GS_DT = 1.0


@dataclass
class GrayScott2DConfig(Simulator2DConfig):
    """Feed range, kill rate, diffusivities, side and initial condition of Gray–Scott."""

    feed_low: float = 0.02
    feed_high: float = 0.06
    kill: float = 0.06
    diff_u: float = 2e-5
    diff_v: float = 1e-5
    length: float = 0.25
    v_mean: float = 0.25
    dt_save: float = 10.0
    amp_low: float = -0.2
    amp_high: float = 0.2

    def __post_init__(self) -> None:
        super().__post_init__()
        check(self.feed_low > 0, "feed_low", f"must be positive, got {self.feed_low}")
        check(math.isfinite(self.feed_high) and self.feed_high > self.feed_low, "feed_high",
              f"must be finite and exceed feed_low ({self.feed_low}), got {self.feed_high}")
        for key in ("kill", "diff_u", "diff_v", "length"):
            value = getattr(self, key)
            check(math.isfinite(value) and value > 0, key, f"must be positive, got {value}")
        check(math.isfinite(self.v_mean), "v_mean", f"must be finite, got {self.v_mean}")
        self.check_resolution()

    def hardest_key(self) -> str:
        return "diff_v"

    def box_requirement(self) -> Requirement:
        return gray_scott_requirement(torch.tensor([self.feed_low, self.feed_high]), self)


def gray_scott_requirement(feed: Tensor, cfg: GrayScott2DConfig) -> Requirement:
    """Spacing ≤ ℓ/2 with ℓ = √(D_v/(F + κ)), dt ≤ 1/(1 + F + κ), per row."""
    rate = feed.double() + cfg.kill
    scale = torch.sqrt(cfg.diff_v / rate)
    return Requirement(points=torch.ceil(cfg.length * GS_POINTS_PER_LENGTH / scale),
                       dt=GS_DT / (1 + rate))


class GrayScott2D(Simulator2DProblem):
    """Batched pseudo-spectral Gray–Scott solver (ETDRK4, 2/3 dealiasing, float64)."""

    config_class = GrayScott2DConfig  # the schema of its config group option (config.py)

    name = "gray_scott2d"
    species = 2
    config: GrayScott2DConfig

    def __init__(self, config: GrayScott2DConfig | None = None, **overrides: object) -> None:
        super().__init__(dataclasses.replace(config or GrayScott2DConfig(), **overrides))
        cfg = self.config
        self._bounds = torch.cat([torch.tensor([[cfg.feed_low, cfg.feed_high]]),
                                  cfg.ic_bounds().float()])

    @property
    def bounds(self) -> Tensor:
        return self._bounds

    def domain_length(self, params: Tensor) -> Tensor:
        return torch.full((len(params),), self.config.length, dtype=torch.float64)

    def linear_operator(self, kx: Tensor, ky: Tensor, params: Tensor) -> Tensor:
        cfg = self.config
        k2 = (kx * kx + ky * ky).expand(len(params), 1, -1, -1)
        feed = params[:, 0].double().reshape(-1, 1, 1, 1)
        return torch.cat([-cfg.diff_u * k2 - feed, -cfg.diff_v * k2 - (feed + cfg.kill)], dim=1)

    def nonlinear(self, v: Tensor, kx: Tensor, ky: Tensor, params: Tensor) -> Tensor:
        n_grid = v.shape[-2]
        fields = torch.fft.irfft2(v, s=(n_grid, n_grid))
        react = fields[:, 0] * fields[:, 1] ** 2
        out = torch.fft.rfft2(torch.stack([-react, react], dim=1))
        feed = params[:, 0].double()
        out[:, 0, 0, 0] += feed * n_grid * n_grid  # the constant supply F·1
        return out

    def initial_condition(self, params: Tensor, n_grid: int) -> Tensor:
        k = self.config.ic_terms
        basis = spectral2d.fourier_basis2d(k, n_grid).reshape(k, -1)
        v0 = self.config.v_mean + (params[:, -k:].double() @ basis).reshape(-1, n_grid, n_grid)
        return torch.stack([1 - v0, v0], dim=1)

    def requirement(self, params: Tensor) -> Requirement:
        return gray_scott_requirement(params[:, 0], self.config)
