"""Independent reference solutions that the simulators are validated against.

- Burgers: the exact Cole–Hopf solution. With u = −2ν ∂x log φ, Burgers becomes the heat
  equation φ_t = ν φ_xx, so u(x, t) = ∫ ((x − y)/t) G φ0 dy / ∫ G φ0 dy with the periodic heat
  kernel G and φ0 = exp(−U0/(2ν)), U0 the antiderivative of u0. The integrals are evaluated by
  the trapezoidal rule (spectrally accurate for periodic integrands) in log-sum-exp form, since
  φ0 spans hundreds of orders of magnitude at small ν. Nothing here shares code with the solver.
- Kuramoto–Sivashinsky and diffusive KdV: a method-of-lines solve with scipy's implicit Radau
  integrator on a Fourier grid, a different time integrator from the solvers' ETDRK4 (scipy is a
  test extra).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from numpy.typing import NDArray

Array = NDArray[np.float64]

LOG_TAIL = 40.0


def fourier_antiderivative(coeffs: Array, x: Array) -> Array:
    """U0(x) with U0' = Σ c_j φ_j over φ = sin x, cos x, sin 2x, cos 2x, … (zero-mean terms)."""
    total = np.zeros_like(x)
    for j, c in enumerate(coeffs):
        m = j // 2 + 1
        total += c * (-np.cos(m * x) / m if j % 2 == 0 else np.sin(m * x) / m)
    return total


def fourier_field(coeffs: Array, x: Array) -> Array:
    """u0(x) = Σ c_j φ_j(x) over φ = sin x, cos x, sin 2x, cos 2x, …."""
    total = np.zeros_like(x)
    for j, c in enumerate(coeffs):
        m = j // 2 + 1
        total += c * (np.sin(m * x) if j % 2 == 0 else np.cos(m * x))
    return total


def cole_hopf(coeffs: Array, nu: float, x: Array, times: Array, quad_points: int = 16384) -> Array:
    """Exact Burgers solution ``[len(times), len(x)]`` on [0, 2π) from u0 = Σ c_j φ_j.

    ``quad_points`` trapezoidal nodes in y; images of the kernel are summed until their weight
    falls below e^−40 of the peak even after the largest possible amplification by φ0.
    """
    y = 2 * math.pi * np.arange(quad_points) / quad_points
    log_phi0 = -fourier_antiderivative(coeffs, y) / (2 * nu)
    spread = float(log_phi0.max() - log_phi0.min())
    out = np.empty((len(times), len(x)))
    for i, t in enumerate(times):
        if t == 0:
            out[i] = fourier_field(coeffs, x)
            continue
        reach = math.sqrt(4 * nu * t * (LOG_TAIL + spread))
        images = np.arange(-math.ceil(reach / (2 * math.pi)) - 1, math.ceil(reach / (2 * math.pi)) + 2)
        d = (x[:, None, None] - y[None, :, None] - 2 * math.pi * images[None, None, :])
        log_w = -d * d / (4 * nu * t) + log_phi0[None, :, None]
        w = np.exp(log_w - log_w.max(axis=(1, 2), keepdims=True))
        out[i] = (w * d).sum(axis=(1, 2)) / (t * w.sum(axis=(1, 2)))
    return out


def ks_method_of_lines(u0: Array, length: float, times: Array, rtol: float = 1e-10,
                       atol: float = 1e-12) -> Array:
    """KS u_t = −u u_x − u_xx − u_xxxx on [0, length) from grid values ``u0``, ``[T, N]``."""
    return method_of_lines(u0, length, times, lambda k: k**2 - k**4, rtol, atol)


def kdv_method_of_lines(u0: Array, dispersion: float, viscosity: float, times: Array,
                        rtol: float = 1e-10, atol: float = 1e-12) -> Array:
    """Diffusive KdV u_t = −u u_x − δ u_xxx + ν u_xx on [0, 2π) from grid values ``u0``."""
    return method_of_lines(u0, 2 * math.pi, times,
                           lambda k: 1j * dispersion * k**3 - viscosity * k**2, rtol, atol)


def method_of_lines(u0: Array, length: float, times: Array, symbol: Callable[[Array], Array],
                    rtol: float, atol: float) -> Array:
    """u_t = L u − u u_x on [0, length), L diagonal in Fourier space with ``symbol(k)``, from grid
    values ``u0``, ``[T, N]``: spectral derivatives on the grid of ``u0`` (2/3-dealiased
    product), time by scipy's Radau with its finite-difference Jacobian."""
    from scipy.integrate import solve_ivp

    n = len(u0)
    k = 2 * math.pi * np.fft.rfftfreq(n, d=1.0 / n) / length
    keep = np.arange(len(k)) < math.ceil(n / 3)
    lin = symbol(k)

    def rhs(_t: float, u: Array) -> Array:
        u_hat = np.fft.rfft(u) * keep
        product = np.fft.rfft(np.fft.irfft(u_hat, n) ** 2) * keep
        return np.fft.irfft(lin * u_hat - 0.5j * k * product, n)

    start = np.fft.irfft(np.fft.rfft(u0) * keep, n)
    sol = solve_ivp(rhs, (float(times[0]), float(times[-1])), start, method="Radau",
                    t_eval=times, rtol=rtol, atol=atol)
    if not sol.success:
        raise RuntimeError(f"method-of-lines reference solve failed: {sol.message}")
    return sol.y.T
