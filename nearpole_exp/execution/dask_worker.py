"""What runs inside a Dask worker (imported there, and by the executor only when it is used):
the plugin that builds the problem on every worker and the task that labels one row."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from distributed.diagnostics.plugin import WorkerPlugin

from nearpole_exp.execution.factory import ProblemFactory
from nearpole_exp.execution.samples import Outcome, simulate_one
from nearpole_exp.problems.base import Problem

#: Problems built in this worker process, by the name of the executor's plugin.
BUILT: dict[str, Problem | BaseException] = {}


class BuildProblem(WorkerPlugin):
    """Builds the problem on every worker when it starts, including workers that join or are
    restarted later (data scattered to a worker would die with it)."""

    def __init__(self, name: str, factory: ProblemFactory) -> None:
        self.name, self.factory = name, factory

    def setup(self, worker: Any) -> None:
        try:
            BUILT[self.name] = self.factory()
        except Exception as err:  # kept: every task of this worker reports it
            BUILT[self.name] = err

    def teardown(self, worker: Any) -> None:
        BUILT.pop(self.name, None)


def run_simulation(name: str, row: np.ndarray, nonfinite: str, threads: int) -> Outcome:
    """The task body: the worker's problem labels one row (the executor's watchdog enforces
    ``timeout_s``: tasks run in worker threads, where no alarm signal can interrupt them)."""
    torch.set_num_threads(threads)
    problem = BUILT.get(name)
    if not isinstance(problem, Problem):
        why = "it was never built" if problem is None else f"{type(problem).__name__}: {problem}"
        return Outcome(None, f"crashed: the problem cannot be built in a Dask worker: {why}", 0.0)
    return simulate_one(problem, row, nonfinite)
