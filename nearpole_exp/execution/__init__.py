"""Simulation executors: run a problem's simulations in-process, in local worker processes or as
submitit (Slurm) jobs, streaming one :class:`SimulationResult` per simulation as it finishes.

See :mod:`.base` for the protocol, :mod:`.feed` for the asynchronous-generation driver and
:mod:`.solvers` for wrapping a user's solver (a Python callable or a command line).
"""

from nearpole_exp.execution.base import Executor, ExecutorConfig, ExecutorError, SimulationResult
from nearpole_exp.execution.factory import HydraProblem, PickledProblem, ProblemFactory
from nearpole_exp.execution.feed import FeedConfig, SimulationFeed
from nearpole_exp.execution.inprocess import InProcessConfig, InProcessExecutor
from nearpole_exp.execution.process_pool import ProcessPoolConfig, ProcessPoolExecutor
from nearpole_exp.execution.samples import merge_results
from nearpole_exp.execution.submitit_executor import SubmititConfig, SubmititExecutor

__all__ = [
    "Executor",
    "ExecutorConfig",
    "ExecutorError",
    "FeedConfig",
    "HydraProblem",
    "InProcessConfig",
    "InProcessExecutor",
    "PickledProblem",
    "ProblemFactory",
    "ProcessPoolConfig",
    "ProcessPoolExecutor",
    "SimulationFeed",
    "SimulationResult",
    "SubmititConfig",
    "SubmititExecutor",
    "merge_results",
]
