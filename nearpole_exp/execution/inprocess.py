"""In-process executor: the whole submitted batch is labelled at once by ``problem.label``
(batched, no process or pickling overhead: the behaviour before executors existed).

``submit`` blocks for the batch; ``poll`` then returns one result per simulation, in sim order.
Faults: if the batched call raises, each simulation is labelled on its own so that only the
culprits fail (``retries`` further attempts each). A simulation cannot be interrupted in this
process, so ``timeout_s`` must stay 0 here: a user solver's own ``problem.timeout_s`` still
applies (recorded as a ``timeout`` failure), and the process pool kills what runs too long.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass

from torch import Tensor

from nearpole_exp.errors import check
from nearpole_exp.execution.base import Executor, ExecutorConfig, SimulationResult, failure_kind
from nearpole_exp.execution.samples import (
    NONFINITE,
    finite_per_source,
    from_payload,
    simulate_one,
    split_samples,
)
from nearpole_exp.problems.base import Problem

UNBOUNDED = 1 << 30


@dataclass
class InProcessConfig(ExecutorConfig):
    """In-process labelling; see :class:`ExecutorConfig` (``timeout_s`` must be 0)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        check(self.timeout_s == 0, "timeout_s",
              "the in-process executor cannot interrupt a simulation: use executor=process_pool "
              "(or submitit) for timeouts, or set timeout_s=0")


class InProcessExecutor(Executor):
    """Labels batches synchronously in this process through ``problem.label``."""

    config_class = InProcessConfig  # the schema of its config group option (config.py)

    def __init__(self, config: InProcessConfig | None = None, *, problem: Problem,
                 **overrides: object) -> None:
        super().__init__()
        self.config = dataclasses.replace(config or InProcessConfig(), **overrides)
        self.problem = problem
        self._ready: list[SimulationResult] = []

    @property
    def capacity(self) -> int:
        """Unbounded: everything submitted together is labelled as one batch."""
        return UNBOUNDED

    def _start(self, sim_ids: Tensor, params: Tensor) -> None:
        start = time.perf_counter()
        try:
            samples = self.problem.label(params)
        except Exception:
            self._ready += [self._one(int(i), row) for i, row in zip(sim_ids.tolist(), params,
                                                                     strict=True)]
            return
        n = len(params)
        wall = (time.perf_counter() - start) / max(n, 1)
        finite = (finite_per_source(samples, n).tolist() if self.config.nonfinite == "fail"
                  else [True] * n)
        parts = zip(sim_ids.tolist(), params.unbind(0), split_samples(samples, n), finite,
                    strict=True)
        self._ready += [SimulationResult(sim_id, row, part if good else None,
                                         None if good else NONFINITE, 1, wall)
                        for sim_id, row, part, good in parts]

    def _one(self, sim_id: int, row: Tensor) -> SimulationResult:
        """One simulation on its own, with retries after crashes."""
        wall, attempts = 0.0, 0
        while True:
            attempts += 1
            out = simulate_one(self.problem, row.numpy(), self.config.nonfinite)
            wall += out.wall_s
            retry = out.failure is not None and failure_kind(out.failure) != "non-finite"
            if not retry or attempts > self.config.retries:
                samples = None if out.payload is None else from_payload(out.payload)
                return SimulationResult(sim_id, row, samples, out.failure, attempts, wall)

    def _collect(self, timeout: float) -> list[SimulationResult]:
        ready, self._ready = self._ready, []
        return ready

    def _shutdown(self) -> None:
        self._ready = []
