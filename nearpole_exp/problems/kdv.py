"""kdv1d: diffusive Korteweg–de Vries u_t + u u_x + δ u_xxx = ν u_xx on the periodic domain [0, 2π).

Parameters λ = (δ, c_1…c_k): the dispersion and the amplitudes of the initial condition
u_0 = Σ c_j φ_j over φ = sin x, cos x, sin 2x, cos 2x, … (k = ``ic_terms``, so d = 1 + k; term j
of wave m ranges over [amp_low, amp_high]·m^−ic_decay); the viscosity ν is fixed. A smooth
initial condition steepens and breaks into a train of solitons of width ≈ √(12δ/A) for an
amplitude A: small δ with large amplitudes gives many narrow, fast solitons — the hard region.
The linear part −δ∂³ + ν∂² is diagonal and complex in Fourier space, treated exactly by ETDRK4.
Each simulation runs on the grid and time step its δ and max|u0| need
(``problems/resolution.py``) and the surrogate sees the field at the ``grid`` training points;
the solver agrees with a scipy Radau method-of-lines solve to < 1e-3 relative L2 on every frame
over the default box (``scripts/validate_simulators.py``).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch
from torch import Tensor

from nearpole_exp.errors import check
from nearpole_exp.problems import resolution
from nearpole_exp.problems.pseudospectral import PseudoSpectralProblem
from nearpole_exp.problems.resolution import Requirement
from nearpole_exp.problems.simulator import SimulatorConfig

SUP_GRID = 256
LENGTH = 2 * math.pi


@dataclass
class KdVConfig(SimulatorConfig):
    """Dispersion range, viscosity, initial-condition amplitudes and grids of :class:`KdV1D`."""

    dispersion_low: float = 5e-4
    dispersion_high: float = 5e-3
    viscosity: float = 0.005
    n_eval: int = 512
    amp_low: float = 0.2
    amp_high: float = 1.0

    def __post_init__(self) -> None:
        super().__post_init__()
        check(self.dispersion_low > 0, "dispersion_low",
              f"must be positive, got {self.dispersion_low}")
        check(math.isfinite(self.dispersion_high) and self.dispersion_high > self.dispersion_low,
              "dispersion_high", f"must be finite and exceed dispersion_low ({self.dispersion_low}), "
                                 f"got {self.dispersion_high}")
        check(math.isfinite(self.viscosity) and self.viscosity >= 0, "viscosity",
              f"must be a finite number >= 0, got {self.viscosity}")
        self.check_resolution()

    def hardest_key(self) -> str:
        return "dispersion_low"

    def box_requirement(self) -> Requirement:
        u_max = resolution.sup_bound(self.ic_bounds())
        return resolution.kdv_requirement(torch.tensor([self.dispersion_low]),
                                          torch.tensor([u_max]), LENGTH)


class KdV1D(PseudoSpectralProblem):
    """Batched pseudo-spectral diffusive KdV solver (ETDRK4, complex linear part, 2/3
    dealiasing, float64, resolved per row)."""

    config_class = KdVConfig  # the schema of its config group option (config.py)

    name = "kdv1d"
    config: KdVConfig

    def __init__(self, config: KdVConfig | None = None, **overrides: object) -> None:
        super().__init__(dataclasses.replace(config or KdVConfig(), **overrides))
        cfg = self.config
        self._bounds = torch.cat([torch.tensor([[cfg.dispersion_low, cfg.dispersion_high]]),
                                  cfg.ic_bounds().float()])

    @property
    def bounds(self) -> Tensor:
        return self._bounds

    def domain_length(self, params: Tensor) -> Tensor:
        return torch.full((len(params),), LENGTH, dtype=torch.float64)

    def linear_operator(self, k: Tensor, params: Tensor) -> Tensor:
        delta = params[:, 0].double().reshape(-1, 1)
        return 1j * delta * k**3 - self.config.viscosity * k * k

    def requirement(self, params: Tensor) -> Requirement:
        u_max = self.initial_condition(params, SUP_GRID).abs().amax(dim=-1)
        return resolution.kdv_requirement(params[:, 0].double(), u_max, LENGTH)
