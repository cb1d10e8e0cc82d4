"""Batched 1D pseudo-spectral machinery: wavenumbers, 2/3 dealiasing and ETDRK4 stepping.

Solves û_t = L(k) û − ½ ik·FFT(u²) (the u·u_x advection of Burgers and KS) for a batch of
periodic 1D fields, where the linear operator is diagonal in Fourier space and may differ per
simulation (a viscosity or a domain length per row). Exponential time differencing of fourth
order (Cox & Matthews 2002) with the contour-integral evaluation of its φ-function coefficients
(Kassam & Trefethen 2005) treats the stiff linear part exactly and the nonlinear part
explicitly. All arithmetic is float64 and every row is independent, so one blown-up simulation
never contaminates another.

Speed: a step is overhead-bound at small grids, so the advection factor −½ik·mask is folded
into the ETDRK4 coefficients once, and each step is four FFT pairs and eleven fused
elementwise operations on complex coefficients, writing into one preallocated frame tensor
(benchmarks/solvers.md compares it with exponax).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

CONTOUR_POINTS = 32


def wavenumbers(n_grid: int, length: Tensor) -> Tensor:
    """Angular wavenumbers 2πj/length of the rfft modes j = 0…n_grid/2, shape ``[n, K]``."""
    j = torch.arange(n_grid // 2 + 1, dtype=torch.float64)
    return 2 * math.pi * j[None, :] / length.double().reshape(-1, 1)


def dealias_mask(n_grid: int) -> Tensor:
    """2/3-rule mask over rfft modes: keeps j ≤ K with 3K < n_grid, so quadratic terms are exact."""
    return torch.arange(n_grid // 2 + 1) <= top_mode(n_grid)


def top_mode(n_grid: int) -> int:
    """The highest mode index the 2/3 rule keeps on ``n_grid`` points."""
    return math.ceil(n_grid / 3) - 1


def phi_means(hl: Tensor, n_contour: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(e^{z/2} − 1)/z and the three ETDRK4 weights at z = hL, by contour means.

    The φ-functions have removable singularities at 0; averaging them over points of a unit
    circle around z avoids the cancellation. For real L the upper half circle suffices (take
    the real part); a complex L (dispersion, i·k³) takes the whole circle.
    """
    j = torch.arange(1, n_contour + 1, dtype=torch.float64) - 0.5
    if hl.is_complex():
        r = torch.exp(2j * math.pi * j / n_contour)
    else:
        r = torch.exp(1j * math.pi * j / n_contour)
    z = hl[..., None] + r
    ez, ez2 = torch.exp(z), torch.exp(z / 2)
    z3 = z**3
    means = (((ez2 - 1) / z).mean(dim=-1),
             ((-4 - z + ez * (4 - 3 * z + z * z)) / z3).mean(dim=-1),
             ((2 + z + ez * (z - 2)) / z3).mean(dim=-1),
             ((-4 - 3 * z - z * z + ez * (4 - z)) / z3).mean(dim=-1))
    if hl.is_complex():
        return means
    return tuple(m.real for m in means)  # type: ignore[return-value]


@dataclass
class ETDRK4:
    """Per-mode ETDRK4 coefficients for a diagonal linear operator, step ``h``, and the
    nonlinear factor ``g`` (N(û) = g · FFT(u²)) folded into the φ-weights."""

    e: Tensor
    e2: Tensor
    q: Tensor
    q2: Tensor
    f1: Tensor
    f2: Tensor
    f3: Tensor
    n_grid: int

    @classmethod
    def build(cls, lin: Tensor, h: float, factor: Tensor | None = None,
              n_contour: int = CONTOUR_POINTS, n_grid: int = 0) -> ETDRK4:
        """Coefficients for ``lin`` ``[n, K]`` (real, or complex for a dispersive term);
        ``factor`` defaults to 1 (plain φ-weights).

        ``f2`` holds twice the φ₂ weight and ``q2`` twice ``q``, the forms the step uses; with a
        complex ``factor`` every coefficient is complex, so no step promotes a real one.
        """
        hl = h * (lin.to(torch.complex128) if lin.is_complex() else lin.double())
        q, f1, f2, f3 = phi_means(hl, n_contour)
        g = torch.ones((), dtype=torch.float64) if factor is None else factor
        dtype = torch.promote_types(hl.dtype, g.dtype)
        return cls(e=torch.exp(hl).to(dtype), e2=torch.exp(hl / 2).to(dtype), q=h * q * g,
                   q2=2 * h * q * g, f1=h * f1 * g, f2=2 * h * f2 * g, f3=h * f3 * g,
                   n_grid=n_grid or 2 * (lin.shape[-1] - 1))

    def square(self, v: Tensor) -> Tensor:
        """FFT(u²) of the field whose spectrum is ``v``."""
        u = torch.fft.irfft(v, n=self.n_grid, dim=-1)
        return torch.fft.rfft(u * u, dim=-1)

    def step(self, v: Tensor) -> Tensor:
        """One ETDRK4 step of û (complex ``[n, K]``)."""
        nv = self.square(v)
        e2v = self.e2 * v
        a = torch.addcmul(e2v, self.q, nv)
        na = self.square(a)
        b = torch.addcmul(e2v, self.q, na)
        nb = self.square(b)
        c = torch.addcmul(torch.addcmul(self.e2 * a, self.q2, nb), self.q, nv, value=-1)
        nc = self.square(c)
        out = torch.addcmul(self.e * v, self.f1, nv)
        out = torch.addcmul(out, self.f2, na + nb)
        return torch.addcmul(out, self.f3, nc)


def advection_factor(k: Tensor, mask: Tensor) -> Tensor:
    """g = −½ik on the dealiased band, so that g·FFT(u²) is −½∂x(u²) = −u·u_x."""
    return -0.5j * k * mask.to(k.dtype)


def integrate(u0: Tensor, lin: Tensor, k: Tensor, dt: float, substeps: int, n_frames: int,
              stride: int = 1) -> Tensor:
    """Frames ``[n, n_frames + 1, L/stride]`` (float64) of û_t = L û − ½ik·FFT(u²), saved every
    ``substeps`` steps at every ``stride``-th grid point.

    ``u0`` ``[n, L]`` is first projected onto the dealiased band, so the discrete system is the
    Galerkin truncation (frame 0 is that projection).
    """
    n_grid = u0.shape[-1]
    if len(u0) == 0:
        return torch.empty(0, n_frames + 1, n_grid // stride, dtype=torch.float64)
    mask = dealias_mask(n_grid)
    scheme = ETDRK4.build(lin, dt, advection_factor(k, mask), n_grid=n_grid)
    v = torch.fft.rfft(u0.double(), dim=-1) * mask
    frames = torch.empty(len(u0), n_frames + 1, len(range(0, n_grid, stride)), dtype=torch.float64)
    frames[:, 0] = torch.fft.irfft(v, n=n_grid, dim=-1)[:, ::stride]
    for i in range(1, n_frames + 1):
        for _ in range(substeps):
            v = scheme.step(v)
        frames[:, i] = torch.fft.irfft(v, n=n_grid, dim=-1)[:, ::stride]
    return frames


def sine_cosine_basis(n_terms: int, n_grid: int) -> Tensor:
    """Rows sin θ, cos θ, sin 2θ, cos 2θ, … (``n_terms`` rows) on θ_i = 2πi/n_grid, ``[k, L]``."""
    theta = 2 * math.pi * torch.arange(n_grid, dtype=torch.float64) / n_grid
    rows = []
    for j in range(n_terms):
        wave = j // 2 + 1
        rows.append(torch.sin(wave * theta) if j % 2 == 0 else torch.cos(wave * theta))
    return torch.stack(rows) if rows else torch.empty(0, n_grid, dtype=torch.float64)
