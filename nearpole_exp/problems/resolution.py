"""Resolution rules: the simulation grid and time step that resolve each parameter row.

A simulator solves on a fine grid of ``m·grid`` points and hands the surrogate the point values
at the ``grid`` training points (every m-th point), so the frames are the PDE's field there.

- **Burgers.** With U = max|u0| (the maximum principle bounds |u| by U for all time), a viscous
  shock has a jump Δu ≤ 2U and the tanh profile u ∝ tanh(Δu·x/(4ν)), whose Fourier coefficients
  decay like exp(−2πνk/Δu) ≥ exp(−πνk/U). Resolving it means that decay has reached e^−ξ at
  the dealiased top mode: k_max ≥ ξU/(πν). The shock crosses its own width (≈ 2ν/U) in
  2ν/U², the fastest time scale the explicit part of ETDRK4 must follow: dt ≤ c·ν/U².
- **Kuramoto–Sivashinsky.** Its attractor has a spectrum that is the same in k for every domain
  length L, so the grid needs a fixed spacing L/N ≤ dx_max, and the time step a fixed
  dt ≤ dt_max (the equation's own time scale is O(1); the stiff k⁴ term is exact in ETDRK4).

- **Diffusive KdV.** A smooth initial condition of amplitude U breaks into solitons A·sech²(x/w)
  with A ≤ 2U and width w = √(12δ/A), whose spectrum decays like exp(−πkw/2): k_max ≥ 2ξ/(πw)
  resolves them to e^−ξ. The time error is set by the steepening before dispersion arrests it,
  not by δ: dt ≤ c/U².

The constants were calibrated against converged references on the 64-point training grid
(Cole–Hopf for Burgers, a scipy method-of-lines solve for KS): ξ = 4.4 gave worst relative L2
errors up to 8e-4 over the frames, so ξ = 6; c = 1.5 leaves a time error of ~1e-5 at ν = 0.01;
for KS, L/N = 0.55 gives 1.5e-4 and dt = 0.1 up to 4e-4, so dt = 0.05. Over the default boxes
``scripts/validate_simulators.py`` then measures worst errors of 2.3e-4 (Burgers) and 5e-5 (KS).
For KdV (ν = 0.005, δ in [5e-4, 5e-3], U ≤ 2.4) against a converged solve on 2048 points: the
grid needed for 2.5e-4 was 3·9.0–9.5/w points at every δ, so ξ = 15 (9.55/w); at U = 2.4 the
time error was 1e-3 at dt = 5e-3, 1e-4 at 2.5e-3 and 1e-5 at 1.25e-3 whatever δ, so c = 0.01.
Grid multiples and step counts are rounded up to 5-smooth integers (FFT-friendly, and a row's
resolution then depends on that row alone, so batched equals one-at-a-time).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from nearpole_exp.problems.spectral import sine_cosine_basis

BURGERS_DECAY = 6.0
BURGERS_DT = 1.5
KS_DX = 0.55
KS_DT = 0.05
KDV_DECAY = 15.0
KDV_GROWTH = 2.0
KDV_DT = 0.01

SMOOTH_LIMIT = 1 << 24


def _five_smooth_numbers(limit: int) -> Tensor:
    """Every integer in [1, limit] with no prime factor above 5, sorted."""
    values = [1]
    for p in (2, 3, 5):
        values = [v * p**e for v in values for e in range(int(math.log(limit, p)) + 1)
                  if v * p**e <= limit]
    return torch.tensor(sorted(values), dtype=torch.float64)


FIVE_SMOOTH = _five_smooth_numbers(SMOOTH_LIMIT)


def five_smooth_at_least(x: Tensor | float) -> Tensor:
    """The smallest integers ≥ ``x`` (and ≥ 1) with no prime factor above 5 (elementwise)."""
    x = torch.as_tensor(x, dtype=torch.float64)
    need = torch.ceil(x - 1e-9).clamp(1, SMOOTH_LIMIT)
    return FIVE_SMOOTH[torch.searchsorted(FIVE_SMOOTH, need)].long()


def sup_bound(bounds: Tensor, n_grid: int = 1024) -> float:
    """max|u0| over every u0 = Σ c_j φ_j with c_j in [bounds[j, 0], bounds[j, 1]] (φ = sin x,
    cos x, …; ``bounds`` ``[k, 2]``).

    At each x, c·φ(x) is linear in c, so its extremes over the box take, per coordinate, the
    end that maximises (or minimises) c_j φ_j(x).
    """
    phi = sine_cosine_basis(len(bounds), n_grid)
    low, high = bounds[:, :1].double(), bounds[:, 1:].double()
    top = torch.maximum(low * phi, high * phi).sum(dim=0)
    bottom = torch.minimum(low * phi, high * phi).sum(dim=0)
    return float(torch.maximum(top, -bottom).max())


@dataclass(frozen=True)
class Requirement:
    """Per-row needs: simulation points ``[n]`` and largest time step ``[n]``."""

    points: Tensor
    dt: Tensor

def burgers_requirement(nu: Tensor, u_max: Tensor) -> Requirement:
    """Points and dt that resolve viscosity ``nu`` with max|u0| = ``u_max`` on [0, 2π)."""
    nu, u = nu.double(), u_max.double().clamp_min(1e-12)
    k_max = BURGERS_DECAY * u / (math.pi * nu)
    points = 3 * torch.ceil(k_max) + 1
    return Requirement(points=points, dt=BURGERS_DT * nu / (u * u))

def kdv_requirement(dispersion: Tensor, u_max: Tensor, length: float) -> Requirement:
    """Points and dt that resolve diffusive KdV with dispersion δ and max|u0| = ``u_max``."""
    delta, u = dispersion.double(), u_max.double().clamp_min(1e-12)
    amplitude = KDV_GROWTH * u
    width = torch.sqrt(12 * delta / amplitude)
    k_max = 2 * KDV_DECAY / (math.pi * width) * (length / (2 * math.pi))
    points = 3 * torch.ceil(k_max) + 1
    return Requirement(points=points, dt=KDV_DT / (u * u))


def ks_requirement(length: Tensor) -> Requirement:
    """Points and dt that resolve KS on domains of ``length``."""
    length = length.double()
    return Requirement(points=length / KS_DX, dt=torch.full_like(length, KS_DT))

@dataclass(frozen=True)
class Plan:
    """How each row is solved: the grid multiple ``m`` (``m·grid`` points) and ETDRK4 steps per
    saved frame, ``[n]`` each."""

    multiple: Tensor
    substeps: Tensor

def plan(req: Requirement, grid: int, dt_save: float, sim_grid: int | None,
         substeps: int | None) -> Plan:
    """Round each row's needs up to 5-smooth grid multiples and step counts; fixed settings win."""
    n = len(req.points)
    if sim_grid is None:
        multiple = five_smooth_at_least(req.points / grid)
    else:
        multiple = torch.full((n,), sim_grid // grid, dtype=torch.long)
    if substeps is None:
        steps = five_smooth_at_least(dt_save / req.dt)
    else:
        steps = torch.full((n,), substeps, dtype=torch.long)
    return Plan(multiple=multiple, substeps=steps)


def shortfall(req: Requirement, grid: int, dt_save: float, sim_grid: int | None,
              substeps: int | None) -> tuple[str, str] | None:
    """(key, message) for the first fixed setting that does not resolve the worst row, else None."""
    worst_points = float(req.points.max())
    if sim_grid is not None and sim_grid < worst_points:
        need = grid * int(five_smooth_at_least(worst_points / grid))
        return "sim_grid", f"{sim_grid} points do not resolve the box: it needs at least {need}"
    worst_dt = float(req.dt.min())
    if substeps is not None and dt_save / substeps > worst_dt * (1 + 1e-9):
        need = int(five_smooth_at_least(dt_save / worst_dt))
        return "substeps", (f"{substeps} steps per saved frame (dt {dt_save / substeps:.3g}) do not "
                            f"resolve the box: it needs at least {need} (dt ≤ {worst_dt:.3g})")
    return None


def row_groups(plan: Plan) -> list[tuple[Tensor, int, int]]:
    """(rows, grid multiple, substeps) of the rows sharing each plan: solved as one batch."""
    keys = plan.multiple * (int(plan.substeps.max()) + 1) + plan.substeps
    groups = []
    for key in torch.unique(keys):
        rows = torch.nonzero(keys == key).flatten()
        groups.append((rows, int(plan.multiple[rows[0]]), int(plan.substeps[rows[0]])))
    return groups
