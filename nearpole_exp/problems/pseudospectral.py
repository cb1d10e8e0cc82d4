"""Simulators solved pseudo-spectrally on a resolved grid and sampled at the training grid.

Each parameter row gets the grid multiple and step count its resolution rule asks for
(``problems/resolution.py``), rounded to 5-smooth numbers; rows with the same plan are solved
as one batch, and the saved frames are the fine solution's values at the ``grid`` training
points (every m-th fine point), so what the surrogate sees is the PDE's field there.
"""

from __future__ import annotations

import logging
from abc import abstractmethod
from typing import Any

import torch
from torch import Tensor

from nearpole_exp.problems import resolution, spectral
from nearpole_exp.problems.resolution import Plan, Requirement
from nearpole_exp.problems.simulator import SimulatorConfig, SimulatorProblem

log = logging.getLogger(__name__)


class PseudoSpectralProblem(SimulatorProblem):
    """A periodic 1D PDE u_t = L u − u·u_x with a per-row diagonal L, resolved per row."""

    config: SimulatorConfig

    def __init__(self, config: SimulatorConfig) -> None:
        super().__init__(config)
        gap = config.resolution_shortfall()
        if gap is not None:
            key, message = gap
            log.warning("%s is under-resolved by choice (allow_under_resolved): %s: %s",
                        self.name, key, message)

    @abstractmethod
    def domain_length(self, params: Tensor) -> Tensor:
        """Domain length of each row, ``[n]`` (float64)."""

    @abstractmethod
    def linear_operator(self, k: Tensor, params: Tensor) -> Tensor:
        """Diagonal L(k) of each row on wavenumbers ``k`` ``[n, K]``."""

    @abstractmethod
    def requirement(self, params: Tensor) -> Requirement:
        """Points and time step each row needs to be resolved."""

    def warmup_time(self) -> float:
        """Unsaved integration time before frame 0 (none by default)."""
        return 0.0

    def initial_condition(self, params: Tensor, n_grid: int | None = None) -> Tensor:
        """u_0 on ``n_grid`` points (default: the training grid), ``[n, n_grid]`` (float64)."""
        basis = spectral.sine_cosine_basis(self.config.ic_terms, n_grid or self.config.grid)
        return params[:, 1:].double() @ basis

    def plan(self, params: Tensor) -> Plan:
        """The grid multiple and steps per saved frame of each row (bounded by the box's
        hardest row: ``SimulatorConfig.plan_rows``)."""
        return self.config.plan_rows(self.requirement(params.detach().cpu()))

    def evolve(self, u0: Tensor, params: Tensor, stride: int, substeps: int) -> Tensor:
        """Frames ``[n, T+1, L/stride]`` (float64) from fields ``u0`` ``[n, L]`` on their own grid,
        with ``substeps`` ETDRK4 steps per saved frame, sampled at every ``stride``-th point."""
        cfg = self.config
        n_grid = u0.shape[-1]
        k = spectral.wavenumbers(n_grid, self.domain_length(params))
        lin = self.linear_operator(k, params)
        dt = cfg.dt_save / substeps
        warm_steps = round(self.warmup_time() / dt)
        if warm_steps:
            u0 = spectral.integrate(u0, lin, k, dt, warm_steps, 1)[:, -1]
        return spectral.integrate(u0, lin, k, dt, substeps, cfg.n_steps, stride)

    def solve(self, params: Tensor) -> Tensor:
        """Resolved frames at the training grid, ``[n, T+1, grid]`` (float64)."""
        cfg = self.config
        params = params.detach().cpu()
        frames = torch.empty(len(params), cfg.n_steps + 1, cfg.grid, dtype=torch.float64)
        if len(params) == 0:
            return frames
        for rows, m, s in resolution.row_groups(self.plan(params)):
            group = params[rows]
            frames[rows] = self.evolve(self.initial_condition(group, m * cfg.grid), group, m, s)
        return frames

    def simulate(self, params: Tensor) -> Tensor:
        return self.solve(params).float()

    def summary_info(self) -> dict[str, Any]:
        return self.config.resolution_summary()
