"""Local process-pool executor: N worker processes, one simulation each at a time, with a hard
per-simulation timeout.

Why not ``concurrent.futures.ProcessPoolExecutor``: it cannot kill one running task, and a worker
that dies breaks the whole pool. Here each worker owns a pipe, so the parent always knows which
simulation runs where; a background dispatcher thread feeds idle workers, collects results,
kills a worker whose simulation overran ``timeout_s`` (SIGKILL to its process group, so
sub-processes of a command-line solver die too), replaces dead workers and queues retries. The
caller's thread is never blocked: ``poll`` only reads the dispatcher's result queue.

Workers: started with the ``forkserver`` method by default (torch and the problem's module are
imported once in the fork server, so a replacement worker starts in milliseconds; ``spawn``
re-imports torch, seconds per worker). Each worker rebuilds the problem from a picklable
:class:`~nearpole_exp.execution.factory.ProblemFactory` (default: the pickled problem object),
sets ``torch.set_num_threads(worker_threads)``, and runs in its own process group (Ctrl-C in
the terminal reaches only the parent, which shuts workers down). Samples come back as NumPy
arrays. ``close()`` stops the dispatcher and kills every worker.

Workers re-import the main module, so a plain script that creates this executor needs the usual
``if __name__ == "__main__":`` guard (``python -m nearpole_exp`` has it). Each worker labels one
simulation at a time: a solver that is cheaper batched (the built-in Burgers/KS) is usually
faster in-process.
"""

from __future__ import annotations

import atexit
import collections
import contextlib
import dataclasses
import multiprocessing as mp
import os
import queue
import signal
import threading
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import Any

import torch
from torch import Tensor

from nearpole_exp.errors import check
from nearpole_exp.execution.base import (
    Executor,
    ExecutorConfig,
    ExecutorError,
    PendingSimulation,
    SimulationResult,
)
from nearpole_exp.execution.factory import ProblemFactory, as_factory
from nearpole_exp.execution.samples import (
    crash_reason,
    from_payload,
    simulate_one,
    timeout_reason,
)
from nearpole_exp.execution.solvers import keep_commands_in_this_process_group
from nearpole_exp.problems.base import Problem

START_METHODS = ("forkserver", "spawn")
PRELOAD = ["torch", "nearpole_exp.execution.process_pool"]
_STOP = object()


@dataclass
class ProcessPoolConfig(ExecutorConfig):
    """``workers`` processes (``start_method`` forkserver or spawn), ``worker_threads`` torch
    threads each; a worker that is not ready after ``start_timeout_s`` stops the run."""

    workers: int = 2
    start_method: str = "forkserver"
    worker_threads: int = 1
    start_timeout_s: float = 300.0

    def __post_init__(self) -> None:
        super().__post_init__()
        check(self.workers >= 1, "workers", f"must be >= 1, got {self.workers}")
        check(self.start_method in START_METHODS, "start_method",
              f"must be one of {START_METHODS}, got {self.start_method!r}")
        check(self.worker_threads >= 1, "worker_threads",
              f"must be >= 1, got {self.worker_threads}")
        check(self.start_timeout_s > 0, "start_timeout_s",
              f"must be > 0, got {self.start_timeout_s}")


def _worker_main(conn: Connection, factory: ProblemFactory, threads: int, nonfinite: str) -> None:
    """Worker loop: build the problem, then label one row per request until told to stop."""
    os.setpgrp()
    keep_commands_in_this_process_group()  # killing this group kills a command solver too
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    torch.set_num_threads(threads)
    try:
        problem = factory()
    except BaseException as err:
        conn.send(("boot_error", crash_reason(err)))
        return
    conn.send(("ready",))
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            return
        if msg is None:
            return
        sim_id, row = msg
        out = simulate_one(problem, row, nonfinite)
        conn.send(("done", sim_id, out.payload, out.failure, out.wall_s))


class _Worker:
    """One worker process, its pipe and the simulation it is running."""

    def __init__(self, ctx: Any, factory: ProblemFactory, config: ProcessPoolConfig) -> None:
        self.conn, child = ctx.Pipe(duplex=True)
        self.process = ctx.Process(target=_worker_main, daemon=False, name="nearpole-sim-worker",
                                   args=(child, factory, config.worker_threads, config.nonfinite))
        self.process.start()
        child.close()
        self.born = time.monotonic()
        self.ready = False
        self.task: PendingSimulation | None = None
        self.started = 0.0

    def kill(self) -> None:
        """SIGKILL the worker and its process group (sub-processes of the simulation)."""
        pid = self.process.pid
        if pid is not None and self.process.is_alive():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                if os.getpgid(pid) == pid:
                    os.killpg(pid, signal.SIGKILL)
            self.process.kill()
        self.process.join(5)
        self.conn.close()


class ProcessPoolExecutor(Executor):
    """Simulations in local worker processes, with per-simulation timeouts, retries and
    crash isolation (a dead worker is replaced; the pool carries on)."""

    isolates_solver = True

    config_class = ProcessPoolConfig  # the schema of its config group option (config.py)

    def __init__(self, config: ProcessPoolConfig | None = None, *, problem: Problem | None = None,
                 factory: ProblemFactory | None = None, **overrides: object) -> None:
        super().__init__()
        self.config = dataclasses.replace(config or ProcessPoolConfig(), **overrides)
        self.factory = as_factory(problem, factory)
        self._ctx = mp.get_context(self._start_method())
        if self._ctx.get_start_method() == "forkserver":
            self._ctx.set_forkserver_preload(PRELOAD + self.factory.modules)
        self._pending: collections.deque[PendingSimulation] = collections.deque()
        self._lock = threading.Lock()
        self._results: queue.Queue[Any] = queue.Queue()
        self._error: BaseException | None = None
        self._stop = threading.Event()
        self._wake_r, self._wake_w = self._ctx.Pipe(duplex=False)
        self._workers = [_Worker(self._ctx, self.factory, self.config)
                         for _ in range(self.config.workers)]
        self._thread = threading.Thread(target=self._loop, name="nearpole-sim-dispatcher",
                                        daemon=True)
        self._thread.start()
        atexit.register(self.close)

    def _start_method(self) -> str:
        method = self.config.start_method
        return method if method in mp.get_all_start_methods() else "spawn"

    @property
    def capacity(self) -> int:
        return self.config.workers

    @property
    def n_ready(self) -> int:
        """Workers that have built the problem and accept simulations."""
        return sum(w.ready for w in self._workers)

    def worker_pids(self) -> list[int]:
        """Process ids of the current workers (for tests and monitoring)."""
        return [w.process.pid for w in self._workers if w.process.pid is not None]

    # ------------------------------------------------------------------ caller side
    def _start(self, sim_ids: Tensor, params: Tensor) -> None:
        with self._lock:
            self._pending.extend(PendingSimulation(int(i), row) for i, row in zip(sim_ids.tolist(), params,
                                                                       strict=True))
        self._wake()

    def _wake(self) -> None:
        with contextlib.suppress(OSError):
            self._wake_w.send_bytes(b"w")

    def _collect(self, timeout: float) -> list[SimulationResult]:
        out: list[SimulationResult] = []
        try:
            item = self._results.get(timeout=timeout) if timeout > 0 else self._results.get_nowait()
            while True:
                if item is not _STOP:
                    out.append(item)
                item = self._results.get_nowait()
        except queue.Empty:
            pass
        if self._error is not None:
            raise ExecutorError(f"process pool failed: {self._error}") from self._error
        return out

    # ------------------------------------------------------------------ dispatcher thread
    def _loop(self) -> None:
        try:
            while not self._stop.is_set():
                self._dispatch()
                objs: list[Any] = [self._wake_r]
                for w in self._workers:
                    objs += [w.conn, w.process.sentinel]
                for obj in wait(objs, self._wait_time()):
                    if obj is self._wake_r:
                        while self._wake_r.poll():
                            self._wake_r.recv_bytes()
                for slot, w in enumerate(self._workers):
                    self._read(w)
                    if not w.process.is_alive() and not self._stop.is_set():
                        self._replace(slot, f"worker process exited with code {w.process.exitcode}")
                self._check_deadlines()
        except BaseException as err:
            self._error = err
            self._results.put(_STOP)

    def _wait_time(self) -> float:
        """Seconds until the next deadline (a running simulation's timeout, a worker's start)."""
        now, horizon = time.monotonic(), 1.0
        for w in self._workers:
            if w.task is not None and self.config.timeout_s > 0:
                horizon = min(horizon, w.started + self.config.timeout_s - now)
            elif not w.ready:
                horizon = min(horizon, w.born + self.config.start_timeout_s - now)
        return max(horizon, 0.0)

    def _dispatch(self) -> None:
        for w in self._workers:
            if not (w.ready and w.task is None):
                continue
            with self._lock:
                if not self._pending:
                    return
                task = self._pending.popleft()
            task.attempts += 1
            w.task, w.started = task, time.monotonic()
            try:
                w.conn.send((task.sim_id, task.params.numpy()))
            except (BrokenPipeError, OSError):
                return

    def _read(self, w: _Worker) -> None:
        try:
            while w.conn.poll():
                msg = w.conn.recv()
                if msg[0] == "ready":
                    w.ready = True
                elif msg[0] == "boot_error":
                    raise ExecutorError(f"a worker could not build the problem: {msg[1]}")
                elif msg[0] == "done" and w.task is not None:
                    task, w.task = w.task, None
                    _, _, payload, failure, wall = msg
                    task.wall_s += wall
                    if failure is not None and failure.startswith("crashed"):
                        self._fail(task, failure)
                    else:
                        samples = None if payload is None else from_payload(payload)
                        self._emit(task, samples, failure)
        except (EOFError, OSError):
            return

    def _check_deadlines(self) -> None:
        now = time.monotonic()
        for slot, w in enumerate(self._workers):
            if w.task is not None and self.config.timeout_s > 0 \
                    and now - w.started >= self.config.timeout_s:
                w.task.wall_s += now - w.started
                self._replace(slot, timeout_reason(self.config.timeout_s))
            elif not w.ready and now - w.born >= self.config.start_timeout_s:
                raise ExecutorError(
                    f"a worker was not ready after {self.config.start_timeout_s:g}s")

    def _replace(self, slot: int, reason: str) -> None:
        """Kill the worker in ``slot`` (its simulation fails with ``reason``) and start another."""
        w = self._workers[slot]
        task, w.task = w.task, None
        if task is not None and not reason.startswith("timeout"):
            task.wall_s += time.monotonic() - w.started
        w.kill()
        if not w.ready and task is None:
            raise ExecutorError(f"a worker died while starting: {reason} (a script that creates "
                                "executors needs an `if __name__ == '__main__':` guard)")
        self._workers[slot] = _Worker(self._ctx, self.factory, self.config)
        if task is not None:
            self._fail(task, reason if reason.startswith("timeout") else f"crashed: {reason}")

    def _fail(self, task: PendingSimulation, reason: str) -> None:
        if task.attempts <= self.config.retries:
            with self._lock:
                self._pending.appendleft(task)
        else:
            self._emit(task, None, reason)

    def _emit(self, task: PendingSimulation, samples: Any, failure: str | None) -> None:
        self._results.put(SimulationResult(task.sim_id, task.params, samples, failure,
                                           task.attempts, task.wall_s))

    # ------------------------------------------------------------------ shutdown
    def _shutdown(self) -> None:
        self._stop.set()
        self._wake()
        self._thread.join(10)
        for w in self._workers:
            if w.ready and w.task is None and w.process.is_alive():
                with contextlib.suppress(OSError):
                    w.conn.send(None)
        deadline = time.monotonic() + 1.0
        for w in self._workers:
            w.process.join(max(deadline - time.monotonic(), 0.0))
            w.kill()
        self._wake_r.close()
        self._wake_w.close()
        atexit.unregister(self.close)

