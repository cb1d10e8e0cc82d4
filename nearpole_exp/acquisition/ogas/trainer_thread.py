"""A background thread that repeatedly calls a training step, with bounded work and error relay.

Threads and cores: torch ops release the GIL, so the trainer's matmuls overlap the caller's own
training. On a small CPU (2 cores) the two compete for the same cores; ``num_threads`` (default 1
in BreederConfig) is applied with ``torch.set_num_threads`` *inside* the worker thread. With the
OpenMP build of torch that setting is per thread (checked: the caller's ``get_num_threads()`` is
unchanged), so the surrogate keeps its own thread count while the breeder uses one core.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import torch

from nearpole_exp.errors import BackgroundThreadError


class BackgroundTrainer:
    """Calls ``step_fn`` on a daemon thread, a budget of steps at a time, until closed.

    :meth:`refill` hands the worker ``n`` steps; it runs them and sleeps until the next refill.
    ``step_fn`` returns True when it made a step and False when it has no data (the rest of the
    budget is then dropped). :meth:`wait_idle` blocks until the budget is spent, so a caller that
    refills at fixed points and waits before reading the model sees the same model every run.
    Each step runs under :attr:`lock`; hold it to read the model consistently. An exception in
    the thread is stored and re-raised by :meth:`raise_if_failed` as BackgroundThreadError.
    """

    def __init__(self, step_fn: Callable[[], bool], *, num_threads: int = 0, sleep_s: float = 0.0,
                 name: str = "ogas-trainer") -> None:
        self.step_fn = step_fn
        self.num_threads = int(num_threads)
        self.sleep_s = float(sleep_s)
        self.name = name
        self.lock = threading.RLock()
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._budget = 0
        self.steps = 0
        self.busy_s = 0.0  # thread CPU time spent in steps (time.thread_time of the worker)
        self.closed = False

    @property
    def started(self) -> bool:
        """Whether :meth:`start` launched a worker that was not closed since (alive or dead)."""
        return self._thread is not None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def pending(self) -> int:
        """Steps of the current budget not yet run."""
        with self._cond:
            return self._budget

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
        with self._cond:
            self._budget = 0

    def refill(self, n: int) -> None:
        """Give the worker ``n`` more steps to run (started if needed)."""
        with self._cond:
            self._budget += max(0, int(n))
            self._cond.notify_all()
        self.start()

    def raise_if_failed(self) -> None:
        """Re-raise, in the caller's thread, an exception the worker died of."""
        if self._error is not None:
            raise BackgroundThreadError(
                f"{self.name} failed: {type(self._error).__name__}: {self._error}"
            ) from self._error

    def run_inline(self, n: int) -> int:
        """Run up to ``n`` steps in the calling thread; stop early when data is lacking."""
        done = 0
        t0 = time.thread_time()
        for _ in range(n):
            with self.lock:
                if not self.step_fn():
                    break
            done += 1
        with self._cond:
            self.steps += done
            self.busy_s += time.thread_time() - t0
            self._cond.notify_all()
        return done

    def wait_idle(self, timeout: float) -> bool:
        """Block until the budget is spent (True), or the worker stops, or ``timeout`` passes
        (False); re-raises the worker's exception."""
        with self._cond:
            self._cond.wait_for(
                lambda: self._budget == 0 or self._error is not None or not self.running,
                timeout=timeout,
            )
            idle = self._budget == 0
        self.raise_if_failed()
        return idle

    def _wait_for_work(self) -> bool:
        """True when there is a step to run, False when stopping."""
        with self._cond:
            self._cond.wait_for(lambda: self._stop.is_set() or self._budget > 0)
            return not self._stop.is_set()

    def _loop(self) -> None:
        if self.num_threads > 0:
            torch.set_num_threads(self.num_threads)
        try:
            while self._wait_for_work():
                t0 = time.thread_time()
                with self.lock:  # the step and its count together: a reader under the lock
                    did = self.step_fn()  # sees steps and pending that match the model
                    with self._cond:
                        self.busy_s += time.thread_time() - t0
                        if did:
                            self.steps += 1
                            self._budget -= 1
                        else:
                            self._budget = 0
                        self._cond.notify_all()
                if self.sleep_s:
                    self._stop.wait(self.sleep_s)
        except BaseException as err:  # relayed to the caller by raise_if_failed
            with self._cond:
                self._error = err
                self._budget = 0
                self._cond.notify_all()
