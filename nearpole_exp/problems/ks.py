"""ks1d: Kuramoto–Sivashinsky u_t + u u_x + u_xx + u_xxxx = 0 on the periodic domain [0, Lx).

Parameters λ = (Lx, c_1…c_k): the domain length and the amplitudes of a truncated Fourier
initial condition u_0 = Σ c_j φ_j(2πx/Lx) over φ = sin, cos, sin 2·, cos 2·, … (k = ``ic_terms``,
so d = 1 + k; term j of wave m ranges over [amp_low, amp_high]·m^−ic_decay). Short domains
(few unstable modes, k² − k⁴ > 0 for k = 2πj/Lx < 1) settle to steady cells; long domains are
chaotic (the intended hard region). Each simulation runs with grid spacing ≤ 0.55 and dt ≤ 0.05
(``problems/resolution.py``; 192 points at Lx = 100) and the surrogate sees the field at the
``grid`` training points, so a longer domain is coarser *for the surrogate* only. ``warmup``
integrates (unsaved) before frame 0, so frames can start near the attractor.
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


@dataclass
class KSConfig(SimulatorConfig):
    """Domain lengths, initial-condition amplitudes, warm-up and grids of the KS problem."""

    length_low: float = 10.0
    length_high: float = 100.0
    n_eval: int = 512
    dt_save: float = 1.0
    warmup: float = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        check(self.length_low > 0, "length_low", f"must be positive, got {self.length_low}")
        check(math.isfinite(self.length_high), "length_high",
              f"must be finite, got {self.length_high}")
        check(self.length_high > self.length_low, "length_high",
              f"must exceed length_low ({self.length_low}), got {self.length_high}")
        check(self.warmup >= 0, "warmup", f"must be non-negative, got {self.warmup}")
        self.check_resolution()

    def hardest_key(self) -> str:
        return "length_high"

    def box_requirement(self) -> Requirement:
        return resolution.ks_requirement(torch.tensor([self.length_high]))


class KuramotoSivashinsky1D(PseudoSpectralProblem):
    """Batched pseudo-spectral KS solver (ETDRK4, 2/3 dealiasing, float64, resolved per row)."""

    config_class = KSConfig  # the schema of its config group option (config.py)

    name = "ks1d"
    config: KSConfig

    def __init__(self, config: KSConfig | None = None, **overrides: object) -> None:
        super().__init__(dataclasses.replace(config or KSConfig(), **overrides))
        cfg = self.config
        self._bounds = torch.cat([torch.tensor([[cfg.length_low, cfg.length_high]]),
                                  cfg.ic_bounds().float()])

    @property
    def bounds(self) -> Tensor:
        return self._bounds

    def domain_length(self, params: Tensor) -> Tensor:
        return params[:, 0].double()

    def linear_operator(self, k: Tensor, params: Tensor) -> Tensor:
        return k * k - k**4

    def requirement(self, params: Tensor) -> Requirement:
        return resolution.ks_requirement(self.domain_length(params))

    def warmup_time(self) -> float:
        return self.config.warmup
