"""The executor protocol: submit simulations, poll the ones that finished, never lose one.

An executor runs ``problem.label`` on single parameter rows somewhere (this process, local
worker processes, cluster jobs) and hands back one :class:`SimulationResult` per submitted
simulation, in completion order. A simulation that crashes, hangs past ``timeout_s`` or
returns non-finite data comes back as a *failure* (``samples`` is None, ``failure`` says why)
after ``retries`` further attempts (crashes and timeouts only: a non-finite output of a
deterministic solver would come back the same); it never raises into the caller.

Accounting: ``in_flight()`` counts simulations submitted and not yet returned by ``poll``
(or ``drain``), so a caller that adds every polled result to its pool knows exactly how many
are still owed.
"""

from __future__ import annotations

import collections
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from nearpole_exp.errors import check
from nearpole_exp.problems.base import Samples

NONFINITE_MODES = ("fail", "keep")
FAILURE_KINDS = ("crashed", "timeout", "non-finite")


class ExecutorError(RuntimeError):
    """The executor itself cannot work (a worker cannot build the problem, no worker starts):
    unlike a failed simulation, this stops the run."""


@dataclass
class ExecutorConfig:
    """Fields every executor shares.

    ``timeout_s``: wall-clock limit of one simulation attempt (0: none). ``retries``: further
    attempts after a crash or a timeout. ``nonfinite``: ``fail`` turns a simulation with any
    non-finite sample into a failure; ``keep`` hands its samples on (the pool drops the
    non-finite ones and counts them, as before executors existed).
    """

    timeout_s: float = 0.0
    retries: int = 0
    nonfinite: str = "fail"

    def __post_init__(self) -> None:
        check(self.timeout_s >= 0, "timeout_s", f"must be >= 0 (0: no limit), got {self.timeout_s}")
        check(self.retries >= 0, "retries", f"must be >= 0, got {self.retries}")
        check(self.nonfinite in NONFINITE_MODES, "nonfinite",
              f"must be one of {NONFINITE_MODES}, got {self.nonfinite!r}")


@dataclass
class PendingSimulation:
    """A queued simulation of an executor: its id, parameters, tries so far and time spent."""

    sim_id: int
    params: Tensor
    attempts: int = 0
    wall_s: float = 0.0


@dataclass
class SimulationResult:
    """One finished simulation: its samples (as ``problem.label(params[None])`` makes them,
    ``source`` all 0) or the reason it failed (``crashed: …``, ``timeout after Xs``,
    ``non-finite output``), after ``attempts`` tries taking ``wall_s`` seconds in all."""

    sim_id: int
    params: Tensor
    samples: Samples | None
    failure: str | None = None
    attempts: int = 1
    wall_s: float = 0.0

    @property
    def ok(self) -> bool:
        return self.failure is None

    def record(self) -> dict[str, Any]:
        """Plain-type description for a run summary (failures list) or a JSON log."""
        return {"sim_id": self.sim_id, "params": [float(v) for v in self.params.tolist()],
                "reason": self.failure, "attempts": self.attempts, "wall_s": round(self.wall_s, 4)}


def failure_kind(reason: str) -> str:
    """``crashed``, ``timeout`` or ``non-finite`` from a failure reason."""
    return next((kind for kind in FAILURE_KINDS if reason.startswith(kind)), "crashed")


class Executor(ABC):
    """Runs simulations and streams their results; subclasses implement ``_start`` / ``_collect``.

    Use as a context manager or call ``close()`` (idempotent; kills what is still running).
    """

    config: ExecutorConfig

    #: whether a simulation runs apart from the run's process, so that a solver that crashes,
    #: exits or hangs there fails one simulation and not the run (the held-out set of a user
    #: solver is then labelled through the executor too)
    isolates_solver: bool = False

    def __init__(self) -> None:
        self._owed: set[int] = set()
        self._closed = False
        self.counts = {"submitted": 0, "completed": 0, "failed": 0, "retried": 0,
                       "crashed": 0, "timeout": 0, "non-finite": 0}
        self.busy_s = 0.0

    @property
    def capacity(self) -> int:
        """How many simulations run at the same time (a sensible ``max_in_flight`` is a small
        multiple of it)."""
        return 1

    def submit(self, sim_ids: Tensor, params: Tensor) -> None:
        """Start simulations ``sim_ids`` ``[n]`` with parameter rows ``params`` ``[n, p]``."""
        if self._closed:
            raise RuntimeError("executor is closed")
        sim_ids = torch.as_tensor(sim_ids, dtype=torch.long).reshape(-1)
        if params.ndim != 2 or params.shape[0] != sim_ids.shape[0]:
            raise ValueError(f"params must be [n, p] with n = len(sim_ids) = {len(sim_ids)}, "
                             f"got {tuple(params.shape)}")
        ids = [int(i) for i in sim_ids.tolist()]
        busy = sorted(set(ids) & self._owed)
        if busy or len(set(ids)) < len(ids):
            raise ValueError("simulation ids must be unique and not in flight; offending: "
                             f"{busy[:5] or ids[:5]}")
        if not ids:
            return
        self._owed.update(ids)
        self.counts["submitted"] += len(ids)
        self._start(sim_ids, params.detach().cpu())

    def poll(self, timeout: float = 0.0) -> list[SimulationResult]:
        """Results finished since the last poll, in completion order; waits up to ``timeout``
        seconds when none is ready yet (and returns at once when nothing is in flight)."""
        if self._closed or not self._owed:
            return []
        return self._account(self._collect(max(float(timeout), 0.0)))

    def in_flight(self) -> int:
        """Simulations submitted whose results ``poll`` has not returned yet."""
        return len(self._owed)

    def drain(self, timeout: float | None = None) -> list[SimulationResult]:
        """Wait for every simulation in flight (at most ``timeout`` seconds when given)."""
        out: list[SimulationResult] = []
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.in_flight() and not self._closed:
            left = 1.0 if deadline is None else min(1.0, deadline - time.monotonic())
            if left <= 0:
                break
            out += self.poll(left)
        return out

    def _account(self, results: list[SimulationResult]) -> list[SimulationResult]:
        for res in results:
            self._owed.discard(res.sim_id)
            self.busy_s += res.wall_s
            self.counts["retried"] += res.attempts - 1
            if res.ok:
                self.counts["completed"] += 1
            else:
                self.counts["failed"] += 1
                self.counts[failure_kind(res.failure or "")] += 1
        return results

    def metrics(self) -> dict[str, float]:
        """``executor/*`` counters: submitted, completed, failed (by kind), retried, in flight."""
        out = {f"executor/{k.replace('-', '_')}": float(v) for k, v in self.counts.items()}
        out["executor/in_flight"] = float(self.in_flight())
        out["executor/sim_busy_s"] = self.busy_s
        return out

    def close(self) -> None:
        """Stop everything (kills running simulations); safe to call twice."""
        if not self._closed:
            self._closed = True
            self._shutdown()

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @abstractmethod
    def _start(self, sim_ids: Tensor, params: Tensor) -> None:
        """Begin the simulations (must not block for their duration, except in-process)."""

    @abstractmethod
    def _collect(self, timeout: float) -> list[SimulationResult]:
        """Finished results, waiting up to ``timeout`` seconds for the first one."""

    @abstractmethod
    def _shutdown(self) -> None:
        """Release workers, processes and threads."""


class QueuedExecutor(Executor):
    """An executor that queues simulations here and polls somewhere else for them (cluster jobs,
    Dask tasks): the queue, the retry-or-fail rule and the polling loop, shared; subclasses
    send work out and collect it in :meth:`_advance`."""

    def __init__(self) -> None:
        super().__init__()
        self._pending: collections.deque[PendingSimulation] = collections.deque()
        self._ready: list[SimulationResult] = []

    def _queue(self, sim_ids: Tensor, params: Tensor) -> None:
        self._pending.extend(PendingSimulation(int(i), row)
                             for i, row in zip(sim_ids.tolist(), params, strict=True))

    @abstractmethod
    def _advance(self) -> None:
        """Collect what finished into ``_ready`` (or back into ``_pending`` to retry) and send
        out what may go; never blocks."""

    def _collect(self, timeout: float) -> list[SimulationResult]:
        deadline = time.monotonic() + timeout
        while True:
            self._advance()
            if self._ready or time.monotonic() >= deadline:
                ready, self._ready = self._ready, []
                return ready
            time.sleep(min(self.config.poll_interval_s,  # type: ignore[attr-defined]
                           max(deadline - time.monotonic(), 0.0)))

    def _fail(self, task: PendingSimulation, reason: str) -> None:
        """Retry a crashed or timed-out simulation (``retries`` times), then report it failed."""
        if task.attempts <= self.config.retries:
            self._pending.appendleft(task)
        else:
            self._ready.append(SimulationResult(task.sim_id, task.params, None, reason,
                                                task.attempts, task.wall_s))
