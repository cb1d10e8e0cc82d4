"""A solver that sleeps to emulate cost, with fault modes chosen by the second parameter.

Parameters λ = (speed, mode). The box ``BOUNDS_LOW``/``BOUNDS_HIGH`` (speed ∈ [0.1, 1.9],
mode ∈ [−0.8, 0.8]) is fault-free; tests submit rows outside it to trigger faults. A run sleeps
``cost_s · speed`` seconds (mean ``cost_s`` over the box), then returns the analytic trajectory
u(t, x) = speed · sin(x − mode·t) · exp(−0.1 t). The mode picks a fault:

=================  ==========================================================
mode > 0.95        raises RuntimeError("boom")
mode < −0.95       hangs (sleeps an hour)
0.9 < mode ≤ 0.95  returns NaN everywhere
−0.95 ≤ mode < −0.9  kills its own process (os._exit(3))
0.85 < mode ≤ 0.9  flaky: the first run per parameter vector raises, later runs succeed
                   (state in ``flaky_dir``); without a flaky_dir, a normal run
otherwise          normal
=================  ==========================================================

NumPy only (no torch), so the command-line test script imports it cheaply.
"""

from __future__ import annotations

import hashlib
import os
import time

import numpy as np

BOUNDS_LOW = [0.1, -0.8]
BOUNDS_HIGH = [1.9, 0.8]
MODES = {"normal": 0.0, "crash": 0.97, "hang": -0.97, "nan": 0.92, "exit": -0.92, "flaky": 0.87}


def trajectory(params: np.ndarray, n_steps: int, grid: int) -> np.ndarray:
    """The analytic frames ``[n_steps + 1, grid]`` of the sleeping solver."""
    x = np.linspace(0.0, 2 * np.pi, grid, endpoint=False)[None, :]
    t = 0.1 * np.arange(n_steps + 1)[:, None]
    return params[0] * np.sin(x - params[1] * t) * np.exp(-0.1 * t)


class SleepSolver:
    """Picklable callable: ``SleepSolver(cost_s)(params) -> frames`` with the fault modes above."""

    def __init__(self, cost_s: float = 0.0, n_steps: int = 4, grid: int = 16,
                 flaky_dir: str = "") -> None:
        self.cost_s, self.n_steps, self.grid, self.flaky_dir = cost_s, n_steps, grid, flaky_dir

    def __call__(self, params: np.ndarray) -> np.ndarray:
        mode = float(params[1])
        if mode > 0.95:
            raise RuntimeError("boom")
        if mode < -0.95:
            time.sleep(3600)
        if mode < -0.9:
            os._exit(3)
        if 0.85 < mode <= 0.9 and self.flaky_dir:
            marker = os.path.join(self.flaky_dir, hashlib.sha1(params.tobytes()).hexdigest())
            if not os.path.exists(marker):
                open(marker, "w").close()
                raise RuntimeError("flaky first attempt")
        time.sleep(self.cost_s * float(params[0]))
        frames = trajectory(params, self.n_steps, self.grid)
        return np.full_like(frames, np.nan) if 0.9 < mode <= 0.95 else frames


def solve(params: np.ndarray) -> np.ndarray:
    """The free solver (4 steps, 16 points) for import paths: ``tests.sleep_solver:solve``."""
    return SleepSolver()(params)


def solve_or_hang(params: np.ndarray) -> np.ndarray:
    """The free solver, except that it hangs (sleeps an hour) where speed > 1.5."""
    if float(params[0]) > 1.5:
        time.sleep(3600)
    return solve(params)


def params_for(*modes: str, speed: float = 1.0) -> np.ndarray:
    """Parameter rows ``[len(modes), 2]`` triggering the named modes."""
    return np.array([[speed, MODES[m]] for m in modes])
