"""Acquisition, the loop's first lever: which points (simulation parameters) get labelled.

:class:`Acquisition` labels each round's points into the pool: the problem's prescribed design in
round 0 (where it has one), the breeder's generation, and the sampler's proposals (active
refinement). With an executor the breeder's generations go through the asynchronous feed
instead, and finished simulations join the pool between training steps. It also tells the
breeder how hard each trained-on sample was, and scores generations against the ideal placement
where the problem knows it.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import torch
from torch import Tensor

from nearpole_exp.acquisition.base import Breeder
from nearpole_exp.acquisition.feed import SimulationFeed
from nearpole_exp.acquisition.placement import PlacementLog
from nearpole_exp.execution.samples import merge_results
from nearpole_exp.pool import NO_SIM, Pool
from nearpole_exp.problems.base import Problem, Samples
from nearpole_exp.rng import child_generator
from nearpole_exp.sampling.base import BatchSampler

log = logging.getLogger(__name__)


class Acquisition:
    """Labels points into ``pool`` (see the module docstring). ``feed`` runs the breeder's
    generations on an executor (None: each round is labelled in-process before it trains)."""

    def __init__(self, problem: Problem, pool: Pool, breeder: Breeder, sampler: BatchSampler, *,
                 initial_points: int, points_per_round: int, dtype: torch.dtype,
                 device: torch.device, feed: SimulationFeed | None = None) -> None:
        self.problem, self.pool, self.breeder, self.sampler = problem, pool, breeder, sampler
        self.initial_points, self.points_per_round = initial_points, points_per_round
        self.dtype, self.device = dtype, device
        self.feed = feed
        self.breeder_s = 0.0  # time spent inside the breeder (ask, tell)
        # a breeder that keeps Breeder's no-op tell (the static designs) is not told anything:
        # computing the signal and looking up simulation ids each step cost 6 % of the step
        self._listens = type(breeder).tell is not Breeder.tell
        # told once per round (flush_tells), not per step: OGAS's tell took 0.3 ms of each step
        # (0.9 s of a 14 s profiled landscape run), and the round's sims give the same state
        # (Breeder.tell_many). With a feed, generations are drawn between steps: told at once.
        self._defer = self._listens and feed is None
        self._told: list[tuple[Tensor, Tensor]] = []
        ideal = problem.ideal_placement()
        if ideal is not None and feed is not None:
            log.warning("the placement diagnostic scores generations of executor=batched runs only: "
                        "this run (%s) has none", type(feed.executor).__name__)
            ideal = None
        self.placement = None if ideal is None else PlacementLog(ideal, problem.bounds)
        self._placement_record: dict[str, float] = {}

    # ------------------------------------------------------------------ labelling
    def acquire(self, round_idx: int) -> int:
        """Label round ``round_idx``'s points into the pool; returns how many were added."""
        if self.feed is not None:
            return self.pump(wait=len(self.pool) == 0)
        self.flush_tells()
        n = self.initial_points if round_idx == 0 else self.points_per_round
        added = 0
        prescribed = self.problem.initial_design(n, child_generator()) if round_idx == 0 and n else None
        if prescribed is not None:
            self._add(self.problem.label(prescribed.cpu()), NO_SIM, len(prescribed))
            added, n = len(prescribed), 0
        if n > 0:
            start = time.perf_counter()
            generation = self.breeder.next_generation(n)
            self.breeder_s += time.perf_counter() - start
            if self.placement is not None:
                self._placement_record = self.placement.record(
                    generation.points, self.breeder.bred_mask(generation.ids))
            self._add(self.problem.label(generation.points.cpu()), generation.ids)
            added += len(generation)
        if len(self.pool) and self.sampler.capabilities.proposes:
            proposed = self.sampler.propose(self.problem, self.pool, round_idx)
            if proposed is not None and len(proposed):
                self._add(self.problem.label(proposed.cpu()), NO_SIM, len(proposed))
                added += len(proposed)
        if len(self.pool) == 0:
            raise RuntimeError("the pool is empty after acquisition: every labelled sample was non-finite")
        return added

    def pump(self, wait: bool = False) -> int:
        """Move finished simulations into the pool and keep the executor fed (nothing without a
        feed); with ``wait``, block until the pool holds a sample. Returns the simulations added."""
        if self.feed is None:
            return 0
        added = 0
        while True:
            merged, ids = merge_results(self.feed.pump(timeout=1.0 if wait else 0.0))
            if merged is not None and len(ids):
                self._add(merged, ids)
                added += len(ids)
            if not wait or len(self.pool) > 0 or self.feed.done:
                break
        if len(self.pool) == 0:
            reasons = sorted({str(f["reason"]) for f in self.feed.failures})
            raise RuntimeError(f"no simulation succeeded ({len(self.feed.failures)} failed: "
                               f"{'; '.join(reasons[:3])[:400]}); every failure is in "
                               "summary.json (sims/failures)")
        return added

    def finish(self) -> None:
        """Wait for simulations still in flight (they count in the budget)."""
        if self.feed is not None and not self.feed.done:
            log.info("training finished with simulations in flight: waiting for them (budget accounting)")
            while not self.feed.done:
                self.pump(wait=True)

    def _add(self, samples: Samples, sim_ids: Tensor | int, n_points: int | None = None) -> None:
        """Append labelled samples of points with simulation ids ``sim_ids`` (``NO_SIM``: not
        the breeder's), in the run's precision and on its device."""
        if isinstance(sim_ids, int):
            sim_ids = torch.full((n_points or 0,), sim_ids, dtype=torch.long)
        samples.inputs = samples.inputs.to(self.dtype)
        samples.targets = samples.targets.to(self.dtype)
        self.pool.add(samples, sim_ids=sim_ids)
        self.pool.to(self.device)

    # ------------------------------------------------------------------ the breeder's signal
    def tell(self, idx: Tensor, prediction: Tensor, target: Tensor, losses: Tensor) -> None:
        """Tell the breeder how hard each trained-on sample of its simulations was (the problem's
        per-sample signal, else the training loss)."""
        if not self._listens:
            return
        signal = self.problem.per_sample_signal(prediction, target)
        if signal is None:
            signal = losses
        if self._defer:  # kept where they are (no host sync per step) until the flush
            self._told.append((self.pool.sim_ids[idx], signal))
            return
        sim_ids, simulated = self.pool.simulated(idx)
        if bool(simulated.any()):
            start = time.perf_counter()
            self.breeder.tell(sim_ids[simulated], signal.cpu()[simulated])
            self.breeder_s += time.perf_counter() - start

    def flush_tells(self) -> None:
        """Hand the breeder the signals of the steps since the last flush, as the consecutive
        tell calls they were (steps without simulated samples told nothing)."""
        if not self._told:
            return
        start = time.perf_counter()
        ids, signal = (torch.cat(parts).cpu() for parts in zip(*self._told, strict=True))
        calls = torch.repeat_interleave(torch.arange(len(self._told)),
                                        torch.tensor([len(t[0]) for t in self._told]))
        self._told.clear()
        keep = ids != NO_SIM
        if bool(keep.any()):
            self.breeder.tell_many(ids[keep], signal[keep], calls[keep])
        self.breeder_s += time.perf_counter() - start

    # ------------------------------------------------------------------ reports
    def round_metrics(self) -> dict[str, float]:
        """The breeder's, the feed's and this round's placement scores."""
        self.flush_tells()
        out = {**self.breeder.metrics(), **self._placement_record}
        self._placement_record = {}
        if self.feed is not None:
            out.update(self.feed.metrics())
        return out

    def failure_record(self) -> dict[str, Any]:
        """The failed simulations so far (for the summary of a run that stops early too)."""
        return {} if self.feed is None else {"sims/failures": list(self.feed.failures)}

    def summary(self, wall_s: float) -> dict[str, Any]:
        """What a finished run reports of its acquisition."""
        out: dict[str, Any] = {}
        self.flush_tells()
        if self.problem.capabilities.simulates:  # a pole problem's points are labels, not simulations
            metrics = self.breeder.metrics()
            # the loop's time in the breeder, and its generator's training CPU (on its thread
            # or in its process), so every run says what the breeder cost
            out.update({"time/breeder_s": self.breeder_s,
                        "time/generator_cpu_s": metrics.get("breeder/train_cpu_s", 0.0),
                        "breeder/simulations": self.breeder.n_asked, **metrics})
        if self.placement is not None:
            out.update(self.placement.summary())
        if self.feed is not None:
            out.update(self.feed.metrics())
            out.update(self.feed.executor.metrics())
            out["sims/failures"] = list(self.feed.failures)
            out["time/trainer_idle_fraction"] = self.feed.pump_s / max(wall_s, 1e-9)
        return out

    def plots(self, outdir: str) -> list[str]:
        paths = list(self.breeder.plots(outdir))
        if self.placement is not None:
            paths += self.placement.plot(outdir)
        return paths

    # ------------------------------------------------------------------ lifecycle and state
    def start(self) -> None:
        self.breeder.start()

    def close(self) -> None:
        self.breeder.close()
        if self.feed is not None:
            self.feed.executor.close()

    def components(self) -> dict[str, Any]:
        """The stateful parts (None where the run has none)."""
        return {"breeder": self.breeder, "feed": self.feed, "placement": self.placement}

    def state_dict(self) -> dict[str, Any]:
        return {"breeder_s": self.breeder_s}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.breeder_s = float(state["breeder_s"])
