"""A solver that kills its own process (``os.abort``, as a segfault would) where the first
parameter exceeds 1.5, exits with ``sys.exit(3)`` where it lies below 0.3, and otherwise returns
the sleeping solver's analytic frames: the held-out set must survive it."""

from __future__ import annotations

import os
import sys

import numpy as np

from tests.sleep_solver import trajectory


def solve(params: np.ndarray) -> np.ndarray:
    if params[0] > 1.5:
        os.abort()
    if params[0] < 0.3:
        sys.exit(3)
    return trajectory(params, 4, 16)


def nothing(params: np.ndarray) -> None:
    """A solver that forgot its return statement."""
