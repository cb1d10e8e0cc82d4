"""burgers1d: viscous Burgers u_t + u u_x = ν u_xx on the periodic domain [0, 2π).

Parameters λ = (ν, c_1…c_k): the viscosity (or log10 ν with ``log_viscosity``) and the
amplitudes of the initial condition u_0 = Σ c_j φ_j over φ = sin x, cos x, sin 2x, cos 2x, …
(k = ``ic_terms``, so d = 1 + k; term j of wave m ranges over [amp_low, amp_high]·m^−ic_decay).
The default amplitudes are positive ([0.2, 1]) so no trajectory has a vanishing RMS (which
would make nRMSE meaningless). Small ν with large amplitudes steepens into shocks: the hard
region where a surrogate's tail errors live. Each simulation runs on the grid and time step
its own ν and max|u0| need (``problems/resolution.py``: up to 1536 points at ν = 0.01), and
the surrogate sees the field at the ``grid`` training points; the solver agrees with the exact
Cole–Hopf solution to < 1e-3 relative L2 on every frame over the default box
(``scripts/validate_simulators.py``).
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


@dataclass
class BurgersConfig(SimulatorConfig):
    """Viscosity range, initial-condition amplitudes and grids of :class:`Burgers1D`."""

    nu_low: float = 0.01
    nu_high: float = 0.1
    n_eval: int = 512
    log_viscosity: bool = False
    amp_low: float = 0.2
    amp_high: float = 1.0

    def __post_init__(self) -> None:
        super().__post_init__()
        check(self.nu_low > 0, "nu_low", f"must be positive, got {self.nu_low}")
        check(math.isfinite(self.nu_high), "nu_high", f"must be finite, got {self.nu_high}")
        check(self.nu_high > self.nu_low, "nu_high",
              f"must exceed nu_low ({self.nu_low}), got {self.nu_high}")
        self.check_resolution()

    def hardest_key(self) -> str:
        return "nu_low"

    def box_requirement(self) -> Requirement:
        u_max = resolution.sup_bound(self.ic_bounds())
        return resolution.burgers_requirement(torch.tensor([self.nu_low]), torch.tensor([u_max]))


class Burgers1D(PseudoSpectralProblem):
    """Batched pseudo-spectral Burgers solver (ETDRK4, 2/3 dealiasing, float64, resolved per row)."""

    config_class = BurgersConfig  # the schema of its config group option (config.py)

    name = "burgers1d"
    config: BurgersConfig

    def __init__(self, config: BurgersConfig | None = None, **overrides: object) -> None:
        super().__init__(dataclasses.replace(config or BurgersConfig(), **overrides))
        cfg = self.config
        if cfg.log_viscosity:
            nu_box = [math.log10(cfg.nu_low), math.log10(cfg.nu_high)]
        else:
            nu_box = [cfg.nu_low, cfg.nu_high]
        self._bounds = torch.cat([torch.tensor([nu_box]), cfg.ic_bounds().float()])

    @property
    def bounds(self) -> Tensor:
        return self._bounds

    def viscosity(self, params: Tensor) -> Tensor:
        """ν of each parameter row, ``[n]``."""
        nu = params[:, 0].double()
        return 10.0**nu if self.config.log_viscosity else nu

    def domain_length(self, params: Tensor) -> Tensor:
        return torch.full((len(params),), 2 * math.pi, dtype=torch.float64)

    def linear_operator(self, k: Tensor, params: Tensor) -> Tensor:
        return -self.viscosity(params).reshape(-1, 1) * k * k

    def requirement(self, params: Tensor) -> Requirement:
        u_max = self.initial_condition(params, SUP_GRID).abs().amax(dim=-1)
        return resolution.burgers_requirement(self.viscosity(params), u_max)
