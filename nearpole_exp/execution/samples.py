"""Per-simulation samples: run one simulation safely, ship its samples between processes as
NumPy arrays, split a batched label into simulations and merge results back for the pool."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from nearpole_exp.execution.base import SimulationResult
from nearpole_exp.problems.base import Problem, Samples

NONFINITE = "non-finite output"
Payload = dict[str, np.ndarray]


def crash_reason(err: BaseException) -> str:
    """``crashed: <ExceptionType>: <message>`` (first 300 characters of the message)."""
    return f"crashed: {type(err).__name__}: {str(err)[:300]}"


def timeout_reason(seconds: float) -> str:
    return f"timeout after {seconds:g}s"


def to_payload(samples: Samples) -> Payload:
    """Samples as plain NumPy arrays (pickle by value; no torch shared-memory handles)."""
    out = {"inputs": samples.inputs.detach().cpu().numpy(),
           "targets": samples.targets.detach().cpu().numpy()}
    for name in ("q", "distance"):
        value = getattr(samples, name)
        if value is not None:
            out[name] = value.detach().cpu().numpy()
    return out


def from_payload(payload: Payload) -> Samples:
    """Inverse of :func:`to_payload`; ``source`` is all 0 (one simulation)."""
    inputs = torch.from_numpy(payload["inputs"])
    q, dist = payload.get("q"), payload.get("distance")
    return Samples(inputs=inputs, targets=torch.from_numpy(payload["targets"]),
                   source=torch.zeros(inputs.shape[0], dtype=torch.long),
                   q=None if q is None else torch.from_numpy(q),
                   distance=None if dist is None else torch.from_numpy(dist))


def finite_per_source(samples: Samples, n: int) -> Tensor:
    """Whether every sample of each of the ``n`` sources is finite (inputs and targets), ``[n]``."""
    m = len(samples)
    bad = ~(torch.isfinite(samples.inputs.reshape(m, -1)).all(1)
            & torch.isfinite(samples.targets.reshape(m, -1)).all(1))
    return torch.bincount(samples.source[bad].long(), minlength=n)[:n] == 0


class BatchRows(Samples):
    """Samples ``start:stop`` of a batch grouped by source, sliced on first access: handing out
    thousands of per-simulation results costs no tensor work until someone reads them, and
    :func:`merge_results` puts them back together without copying per simulation."""

    def __init__(self, batch: Samples, start: int, stop: int) -> None:
        self.batch, self.start, self.stop = batch, start, stop
        self.cache: dict[str, Tensor | None] = {}
        self.modified = False

    def __len__(self) -> int:
        return self.stop - self.start

    def _get(self, name: str) -> Tensor | None:
        if name not in self.cache:
            if name == "source":
                self.cache[name] = torch.zeros(self.stop - self.start, dtype=torch.long)
            else:
                full = getattr(self.batch, name)
                self.cache[name] = None if full is None else full[self.start : self.stop]
        return self.cache[name]

    def _set(self, name: str, value: Tensor | None) -> None:
        self.cache[name] = value
        self.modified = True

    inputs = property(lambda self: self._get("inputs"), lambda self, v: self._set("inputs", v))
    targets = property(lambda self: self._get("targets"), lambda self, v: self._set("targets", v))
    source = property(lambda self: self._get("source"), lambda self, v: self._set("source", v))
    q = property(lambda self: self._get("q"), lambda self, v: self._set("q", v))
    distance = property(lambda self: self._get("distance"),
                        lambda self, v: self._set("distance", v))


def split_samples(samples: Samples, n: int) -> list[Samples]:
    """One Samples per source row 0…n−1 (sample order kept, ``source`` reset to 0), as lazy
    :class:`BatchRows` of the batch (grouped by source first when it is not)."""
    source = samples.source.long()
    if len(source) > 1 and not bool((source[1:] >= source[:-1]).all()):
        order = torch.argsort(source, stable=True)
        samples = Samples(inputs=samples.inputs[order], targets=samples.targets[order],
                          source=source[order],
                          q=None if samples.q is None else samples.q[order],
                          distance=None if samples.distance is None else samples.distance[order])
    ends = torch.bincount(source, minlength=n)[:n].cumsum(0).tolist()
    return [BatchRows(samples, start, stop)
            for start, stop in zip([0, *ends[:-1]], ends, strict=True)]


@dataclass
class Outcome:
    """What one attempt at one simulation produced (picklable: NumPy payload)."""

    payload: Payload | None
    failure: str | None
    wall_s: float


class SimulationTimeout(Exception):
    """Raised inside a simulation by the soft (SIGALRM) timeout."""


@contextmanager
def alarm(seconds: float) -> Iterator[None]:
    """Raise :class:`SimulationTimeout` after ``seconds`` in the main thread (no-op elsewhere,
    or for 0): a soft limit that only interrupts code that returns to the interpreter."""
    usable = seconds > 0 and threading.current_thread() is threading.main_thread()
    if not usable:
        yield
        return

    def _fire(signum: int, frame: object) -> None:
        raise SimulationTimeout

    previous = signal.signal(signal.SIGALRM, _fire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def simulate_one(problem: Problem, row: np.ndarray, nonfinite: str = "fail",
                 soft_timeout_s: float = 0.0) -> Outcome:
    """Label one parameter row; exceptions, a soft timeout and non-finite output become failures."""
    start = time.perf_counter()
    try:
        with alarm(soft_timeout_s):
            samples = problem.label(torch.from_numpy(np.asarray(row))[None])
    except SimulationTimeout:
        return Outcome(None, timeout_reason(soft_timeout_s), time.perf_counter() - start)
    except TimeoutError as err:  # the problem's own limit (e.g. a user solver's timeout_s)
        return Outcome(None, f"timeout: {err}", time.perf_counter() - start)
    except (Exception, SystemExit) as err:
        return Outcome(None, crash_reason(err), time.perf_counter() - start)
    wall = time.perf_counter() - start
    if nonfinite == "fail" and not bool(finite_per_source(samples, 1)[0]):
        return Outcome(None, NONFINITE, wall)
    return Outcome(to_payload(samples), None, wall)


def merge_results(results: list[SimulationResult]) -> tuple[Samples | None, Tensor]:
    """The successful results as one Samples (``source`` = index among them) and their sim ids,
    so a caller adds a whole batch with one ``pool.add(samples, n_points=len(ids))``."""
    ok = [r for r in results if r.samples is not None]
    ids = torch.tensor([r.sim_id for r in ok], dtype=torch.long)
    if not ok:
        return None, ids
    parts = [r.samples for r in ok]
    first = parts[0]
    if isinstance(first, BatchRows) and all(
            isinstance(p, BatchRows) and p.batch is first.batch and not p.modified for p in parts):
        return _gather_rows(first.batch, parts), ids  # type: ignore[arg-type]
    sizes = torch.tensor([len(s) for s in parts])  # type: ignore[arg-type]

    def cat(name: str) -> Tensor | None:
        values = [getattr(s, name) for s in parts]
        return None if any(v is None for v in values) else torch.cat(values)

    merged = Samples(inputs=cat("inputs"), targets=cat("targets"),  # type: ignore[arg-type]
                     source=torch.arange(len(ok)).repeat_interleave(sizes),
                     q=cat("q"), distance=cat("distance"))
    return merged, ids


def _gather_rows(batch: Samples, parts: list[BatchRows]) -> Samples:
    """The rows of ``parts`` taken from their common batch in one indexing per field."""
    starts = torch.tensor([p.start for p in parts])
    sizes = torch.tensor([p.stop for p in parts]) - starts
    total = int(sizes.sum())
    source = torch.arange(len(parts)).repeat_interleave(sizes)
    if total == len(batch) and bool((starts == sizes.cumsum(0) - sizes).all()):
        return Samples(batch.inputs, batch.targets, source, batch.q, batch.distance)
    idx = torch.arange(total) + (starts - (sizes.cumsum(0) - sizes)).repeat_interleave(sizes)

    def take(t: Tensor | None) -> Tensor | None:
        return None if t is None else t[idx]

    return Samples(batch.inputs[idx], batch.targets[idx], source, take(batch.q),
                   take(batch.distance))
