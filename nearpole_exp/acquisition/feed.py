"""Asynchronous generations: keep an executor busy with the breeder's parameters, under a fixed
simulation budget, while training goes on.

Simulation ids are rows of the breeder's parameter table, submitted strictly in id order
(0, 1, 2, …, ``budget`` − 1), each exactly once. The feed holds the *ahead buffer*: ids the
breeder has written but nobody has submitted yet. Each ``pump``:

1. collects finished results (``executor.poll``; waits up to ``timeout`` only when asked to);
2. regenerates when ``regenerate_after`` simulations have finished since the last generation
   (or at once when the ahead buffer is empty and budget remains): a breeder that declares
   ``rewrites_unsubmitted`` (OGAS, Melissa's ``next_parameters`` /
   ``concretize_resampled_parameters``) writes a generation of
   ``generation_size`` at ids ``last_submitted + 1 …``, i.e. it rewrites only simulations not yet
   submitted (ids beyond the new generation stay queued behind it); a plain ask/tell breeder is
   asked only when the buffer is empty (its ids cannot be rewritten);
3. tops up: submits the head of the buffer until ``max_in_flight`` simulations are in flight.

Budget: a failed simulation (after the executor's retries) consumes its id like a successful
one; retries never take new ids. The run's simulations are done when every id is submitted and
nothing is in flight (:attr:`done`). Failures are kept as records (id, parameters, reason,
attempts) for the summary.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from nearpole_exp.acquisition.base import Breeder
from nearpole_exp.errors import check
from nearpole_exp.execution.base import Executor, SimulationResult

log = logging.getLogger(__name__)
LOGGED_FAILURES = 20  # failed simulations logged one by one; the rest are in summary.json

@dataclass
class FeedConfig:
    """``generation_size`` points per breeder generation; a new one after ``regenerate_after``
    finished simulations (0: ``generation_size``); at most ``max_in_flight`` simulations
    submitted and unfinished (0: twice the executor's capacity)."""

    generation_size: int = 64
    regenerate_after: int = 0
    max_in_flight: int = 0

    def __post_init__(self) -> None:
        check(self.generation_size >= 1, "generation_size",
              f"must be >= 1, got {self.generation_size}")
        check(self.regenerate_after >= 0, "regenerate_after",
              f"must be >= 0 (0: generation_size), got {self.regenerate_after}")
        check(self.max_in_flight >= 0, "max_in_flight",
              f"must be >= 0 (0: twice the executor's capacity), got {self.max_in_flight}")


class SimulationFeed:
    """Drives an executor from a breeder for ``budget`` simulations (see the module docstring)."""

    def __init__(self, executor: Executor, breeder: Breeder, budget: int,
                 config: FeedConfig | None = None, **overrides: Any) -> None:
        self.config = dataclasses.replace(config or FeedConfig(), **overrides)
        check(budget >= 0, "budget", f"must be >= 0, got {budget}")
        self.executor = executor
        self.breeder = breeder
        self.budget = int(budget)
        self.rewrites = breeder.capabilities.rewrites_unsubmitted
        self.n_submitted = 0
        self.n_finished = 0
        self.generations = 0
        self.n_rewritten = 0
        self.pump_s = 0.0
        self.failures: list[dict[str, Any]] = []
        self._since_generation = 0
        self._ahead_ids = torch.empty(0, dtype=torch.long)
        self._ahead = torch.empty(0, breeder.dim)
        self._flight: dict[int, Tensor] = {}
        self._resubmit: list[tuple[int, Tensor]] = []

    @property
    def max_in_flight(self) -> int:
        return self.config.max_in_flight or max(2 * self.executor.capacity, 1)

    @property
    def done(self) -> bool:
        """Every id submitted and every result received."""
        return self.n_submitted >= self.budget and not self._flight and not self._resubmit

    def _log_failure(self, res: SimulationResult) -> None:
        """One warning per failed simulation (its reason), up to LOGGED_FAILURES of them."""
        n = len(self.failures)
        if n <= LOGGED_FAILURES:
            log.warning("simulation %d %s failed: %s%s", res.sim_id,
                        [round(float(v), 6) for v in res.params.tolist()], res.failure,
                        "; further failures go to summary.json only" if n == LOGGED_FAILURES
                        else "")

    def pump(self, timeout: float = 0.0) -> list[SimulationResult]:
        """Collect finished simulations (waiting up to ``timeout`` s when none is ready),
        regenerate if due, and top the executor up; returns the results in completion order.
        ``pump_s`` adds up the time spent here (waiting, submitting, in-process labelling,
        generating): the part of a training loop's idle time the simulations cause."""
        start = time.perf_counter()
        self._top_up()
        results = self.executor.poll(timeout if self._flight else 0.0)
        for res in results:
            self._flight.pop(res.sim_id, None)
            if not res.ok:
                self.failures.append(res.record())
                self._log_failure(res)
        self.n_finished += len(results)
        self._since_generation += len(results)
        due = self.config.regenerate_after or self.config.generation_size
        if self.rewrites and self._since_generation >= due and self.n_submitted < self.budget:
            self._generate()
        self._top_up()
        self.pump_s += time.perf_counter() - start
        return results

    def _top_up(self) -> None:
        room = self.max_in_flight - self.executor.in_flight()
        if self._resubmit and room > 0:
            again, self._resubmit = self._resubmit[:room], self._resubmit[room:]
            self._submit(torch.tensor([i for i, _ in again]), torch.stack([p for _, p in again]))
            room -= len(again)
        if room <= 0 or self.n_submitted >= self.budget:
            return
        if len(self._ahead_ids) == 0:
            self._generate()
        take = min(room, len(self._ahead_ids))
        ids, params = self._ahead_ids[:take], self._ahead[:take]
        self._ahead_ids, self._ahead = self._ahead_ids[take:], self._ahead[take:]
        self.n_submitted += take
        self._submit(ids, params)

    def _submit(self, ids: Tensor, params: Tensor) -> None:
        if len(ids):
            self._flight.update(zip(ids.tolist(), params, strict=True))
            self.executor.submit(ids, params)

    def _generate(self) -> None:
        """Write the next generation at the first unsubmitted id (see the module docstring)."""
        k = min(self.config.generation_size, self.budget - self.n_submitted)
        if k <= 0:
            return
        if self.rewrites:
            gen = self.breeder.next_generation(k, after=self.n_submitted - 1)
            last = int(gen.ids[-1])
            keep = self._ahead_ids > last
            self.n_rewritten += int((self._ahead_ids <= last).sum())
            self._ahead_ids = torch.cat([gen.ids, self._ahead_ids[keep]])
            self._ahead = torch.cat([gen.points.float(), self._ahead[keep]])
        elif len(self._ahead_ids) == 0:
            if self.breeder.n_asked != self.n_submitted:
                raise RuntimeError(f"breeder has asked {self.breeder.n_asked} points but "
                                   f"{self.n_submitted} were submitted: the feed must be the "
                                   "breeder's only user")
            gen = self.breeder.next_generation(k)
            self._ahead, self._ahead_ids = gen.points.float(), gen.ids
        else:
            return
        self.generations += 1
        self._since_generation = 0

    def metrics(self) -> dict[str, float]:
        """``sims/*`` counters for the round log and the summary."""
        counts = {"submitted": self.n_submitted, "finished": self.n_finished,
                  "failed": len(self.failures), "in_flight": len(self._flight),
                  "generations": self.generations, "rewritten": self.n_rewritten}
        out = {f"sims/{k}": float(v) for k, v in counts.items()}
        out["time/feed_s"] = self.pump_s
        return out

    def state_dict(self) -> dict[str, Any]:
        """Counters, the ahead buffer, failures and the simulations in flight (which a resumed run
        submits again: their results died with the old executor)."""
        flight = sorted(self._flight.items()) + self._resubmit
        return {"n_submitted": self.n_submitted, "n_finished": self.n_finished,
                "generations": self.generations, "rewritten": self.n_rewritten,
                "since_generation": self._since_generation,
                "pump_s": self.pump_s, "failures": [dict(f) for f in self.failures],
                "ahead_ids": self._ahead_ids.clone(), "ahead": self._ahead.clone(),
                "flight_ids": torch.tensor([i for i, _ in flight], dtype=torch.long),
                "flight_params": (torch.stack([p for _, p in flight]) if flight
                                  else torch.empty(0, self._ahead.shape[1]))}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.n_submitted = int(state["n_submitted"])
        self.n_finished = int(state["n_finished"])
        self.generations = int(state["generations"])
        self.n_rewritten = int(state["rewritten"])
        self._since_generation = int(state["since_generation"])
        self.pump_s = float(state["pump_s"])
        self.failures = [dict(f) for f in state["failures"]]
        self._ahead_ids, self._ahead = state["ahead_ids"].long(), state["ahead"].float()
        self._flight = {}
        self._resubmit = list(zip(state["flight_ids"].tolist(), state["flight_params"],
                                  strict=True))
