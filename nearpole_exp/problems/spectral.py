"""Batched 1D pseudo-spectral machinery: wavenumbers, 2/3 dealiasing and ETDRK4 stepping.

Solves û_t = L(k) û + N(û) for a batch of periodic 1D fields, where the linear operator is
diagonal in Fourier space and may differ per simulation (a viscosity or a domain length per
row). Exponential time differencing of fourth order (Cox & Matthews 2002) with the
contour-integral evaluation of its φ-function coefficients (Kassam & Trefethen 2005) treats
the stiff linear part exactly and the nonlinear part explicitly. All arithmetic is float64
and every row is independent, so one blown-up simulation never contaminates another.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

NonlinearTerm = Callable[[Tensor], Tensor]
CONTOUR_POINTS = 32


def wavenumbers(n_grid: int, length: Tensor) -> Tensor:
    """Angular wavenumbers 2πj/length of the rfft modes j = 0…n_grid/2, shape ``[n, K]``."""
    j = torch.arange(n_grid // 2 + 1, dtype=torch.float64)
    return 2 * math.pi * j[None, :] / length.double().reshape(-1, 1)


def dealias_mask(n_grid: int) -> Tensor:
    """2/3-rule mask over rfft modes: keeps j ≤ K with 3K < n_grid, so quadratic terms are exact."""
    cutoff = math.ceil(n_grid / 3) - 1
    return torch.arange(n_grid // 2 + 1) <= cutoff


def advection_term(k: Tensor, mask: Tensor, n_grid: int) -> NonlinearTerm:
    """N(û) = −½ ∂x(u²) in Fourier space, dealiased: the u·u_x term of Burgers and KS."""
    factor = -0.5j * k * mask.to(k.dtype)

    def nonlinear(v_hat: Tensor) -> Tensor:
        u = torch.fft.irfft(v_hat, n=n_grid, dim=-1)
        return factor * torch.fft.rfft(u * u, dim=-1)

    return nonlinear


@dataclass
class ETDRK4:
    """Per-mode ETDRK4 coefficients for a diagonal linear operator and step ``h``."""

    e: Tensor
    e2: Tensor
    q: Tensor
    f1: Tensor
    f2: Tensor
    f3: Tensor

    @classmethod
    def build(cls, lin: Tensor, h: float, n_contour: int = CONTOUR_POINTS) -> ETDRK4:
        """Coefficients for real ``lin`` (any shape) by a mean over a unit circle around h·L.

        The φ-functions have removable singularities at 0; averaging them over contour
        points (upper half circle, real part, valid since L is real) avoids the cancellation.
        """
        hl = h * lin.double()
        r = torch.exp(1j * math.pi * (torch.arange(1, n_contour + 1, dtype=torch.float64) - 0.5)
                      / n_contour)
        z = hl[..., None] + r
        ez, ez2 = torch.exp(z), torch.exp(z / 2)
        z3 = z**3

        def mean(values: Tensor) -> Tensor:
            return h * values.mean(dim=-1).real

        return cls(
            e=torch.exp(hl),
            e2=torch.exp(hl / 2),
            q=mean((ez2 - 1) / z),
            f1=mean((-4 - z + ez * (4 - 3 * z + z * z)) / z3),
            f2=mean((2 + z + ez * (z - 2)) / z3),
            f3=mean((-4 - 3 * z - z * z + ez * (4 - z)) / z3),
        )

    def step(self, v: Tensor, nonlinear: NonlinearTerm) -> Tensor:
        """One ETDRK4 step of û (complex ``[n, K]``)."""
        nv = nonlinear(v)
        a = self.e2 * v + self.q * nv
        na = nonlinear(a)
        b = self.e2 * v + self.q * na
        nb = nonlinear(b)
        c = self.e2 * a + self.q * (2 * nb - nv)
        nc = nonlinear(c)
        return self.e * v + self.f1 * nv + 2 * self.f2 * (na + nb) + self.f3 * nc


def integrate(u0: Tensor, lin: Tensor, nonlinear: NonlinearTerm, dt: float, substeps: int,
              n_frames: int, mask: Tensor) -> Tensor:
    """Frames ``[n, n_frames + 1, L]`` (float64) of û_t = L û + N(û) saved every ``substeps`` steps.

    ``u0`` ``[n, L]`` is first projected onto the dealiased band, so the discrete system is the
    Galerkin truncation (frame 0 is that projection).
    """
    n_grid = u0.shape[-1]
    if len(u0) == 0:
        return torch.empty(0, n_frames + 1, n_grid, dtype=torch.float64)
    scheme = ETDRK4.build(lin, dt)
    v = torch.fft.rfft(u0.double(), dim=-1) * mask
    frames = [torch.fft.irfft(v, n=n_grid, dim=-1)]
    for _ in range(n_frames):
        for _ in range(substeps):
            v = scheme.step(v, nonlinear)
        frames.append(torch.fft.irfft(v, n=n_grid, dim=-1))
    return torch.stack(frames, dim=1)


def sine_cosine_basis(n_modes: int, n_grid: int) -> Tensor:
    """Rows sin θ, cos θ, sin 2θ, cos 2θ, … (``n_modes`` rows) on θ_i = 2πi/n_grid, ``[k, L]``."""
    theta = 2 * math.pi * torch.arange(n_grid, dtype=torch.float64) / n_grid
    rows = []
    for j in range(n_modes):
        wave = j // 2 + 1
        rows.append(torch.sin(wave * theta) if j % 2 == 0 else torch.cos(wave * theta))
    return torch.stack(rows) if rows else torch.empty(0, n_grid, dtype=torch.float64)
