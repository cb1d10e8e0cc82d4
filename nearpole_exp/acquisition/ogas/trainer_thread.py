"""A background thread that repeatedly calls a training step, with bounded work and error relay.

Threads and cores: torch ops release the GIL, so the trainer's matmuls overlap the caller's own
training. On a small CPU (2 cores) the two compete for the same cores; ``num_threads`` (default 1
in BreederConfig) is applied with ``torch.set_num_threads`` *inside* the worker thread. With the
OpenMP build of torch that setting is per thread (checked: the caller's ``get_num_threads()`` is
unchanged), so the surrogate keeps its own thread count while the breeder uses one core.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import torch

from nearpole_exp.errors import BackgroundThreadError


class BackgroundTrainer:
    """Calls ``step_fn`` on a daemon thread until closed.

    ``step_fn`` returns True when it made a step and False when it lacks data; then the thread
    sleeps until :meth:`notify_data`. At most ``max_steps_per_round`` steps run between two calls
    of :meth:`refill` (one per generation), so the breeder cannot hog the CPU indefinitely.
    Each step runs under :attr:`lock`; hold it to read the model consistently. An exception in
    the thread is stored and re-raised by :meth:`raise_if_failed` as BackgroundThreadError.
    """

    def __init__(self, step_fn: Callable[[], bool], *, max_steps_per_round: int,
                 num_threads: int = 0, sleep_s: float = 0.0, name: str = "ogas-trainer") -> None:
        self.step_fn = step_fn
        self.max_steps_per_round = int(max_steps_per_round)
        self.num_threads = int(num_threads)
        self.sleep_s = float(sleep_s)
        self.name = name
        self.lock = threading.RLock()
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._budget = self.max_steps_per_round
        self._data_version = 0
        self._starved_at: int | None = None
        self.steps = 0
        self.closed = False

    @property
    def started(self) -> bool:
        """Whether :meth:`start` launched a worker that was not closed since (alive or dead)."""
        return self._thread is not None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        """Start the worker (no-op if running or closed)."""
        if self.closed or self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name=self.name, daemon=True)
        self._thread.start()

    def close(self, timeout: float = 30.0) -> None:
        """Stop and join the worker; idempotent. Steps can still be run inline afterwards."""
        self.closed = True
        thread = self._thread
        if thread is None:
            return
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        thread.join(timeout)
        if thread.is_alive():
            raise RuntimeError(f"{self.name} did not stop within {timeout} s")
        self._thread = None

    def notify_data(self) -> None:
        """New data arrived: wake a worker that was starved of data."""
        with self._cond:
            self._data_version += 1
            self._cond.notify_all()

    def refill(self) -> None:
        """A new round (generation) started: restore the step budget and wake the worker."""
        with self._cond:
            self._budget = self.max_steps_per_round
            self._data_version += 1
            self._cond.notify_all()

    def raise_if_failed(self) -> None:
        """Re-raise, in the caller's thread, an exception the worker died of."""
        if self._error is not None:
            raise BackgroundThreadError(
                f"{self.name} failed: {type(self._error).__name__}: {self._error}"
            ) from self._error

    def run_inline(self, n: int) -> int:
        """Run up to ``n`` steps in the calling thread; stop early when data is lacking."""
        done = 0
        for _ in range(n):
            with self.lock:
                if not self.step_fn():
                    break
            done += 1
            with self._cond:
                self.steps += 1
                self._cond.notify_all()
        return done

    def wait_for_steps(self, target: int, timeout: float) -> bool:
        """Block until ``steps >= target`` (True), or the worker stops, lacks data, or
        ``timeout`` passes (False)."""
        with self._cond:
            self._cond.wait_for(
                lambda: (self.steps >= target or self._error is not None or not self.running
                         or self._starved_at == self._data_version),
                timeout=timeout,
            )
            reached = self.steps >= target
        self.raise_if_failed()
        return reached

    def _has_work(self) -> bool:
        fed = self._starved_at is None or self._starved_at != self._data_version
        return self._budget > 0 and fed

    def _wait_for_work(self) -> int | None:
        """The data version seen when work is available, or None when stopping."""
        with self._cond:
            self._cond.wait_for(lambda: self._stop.is_set() or self._has_work())
            return None if self._stop.is_set() else self._data_version

    def _loop(self) -> None:
        if self.num_threads > 0:
            torch.set_num_threads(self.num_threads)
        try:
            while (version := self._wait_for_work()) is not None:
                with self.lock:
                    did = self.step_fn()
                with self._cond:
                    if did:
                        self.steps += 1
                        self._budget -= 1
                        self._starved_at = None
                    else:
                        self._starved_at = version
                    self._cond.notify_all()
                if self.sleep_s:
                    self._stop.wait(self.sleep_s)
        except BaseException as err:  # relayed to the caller by raise_if_failed
            with self._cond:
                self._error = err
                self._cond.notify_all()
