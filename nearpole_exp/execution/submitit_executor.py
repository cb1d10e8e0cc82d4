"""submitit executor: simulations as cluster jobs (Slurm), local jobs or in-process debug jobs.

One submitit job runs ``sims_per_job`` simulations one after the other (1 = one job per
simulation; a few per job amortise the job start, i.e. a Python interpreter importing torch and
the problem, a few seconds, plus the Slurm queue). Jobs of one ``submit`` go out together
(a Slurm job array, at most ``array_parallelism`` running); at most ``max_jobs`` jobs of this
executor are queued or running at once, the rest wait here and go out as earlier ones finish.
Job states are polled without blocking (local: the process; Slurm: submitit's cached ``sacct``
watcher). Folder: ``folder`` (relative paths under the current directory, i.e. the Hydra job dir).

Timeouts, two layers. Inside a job each simulation runs under a soft SIGALRM limit of
``timeout_s`` (interrupts Python code and torch between ops; the job then goes on with its next
simulation). Outside, a job is cancelled once it has been running longer than
``startup_grace_s + timeout_s × its simulations`` (a solver stuck in C code): its unfinished
simulations fail with ``timeout after Xs``. ``timeout_min`` is the cluster's own hard limit.
Failures: an exception in a simulation fails that simulation only; a job that dies (crash, node
failure, cancellation by someone else) fails all of its simulations (``crashed: job …``).
Retries resubmit the affected simulations as new jobs.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from nearpole_exp.errors import check
from nearpole_exp.execution.base import ExecutorConfig, PendingSimulation, QueuedExecutor, SimulationResult
from nearpole_exp.execution.factory import ProblemFactory, as_factory
from nearpole_exp.execution.samples import (
    Outcome,
    crash_reason,
    from_payload,
    simulate_one,
    timeout_reason,
)
from nearpole_exp.problems.base import Problem

CLUSTERS = ("local", "slurm", "debug")
RUNNING_STATES = ("RUNNING", "COMPLETING", "DONE", "FINISHED")


@dataclass
class SubmititConfig(ExecutorConfig):
    """Where and how jobs run. ``partition``, ``qos``, ``account``, ``constraint``, ``setup``
    (shell lines run before the job, e.g. ``module load``) apply to Slurm; empty means unset."""

    cluster: str = "local"
    folder: str = "submitit"
    sims_per_job: int = 1
    max_jobs: int = 8
    startup_grace_s: float = 120.0
    poll_interval_s: float = 0.2
    worker_threads: int = 1
    timeout_min: int = 60
    cpus_per_task: int = 1
    mem_gb: float = 0.0
    gpus_per_node: int = 0
    array_parallelism: int = 64
    partition: str = ""
    qos: str = ""
    account: str = ""
    constraint: str = ""
    setup: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        super().__post_init__()
        check(self.cluster in CLUSTERS, "cluster",
              f"must be one of {CLUSTERS}, got {self.cluster!r}")
        check(bool(self.folder), "folder", "must not be empty")
        check(self.sims_per_job >= 1, "sims_per_job", f"must be >= 1, got {self.sims_per_job}")
        check(self.max_jobs >= 0, "max_jobs", f"must be >= 0 (0: no cap), got {self.max_jobs}")
        check(self.startup_grace_s >= 0, "startup_grace_s",
              f"must be >= 0, got {self.startup_grace_s}")
        check(self.poll_interval_s > 0, "poll_interval_s",
              f"must be > 0, got {self.poll_interval_s}")
        check(self.worker_threads >= 1, "worker_threads",
              f"must be >= 1, got {self.worker_threads}")
        check(self.timeout_min >= 1, "timeout_min", f"must be >= 1, got {self.timeout_min}")
        check(self.cpus_per_task >= 1, "cpus_per_task", f"must be >= 1, got {self.cpus_per_task}")
        check(self.mem_gb >= 0, "mem_gb", f"must be >= 0 (0: cluster default), got {self.mem_gb}")
        check(self.gpus_per_node >= 0, "gpus_per_node", f"must be >= 0, got {self.gpus_per_node}")
        check(self.array_parallelism >= 1, "array_parallelism",
              f"must be >= 1, got {self.array_parallelism}")


def run_job(factory: ProblemFactory, sim_ids: list[int], rows: np.ndarray, soft_timeout_s: float,
            nonfinite: str, threads: int) -> list[tuple[int, Outcome]]:
    """The job body: build the problem once, then run each simulation under the soft timeout."""
    torch.set_num_threads(threads)
    try:
        problem = factory()
    except Exception as err:
        return [(i, Outcome(None, crash_reason(err), 0.0)) for i in sim_ids]
    return [(i, simulate_one(problem, row, nonfinite, soft_timeout_s))
            for i, row in zip(sim_ids, rows, strict=True)]


@dataclass
class _Job:
    job: Any
    tasks: list[PendingSimulation]
    submitted: float
    started: float | None = None


class SubmititExecutor(QueuedExecutor):
    """Simulations as submitit jobs on a Slurm cluster, as local processes or in-process (debug)."""

    config_class = SubmititConfig  # the schema of its config group option (config.py)

    def __init__(self, config: SubmititConfig | None = None, *, problem: Problem | None = None,
                 factory: ProblemFactory | None = None, **overrides: object) -> None:
        super().__init__()
        self.config = dataclasses.replace(config or SubmititConfig(), **overrides)
        self.factory = as_factory(problem, factory)
        self.folder = Path(self.config.folder).absolute()
        self.executor = self._make_executor()
        self._jobs: list[_Job] = []
        self._ending: list[_Job] = []

    def _make_executor(self) -> Any:
        import submitit

        c = self.config
        executor = submitit.AutoExecutor(folder=self.folder / "%j", cluster=c.cluster)
        params: dict[str, Any] = {"timeout_min": c.timeout_min, "cpus_per_task": c.cpus_per_task,
                                  "name": "nearpole-sim"}
        if c.cluster == "slurm":
            params.update(slurm_array_parallelism=c.array_parallelism,
                          gpus_per_node=c.gpus_per_node)
            if c.mem_gb:
                params["mem_gb"] = c.mem_gb
            for key in ("partition", "qos", "account", "constraint"):
                if getattr(c, key):
                    params[f"slurm_{key}"] = getattr(c, key)
            if c.setup:
                params["slurm_setup"] = list(c.setup)
        executor.update_parameters(**params)
        return executor

    @property
    def capacity(self) -> int:
        return max(self.config.max_jobs, 1) * self.config.sims_per_job

    def _job_limit_s(self, n_sims: int) -> float:
        """Running time after which a job is cancelled (0: never)."""
        if self.config.timeout_s <= 0:
            return 0.0
        return self.config.startup_grace_s + self.config.timeout_s * n_sims

    # ------------------------------------------------------------------ submit / poll
    def _start(self, sim_ids: Tensor, params: Tensor) -> None:
        self._queue(sim_ids, params)
        self._launch()

    def _launch(self) -> None:
        """Send pending simulations out as jobs, up to ``max_jobs`` outstanding."""
        c = self.config
        chunks: list[list[PendingSimulation]] = []
        room = (c.max_jobs - len(self._jobs)) if c.max_jobs else math.inf
        while self._pending and len(chunks) < room:
            size = min(c.sims_per_job, len(self._pending))
            chunks.append([self._pending.popleft() for _ in range(size)])
        if not chunks:
            return
        now = time.monotonic()
        with self.executor.batch():
            jobs = [self.executor.submit(run_job, self.factory, [t.sim_id for t in chunk],
                                         torch.stack([t.params for t in chunk]).numpy(),
                                         c.timeout_s, c.nonfinite, c.worker_threads)
                    for chunk in chunks]
        for job, chunk in zip(jobs, chunks, strict=True):
            for task in chunk:
                task.attempts += 1
            started = now if c.cluster == "local" else None
            self._jobs.append(_Job(job, chunk, now, started))

    def _advance(self) -> None:
        self._check_jobs()
        self._launch()

    def _check_jobs(self) -> None:
        now = time.monotonic()
        self._ending = [e for e in self._ending if not _done(e.job)]
        still: list[_Job] = []
        for entry in self._jobs:
            if entry.started is None and entry.job.state in RUNNING_STATES:
                entry.started = now
            limit = self._job_limit_s(len(entry.tasks))
            if self._has_result(entry.job) or entry.job.done():
                self._finish(entry, now)
                self._ending.append(entry)
            elif limit and entry.started is not None and now - entry.started > limit:
                with contextlib.suppress(Exception):
                    entry.job.cancel(check=False)
                self._ending.append(entry)
                self._abandon(entry, timeout_reason(self.config.timeout_s), now - entry.started)
            else:
                still.append(entry)
        self._jobs = still

    def _has_result(self, job: Any) -> bool:
        """Whether a (non-debug) job wrote its result file: finished even if its process is
        still exiting (saves about a second per local job)."""
        return self.config.cluster != "debug" and job.paths.result_pickle.exists()

    def _outcomes(self, job: Any) -> dict[int, Outcome] | str:
        """The job's per-simulation outcomes, or the reason the whole job failed."""
        if self.config.cluster == "debug":
            return dict(job.result())
        if self._has_result(job):
            from submitit.core.utils import pickle_load

            kind, value = pickle_load(job.paths.result_pickle)
            if kind == "success":
                return dict(value)
            lines = str(value).strip().splitlines() or [""]
            return f"crashed: job {job.job_id} raised {lines[-1][:300]}"
        return (f"crashed: job {job.job_id} ended without a result (state {job.state}); "
                f"log: {job.paths.stderr}")

    def _finish(self, entry: _Job, now: float) -> None:
        outcomes = self._outcomes(entry.job)
        if isinstance(outcomes, str):
            self._abandon(entry, outcomes, now - (entry.started or entry.submitted))
            return
        for task in entry.tasks:
            out = outcomes[task.sim_id]
            task.wall_s += out.wall_s
            if out.failure is not None and not out.failure.startswith("non-finite"):
                self._fail(task, out.failure)
            else:
                samples = None if out.payload is None else from_payload(out.payload)
                self._ready.append(SimulationResult(task.sim_id, task.params, samples, out.failure,
                                                    task.attempts, task.wall_s))

    def _abandon(self, entry: _Job, reason: str, wall_s: float) -> None:
        """Every simulation of a job that died or was cancelled fails (or is retried)."""
        for task in entry.tasks:
            task.wall_s += wall_s / len(entry.tasks)
            self._fail(task, reason)

    def _shutdown(self) -> None:
        """Cancel every outstanding job and wait (briefly) for local ones to exit."""
        for entry in self._jobs:
            with contextlib.suppress(Exception):
                entry.job.cancel(check=False)
        deadline = time.monotonic() + 5.0
        for entry in self._jobs + self._ending:
            while self.config.cluster == "local" and not _done(entry.job) \
                    and time.monotonic() < deadline:
                time.sleep(0.05)
        self._jobs, self._ending, self._pending, self._ready = [], [], collections.deque(), []


def _done(job: Any) -> bool:
    """Whether a job has ended (errors reading its state count as ended)."""
    try:
        return bool(job.done())
    except Exception:
        return True
