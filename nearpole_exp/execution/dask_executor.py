"""Dask executor: simulations as tasks on a Dask cluster (``distributed``), the engine researchers
already use for many cheap simulations across nodes.

``address`` empty starts a ``LocalCluster`` here (``workers`` processes of one thread each, no
dashboard); otherwise the executor connects to a running scheduler (``tcp://host:8786``, e.g.
one started by ``dask-jobqueue`` on Slurm/PBS or ``dask scheduler`` + ``dask worker`` by hand).
A worker plugin builds the problem once on every worker (restarted ones too); each simulation
is one task.

Same contract as the other executors (``execution/base.py``): results in completion order, a
crash or hang fails one simulation (retried ``retries`` times), never the run. A task that raises
is caught inside it; a worker that dies (a solver calling ``os._exit``, a segfault) fails its
simulation as ``crashed``; a task running longer than ``timeout_s`` fails as ``timeout`` and its
worker is restarted by its nanny (the only way to stop a thread stuck in C code). On a
``LocalCluster`` the scheduler reports a dead worker's task at once; a remote scheduler retries it
on other workers first (its ``distributed.scheduler.allowed-failures``, 3 by default).
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import logging
import math
import time
from dataclasses import dataclass
from typing import Any

from torch import Tensor

from nearpole_exp.errors import ConfigError, check
from nearpole_exp.execution.base import (
    ExecutorConfig,
    ExecutorError,
    PendingSimulation,
    QueuedExecutor,
    SimulationResult,
)
from nearpole_exp.execution.factory import ProblemFactory, as_factory
from nearpole_exp.execution.samples import Outcome, from_payload, timeout_reason
from nearpole_exp.problems.base import Problem

log = logging.getLogger(__name__)

@dataclass
class DaskConfig(ExecutorConfig):
    """``address``: a running scheduler, or empty for a ``LocalCluster`` of ``workers`` processes;
    ``worker_threads``: torch threads per simulation; ``start_timeout_s``: how long to wait for
    the cluster; ``poll_interval_s``: how often results and running times are checked."""

    address: str = ""
    workers: int = 2
    worker_threads: int = 1
    start_timeout_s: float = 60.0
    poll_interval_s: float = 0.05

    def __post_init__(self) -> None:
        super().__post_init__()
        check(self.workers >= 1, "workers", f"must be >= 1, got {self.workers}")
        check(self.worker_threads >= 1, "worker_threads", f"must be >= 1, got {self.worker_threads}")
        check(self.start_timeout_s > 0, "start_timeout_s", f"must be > 0, got {self.start_timeout_s}")
        check(self.poll_interval_s > 0, "poll_interval_s", f"must be > 0, got {self.poll_interval_s}")


@dataclass
class _Task:
    pending: PendingSimulation
    future: Any
    submitted: float
    started: float | None = None
    worker: str | None = None


class DaskExecutor(QueuedExecutor):
    """Simulations as tasks of a Dask ``distributed`` cluster (local or remote)."""

    config_class = DaskConfig
    isolates_solver = True  # tasks run in worker processes

    def __init__(self, config: DaskConfig | None = None, *, problem: Problem | None = None,
                 factory: ProblemFactory | None = None, **overrides: object) -> None:
        super().__init__()
        self.config = dataclasses.replace(config or DaskConfig(), **overrides)
        self.factory = as_factory(problem, factory)
        self.cluster: Any = None
        self.client = self._connect()
        self.name = f"nearpole-problem-{id(self):x}-{time.time_ns():x}"
        from nearpole_exp.execution.dask_worker import BuildProblem

        self.client.register_plugin(BuildProblem(self.name, self.factory), name=self.name)
        self._tasks: dict[str, _Task] = {}
        self._last_watch = 0.0
        self._threads, self._threads_at = 0, -math.inf

    def _connect(self) -> Any:
        try:
            import dask
            from distributed import Client, LocalCluster
        except ImportError as err:
            raise ConfigError("executor", "executor=dask needs Dask's distributed package: "
                              "pip install 'nearpole_exp[dask]'") from err
        c = self.config
        # the run's log level is INFO: Dask's own INFO lines (every worker start and stop) would
        # fill the console; its warnings and errors still show
        logging.getLogger("distributed").setLevel(logging.WARNING)
        try:
            if c.address:
                return Client(c.address, timeout=c.start_timeout_s)
            # a worker that dies fails its task at once (the retries decide what happens next),
            # and a worker holds only the task it runs (Dask's default saturation, 1.1, lets a
            # one-thread worker hold two: the second would wait behind the first, and die with it)
            settings = {"distributed.scheduler.allowed-failures": 0,
                        "distributed.scheduler.worker-saturation": 1.0}
            with dask.config.set(settings):
                # the scheduler's HTTP server on a free local port (None still takes 8787)
                self.cluster = LocalCluster(n_workers=c.workers, threads_per_worker=1,
                                            processes=True, dashboard_address="127.0.0.1:0",
                                            silence_logs=logging.ERROR)
            return Client(self.cluster, timeout=c.start_timeout_s)
        except (OSError, TimeoutError) as err:
            where = c.address or "a LocalCluster"
            raise ExecutorError(f"cannot reach the Dask scheduler at {where}: {err}; check "
                                "executor.address") from err

    @property
    def capacity(self) -> int:
        """The cluster's worker threads (asked again at most once a second: clusters scale)."""
        if time.monotonic() - self._threads_at > 1.0:
            self._threads = max(sum(self.client.nthreads().values()), 1)
            self._threads_at = time.monotonic()
        return self._threads

    # ------------------------------------------------------------------ submit / poll
    def _start(self, sim_ids: Tensor, params: Tensor) -> None:
        self._queue(sim_ids, params)
        self._fill()

    def _fill(self) -> None:
        """Hand Dask only as many simulations as it has threads: the next one goes to the first
        thread that frees (Dask would queue some behind long ones before it knows their cost)."""
        while self._pending and len(self._tasks) < self.capacity:
            self._launch(self._pending.popleft())

    def _launch(self, pending: PendingSimulation) -> None:
        pending.attempts += 1
        key = f"nearpole-sim-{pending.sim_id}-{pending.attempts}-{id(self):x}"
        from nearpole_exp.execution.dask_worker import run_simulation

        future = self.client.submit(run_simulation, self.name, pending.params.numpy(),
                                    self.config.nonfinite, self.config.worker_threads,
                                    key=key, pure=False)
        self._tasks[key] = _Task(pending, future, time.monotonic())

    def _advance(self) -> None:
        self._harvest()
        self._watch()
        self._fill()

    def _harvest(self) -> None:
        """Turn finished futures into results (or retries), in the order they are seen done."""
        for key, task in list(self._tasks.items()):
            if not task.future.done():
                continue
            del self._tasks[key]
            wall = time.monotonic() - (task.started or task.submitted)
            if task.future.status == "error":
                err = task.future.exception()
                name = type(err).__name__
                reason = ("crashed: the Dask worker running it died (KilledWorker)"
                          if name == "KilledWorker" else f"crashed: {name}: {str(err)[:300]}")
                task.pending.wall_s += wall
                self._fail(task.pending, reason)
                continue
            if task.future.status == "cancelled":
                continue
            out: Outcome = task.future.result()
            task.pending.wall_s += out.wall_s
            if out.failure is not None and not out.failure.startswith("non-finite"):
                self._fail(task.pending, out.failure)
                continue
            samples = None if out.payload is None else from_payload(out.payload)
            self._ready.append(SimulationResult(task.pending.sim_id, task.pending.params, samples,
                                                out.failure, task.pending.attempts,
                                                task.pending.wall_s))

    def _watch(self) -> None:
        """Note when each task starts running, and stop the ones past ``timeout_s``."""
        if self.config.timeout_s <= 0 or not self._tasks:
            return
        now = time.monotonic()
        if now - self._last_watch < max(self.config.poll_interval_s, 0.2):
            return
        self._last_watch = now
        running = {key: worker for worker, keys in self.client.processing().items() for key in keys}
        for key, task in list(self._tasks.items()):
            if task.started is None and key in running:
                task.started, task.worker = now, running[key]
            if task.started is not None and now - task.started > self.config.timeout_s:
                del self._tasks[key]
                task.future.cancel()
                task.pending.wall_s += now - task.started
                self._fail(task.pending, timeout_reason(self.config.timeout_s))
                if task.worker is not None:  # the thread cannot be stopped: its process is
                    with contextlib.suppress(Exception):
                        self.client.restart_workers([task.worker], raise_for_error=False)

    def _shutdown(self) -> None:
        """Cancel what is still running and close the client (and the cluster started here)."""
        futures = [task.future for task in self._tasks.values()]
        with contextlib.suppress(Exception):
            if futures:
                self.client.cancel(futures, force=True)
        with contextlib.suppress(Exception):
            self.client.close(timeout=10)
        if self.cluster is not None:
            with contextlib.suppress(Exception):
                self.cluster.close(timeout=10)
        self._pending, self._tasks, self._ready = collections.deque(), {}, []
