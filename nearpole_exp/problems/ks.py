"""ks1d: Kuramoto–Sivashinsky u_t + u u_x + u_xx + u_xxxx = 0 on the periodic domain [0, Lx).

Parameters λ = (Lx, c_1…c_k): the domain length and the amplitudes of a truncated Fourier
initial condition u_0 = Σ c_j φ_j(2πx/Lx) over φ = sin, cos, sin 2·, cos 2·, …. The grid has
a fixed number of points, so a longer domain is coarser. Short domains (few unstable modes,
k² − k⁴ > 0 for k = 2πj/Lx < 1) settle to steady cells; long domains are chaotic (the
intended hard region). On a fixed grid short domains are hard too for a local (CNN) surrogate,
because one saved step then spans many grid points. ``warmup`` integrates (unsaved) before
frame 0, so frames can start near the attractor.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
from torch import Tensor

from nearpole_exp.errors import check
from nearpole_exp.problems import spectral
from nearpole_exp.problems.simulator import SimulatorConfig, SimulatorProblem


@dataclass
class KSConfig(SimulatorConfig):
    """Domain lengths, initial-condition amplitudes, warm-up and grid of the KS problem."""

    length_low: float = 10.0
    length_high: float = 60.0
    dt_save: float = 1.0
    substeps: int = 10
    warmup: float = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        check(self.length_low > 0, "length_low", f"must be positive, got {self.length_low}")
        check(self.length_high > self.length_low, "length_high",
              f"must exceed length_low ({self.length_low}), got {self.length_high}")
        check(self.warmup >= 0, "warmup", f"must be non-negative, got {self.warmup}")


class KuramotoSivashinsky1D(SimulatorProblem):
    """Batched pseudo-spectral KS solver (ETDRK4, 2/3 dealiasing, float64 inside)."""

    name = "ks1d"
    config: KSConfig

    def __init__(self, config: KSConfig | None = None, **overrides: object) -> None:
        super().__init__(dataclasses.replace(config or KSConfig(), **overrides))
        cfg = self.config
        self._bounds = torch.tensor([[cfg.length_low, cfg.length_high]]
                                    + [[cfg.amp_low, cfg.amp_high]] * cfg.n_modes)
        self.basis = spectral.sine_cosine_basis(cfg.n_modes, cfg.grid)
        self.mask = spectral.dealias_mask(cfg.grid)

    @property
    def bounds(self) -> Tensor:
        return self._bounds

    def initial_condition(self, params: Tensor) -> Tensor:
        """u_0 on the grid, ``[n, L]`` (float64)."""
        return params[:, 1:].double() @ self.basis

    def solve(self, u0: Tensor, length: Tensor) -> Tensor:
        """Frames ``[n, T+1, L]`` (float64) from initial fields ``u0`` on domains of ``length``."""
        cfg = self.config
        dt = cfg.dt_save / cfg.substeps
        k = spectral.wavenumbers(cfg.grid, length)
        lin = k * k - k**4
        nonlinear = spectral.advection_term(k, self.mask, cfg.grid)
        warm_steps = round(cfg.warmup / dt)
        if warm_steps:
            u0 = spectral.integrate(u0, lin, nonlinear, dt, warm_steps, 1, self.mask)[:, -1]
        return spectral.integrate(u0, lin, nonlinear, dt, cfg.substeps, cfg.n_steps, self.mask)

    def simulate(self, params: Tensor) -> Tensor:
        params = params.detach().cpu()
        return self.solve(self.initial_condition(params), params[:, 0]).float()
