"""Batched 2-D pseudo-spectral machinery: wavenumbers, 2/3 dealiasing, ETDRK4 stepping.

Solves v̂_t = L(k) v̂ + N(v̂) for a batch of periodic 2-D fields with C species each (state
``[n, C, N, N/2+1]``, rfft2 layout), where L is diagonal in Fourier space and may differ per
row and species, and N is the problem's nonlinear term evaluated pseudo-spectrally. ETDRK4
(Cox & Matthews 2002) with contour-integral φ-weights (Kassam & Trefethen 2005, the 1-D
module's :func:`~nearpole_exp.problems.spectral.phi_means`) treats the stiff linear part exactly.
All arithmetic is float64; every row is independent.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from nearpole_exp.problems.spectral import CONTOUR_POINTS, phi_means, top_mode

Nonlinear = Callable[[Tensor], Tensor]


def wavenumbers2d(n_grid: int, length: Tensor) -> tuple[Tensor, Tensor]:
    """(kx, ky) of the rfft2 modes on an ``n_grid``² grid of side ``length`` per row, each
    ``[n, 1, N, N/2+1]`` (kx along the full axis, ky along the halved one)."""
    full = torch.fft.fftfreq(n_grid, d=1.0 / n_grid).double()
    half = torch.arange(n_grid // 2 + 1, dtype=torch.float64)
    scale = (2 * math.pi / length.double()).reshape(-1, 1, 1, 1)
    return scale * full[None, None, :, None], scale * half[None, None, None, :]


def dealias_mask2d(n_grid: int) -> Tensor:
    """2/3-rule mask over rfft2 modes ``[N, N/2+1]``: both |jx| and jy at most the top mode."""
    full = torch.fft.fftfreq(n_grid, d=1.0 / n_grid).abs()
    half = torch.arange(n_grid // 2 + 1)
    top = top_mode(n_grid)
    return (full[:, None] <= top) & (half[None, :] <= top)


def to_grid(v: Tensor, n_grid: int) -> Tensor:
    """Point values of the spectrum ``v``."""
    return torch.fft.irfft2(v, s=(n_grid, n_grid))


def to_spectrum(u: Tensor) -> Tensor:
    return torch.fft.rfft2(u)


@dataclass
class ETDRK4Plan2D:
    """ETDRK4 coefficients for a diagonal ``lin`` ``[n, C, N, N/2+1]`` and step ``h``."""

    e: Tensor
    e2: Tensor
    q: Tensor
    f1: Tensor
    f2: Tensor
    f3: Tensor

    @classmethod
    def build(cls, lin: Tensor, h: float, n_contour: int = CONTOUR_POINTS) -> ETDRK4Plan2D:
        hl = h * lin.double()
        q, f1, f2, f3 = phi_means(hl, n_contour)
        return cls(e=torch.exp(hl), e2=torch.exp(hl / 2), q=h * q, f1=h * f1, f2=h * f2,
                   f3=h * f3)

    def step(self, v: Tensor, nonlinear: Nonlinear) -> Tensor:
        """One ETDRK4 step of the spectrum ``v``."""
        nv = nonlinear(v)
        a = self.e2 * v + self.q * nv
        na = nonlinear(a)
        b = self.e2 * v + self.q * na
        nb = nonlinear(b)
        c = self.e2 * a + self.q * (2 * nb - nv)
        nc = nonlinear(c)
        return self.e * v + self.f1 * nv + 2 * self.f2 * (na + nb) + self.f3 * nc


def integrate2d(u0: Tensor, lin: Tensor, nonlinear: Nonlinear, dt: float, substeps: int,
                n_frames: int, stride: int = 1) -> Tensor:
    """Frames ``[n, n_frames + 1, C, N/stride, N/stride]`` (float64) of v̂_t = L v̂ + N(v̂) from
    fields ``u0`` ``[n, C, N, N]``, saved every ``substeps`` steps at every ``stride``-th point.

    ``u0`` is first projected onto the dealiased band (frame 0 is that projection), and every
    nonlinear evaluation is masked to it, so the discrete system is the Galerkin truncation.
    """
    n, c, n_grid = u0.shape[0], u0.shape[1], u0.shape[-1]
    size = len(range(0, n_grid, stride))
    frames = torch.empty(n, n_frames + 1, c, size, size, dtype=torch.float64)
    if n == 0:
        return frames
    mask = dealias_mask2d(n_grid)
    plan = ETDRK4Plan2D.build(lin, dt)

    def masked(v: Tensor) -> Tensor:
        return nonlinear(v) * mask

    v = to_spectrum(u0.double()) * mask
    frames[:, 0] = to_grid(v, n_grid)[..., ::stride, ::stride]
    for i in range(1, n_frames + 1):
        for _ in range(substeps):
            v = plan.step(v, masked)
        frames[:, i] = to_grid(v, n_grid)[..., ::stride, ::stride]
    return frames


def fourier_modes2d(n_terms: int) -> list[tuple[int, int, int]]:
    """The first ``n_terms`` (mx, my, kind) of a 2-D real Fourier basis, by |m|² then angle:
    modes with mx > 0, or mx = 0 and my > 0 (one of each ± pair), ``kind`` 0 = sin, 1 = cos."""
    modes: list[tuple[int, int, int]] = []
    radius = 1
    while len(modes) < n_terms:
        ring = sorted({(mx, my) for mx in range(0, radius + 1) for my in range(-radius, radius + 1)
                       if (mx > 0 or my > 0) and mx * mx + my * my <= radius * radius},
                      key=lambda m: (m[0] ** 2 + m[1] ** 2, math.atan2(m[1], m[0])))
        modes = [(mx, my, kind) for mx, my in ring for kind in (0, 1)]
        radius += 1
    return modes[:n_terms]


def fourier_basis2d(n_terms: int, n_grid: int) -> Tensor:
    """Rows sin/cos(2π(mx·x + my·y)) on the unit-periodic ``n_grid``² grid, ``[k, N, N]``."""
    x = torch.arange(n_grid, dtype=torch.float64) / n_grid
    gx, gy = torch.meshgrid(x, x, indexing="ij")
    rows = []
    for mx, my, kind in fourier_modes2d(n_terms):
        phase = 2 * math.pi * (mx * gx + my * gy)
        rows.append(torch.sin(phase) if kind == 0 else torch.cos(phase))
    return torch.stack(rows) if rows else torch.empty(0, n_grid, n_grid, dtype=torch.float64)


def mode_wave(n_terms: int) -> Tensor:
    """|m| of each basis row (for an amplitude decay with the wave number)."""
    return torch.tensor([math.hypot(mx, my) for mx, my, _ in fourier_modes2d(n_terms)],
                        dtype=torch.float64)
