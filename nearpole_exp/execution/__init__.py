"""Simulation executors: run a problem's simulations in-process, in local worker processes or as
submitit (Slurm) jobs, streaming one :class:`SimulationResult` per simulation as it finishes.

See :mod:`.base` for the protocol and :mod:`.solvers` for wrapping a user's solver (a Python
callable or a command line); the driver that keeps an executor fed with a breeder's generations is
:mod:`nearpole_exp.acquisition.feed`.
"""

from nearpole_exp.execution.base import Executor, ExecutorConfig, ExecutorError, SimulationResult
from nearpole_exp.execution.factory import HydraProblem, PickledProblem, ProblemFactory
from nearpole_exp.execution.inprocess import InProcessConfig, InProcessExecutor
from nearpole_exp.execution.process_pool import ProcessPoolConfig, ProcessPoolExecutor
from nearpole_exp.execution.samples import merge_results
from nearpole_exp.execution.submitit_executor import SubmititConfig, SubmititExecutor

__all__ = [
    "Executor",
    "ExecutorConfig",
    "ExecutorError",
    "HydraProblem",
    "InProcessConfig",
    "InProcessExecutor",
    "PickledProblem",
    "ProblemFactory",
    "ProcessPoolConfig",
    "ProcessPoolExecutor",
    "SimulationResult",
    "SubmititConfig",
    "SubmititExecutor",
    "merge_results",
]
