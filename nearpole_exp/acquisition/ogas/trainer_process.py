"""The generator's training in a child process: its steps on a core of their own, free of the
training loop's GIL, with the same steps, data and numbers as on the thread.

The parent keeps a mirror of the training state (what a generation samples from and a checkpoint
saves), loaded from the child after each budget of steps; the child gets each budget's frozen
data with it. Messages are torch-serialised states over a pipe (a budget's data and a state are
a few MB at most). The child is forked on the CPU (no second ``import torch``: about 1.5 s of
CPU on a 2-core machine) and spawned for CUDA, which cannot be forked.
"""

from __future__ import annotations

import contextlib
import io
import multiprocessing
import os
import pickle
import signal
import sys
import threading
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

import torch

from nearpole_exp.acquisition.ogas.config import ExperimentConfig
from nearpole_exp.acquisition.ogas.training import GeneratorTraining, TrainingData
from nearpole_exp.errors import BackgroundThreadError


def pack(obj: Any) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def unpack(blob: bytes) -> Any:
    return torch.load(io.BytesIO(blob), weights_only=True)


def _serve(conn: Connection, dim: int, config: ExperimentConfig, device: str, state: bytes,
           num_threads: int, sleep_s: float, inherited: Connection | None = None) -> None:
    """The child: run each budget of steps it is sent, answer state requests between steps."""
    if inherited is not None:  # a forked child's copy of the parent's end: closed, so that the
        inherited.close()  # parent's death is an EOF here and a send cannot block on a full pipe
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and closes us
    for sig in (signal.SIGTERM, signal.SIGUSR2):
        signal.signal(sig, signal.SIG_DFL)
    if num_threads > 0:
        torch.set_num_threads(num_threads)
    training = GeneratorTraining(dim, config, torch.device(device), torch.Generator(device),
                                 torch.Generator())
    training.load_state_dict(unpack(state))
    data: TrainingData | None = None
    budget = ran = 0
    cpu = 0.0
    parent = os.getppid()
    try:
        while True:
            if os.getppid() != parent:  # the parent was killed (a forked child holds both ends
                return  # of the pipe, so no EOF would come)
            if budget == 0 or conn.poll():
                if budget == 0 and not conn.poll(1.0):
                    continue
                try:
                    kind, *args = conn.recv()
                except EOFError:  # the parent is gone
                    return
                if kind == "train":
                    budget, ran, cpu = int(args[0]), 0, 0.0
                    data = TrainingData.from_state(unpack(args[1]))
                elif kind == "state":
                    conn.send(("state", budget, pack(training.state_dict())))
                elif kind == "load":
                    training.load_state_dict(unpack(args[0]))
                elif kind == "close":
                    return
                continue
            start = time.thread_time()
            did = training.step(data)
            cpu += time.thread_time() - start
            ran += int(did)
            budget = budget - 1 if did else 0
            if budget == 0:
                conn.send(("done", ran, cpu, pack(training.state_dict())))
                training.take_ess()  # handed over with the state
            if sleep_s:
                time.sleep(sleep_s)
    except BaseException as err:  # relayed to the parent, raised there as BackgroundThreadError
        try:
            pickle.dumps(err)
            relayed: BaseException | None = err
        except Exception:
            relayed = None
        with contextlib.suppress(OSError):
            conn.send(("error", f"{type(err).__name__}: {err}", relayed))


class ProcessTrainer:
    """The trainer thread's interface (trainer_thread.py) with the steps in a child process.

    ``training`` is the parent's mirror; ``data_fn`` gives the frozen data a budget trains on.
    """

    def __init__(self, training: GeneratorTraining, data_fn: Callable[[], TrainingData | None], dim: int,
                 config: ExperimentConfig, device: torch.device, *, num_threads: int = 1,
                 sleep_s: float = 0.0, name: str = "ogas-generator") -> None:
        self.training, self.data_fn = training, data_fn
        self.dim, self.config, self.device = dim, config, device
        self.num_threads, self.sleep_s, self.name = int(num_threads), float(sleep_s), name
        self.lock = threading.RLock()  # guards the mirror
        self._conn: Connection | None = None
        self._proc: multiprocessing.process.BaseProcess | None = None
        self._pending = 0
        self._error: str | None = None
        self._exception: BaseException | None = None  # the child's, when it could be pickled
        self.steps = 0
        self.busy_s = 0.0  # the child's CPU time in steps
        self.closed = False

    # ------------------------------------------------------------------ lifecycle
    @property
    def started(self) -> bool:
        return self._proc is not None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.is_alive()

    @property
    def pending(self) -> int:
        """Steps sent to the child and not yet reported done."""
        return self._pending

    @property
    def pid(self) -> int | None:
        return None if self._proc is None else self._proc.pid

    def start(self) -> None:
        """Start the child from the mirror's state (no-op if started or closed)."""
        if self.closed or self._proc is not None:
            return
        method = "fork" if self.device.type == "cpu" and sys.platform == "linux" else "spawn"
        ctx = multiprocessing.get_context(method)
        parent, child = ctx.Pipe()
        with self.lock:
            state = pack(self.training.state_dict())
        self._proc = ctx.Process(target=_serve, name=self.name, daemon=True,
                                 args=(child, self.dim, self.config, str(self.device), state,
                                       self.num_threads, self.sleep_s,
                                       parent if method == "fork" else None))
        self._proc.start()
        child.close()
        self._conn = parent

    def close(self, timeout: float = 30.0) -> None:
        """Stop the child; idempotent. Steps still run afterwards, in the caller, on the mirror."""
        self.closed = True
        proc, conn = self._proc, self._conn
        self._proc = self._conn = None
        self._pending = 0
        if conn is not None:
            with contextlib.suppress(OSError):
                conn.send(("close",))
            conn.close()
        if proc is not None:
            proc.join(timeout)
            if proc.is_alive():
                proc.kill()
                proc.join(timeout)

    # ------------------------------------------------------------------ work
    def refill(self, n: int) -> None:
        """Send the child ``n`` steps on the frozen data (started if needed)."""
        if n <= 0:
            return
        self.start()
        data = self.data_fn()
        self._send(("train", int(n), pack(None if data is None else data.state_dict())))
        self._pending += int(n)

    def run_inline(self, n: int) -> int:
        """Run ``n`` steps and wait for them (in the caller once closed); returns how many ran."""
        if n <= 0:
            return 0
        if self.closed:
            done = 0
            start = time.thread_time()
            with self.lock:
                data = self.data_fn()
                while done < n and self.training.step(data):
                    done += 1
            self.steps += done
            self.busy_s += time.thread_time() - start
            return done
        before = self.steps
        self.refill(n)
        try:
            idle = self.wait_idle(self.config.breeder.train_wait_timeout_s)
        except BackgroundThreadError as err:  # steps run inline fail as inline steps would
            raise (self._exception or err) from err
        if not idle:
            raise RuntimeError(f"the OGAS generator process did not finish its {n} steps within "
                               f"train_wait_timeout_s={self.config.breeder.train_wait_timeout_s} s")
        return self.steps - before

    def wait_idle(self, timeout: float) -> bool:
        """Block until the child has reported its budget done (True) or ``timeout`` passes
        (False); re-raises the child's failure."""
        deadline = time.monotonic() + timeout
        while self._pending:
            if not self._receive(max(0.0, deadline - time.monotonic())):
                self.raise_if_failed()
                return False
        self.raise_if_failed()
        return True

    def training_state(self) -> tuple[dict[str, Any], int]:
        """The training state as of now and the steps of the budget not yet run: the child's,
        between two steps, while it works (a checkpoint resumes from there), else the mirror."""
        self.raise_if_failed()
        with self.lock:
            mirror_ess = list(self.training.ess_seen)
            if not self._pending:
                return self.training.state_dict(), 0
        self._send(("state",))
        while True:
            reply = self._recv_blocking()
            if reply[0] == "state":
                state = self._with_mirror_view(unpack(reply[2]))
                state["ess_seen"] = mirror_ess + list(state["ess_seen"])
                return state, int(reply[1])
            self._handle(reply)
            if reply[0] == "done":
                mirror_ess = list(self.training.ess_seen)

    def load(self, state: dict[str, Any]) -> None:
        """The mirror was loaded with ``state``: the child (if any) takes it too."""
        if self._proc is not None:
            self._send(("load", pack(state)))

    def raise_if_failed(self) -> None:
        """Re-raise, in the caller, the child's exception or its death."""
        if self._error is None and self._conn is not None and self._conn.poll():
            self._receive(0.0)
        if self._error is None and self._proc is not None and not self._proc.is_alive():
            self._error = f"the process exited with code {self._proc.exitcode}"
        if self._error is not None:
            raise BackgroundThreadError(f"{self.name} failed: {self._error}") from self._exception

    # ------------------------------------------------------------------ messages
    def _send(self, message: tuple[Any, ...]) -> None:
        self.raise_if_failed()
        assert self._conn is not None
        try:
            self._conn.send(message)
        except OSError as err:
            self._error = f"{type(err).__name__}: {err}"
            self.raise_if_failed()

    def _recv_blocking(self) -> tuple[Any, ...]:
        assert self._conn is not None
        try:
            return self._conn.recv()
        except (EOFError, OSError):
            code = None if self._proc is None else self._proc.exitcode
            self._error = f"the process died (exit code {code})"
            self.raise_if_failed()
            raise AssertionError("unreachable") from None

    def _receive(self, timeout: float) -> bool:
        """Handle one message if one comes within ``timeout``; False if none came."""
        if self._conn is None or not self._conn.poll(timeout):
            return False
        self._handle(self._recv_blocking())
        return True

    def _handle(self, reply: tuple[Any, ...]) -> None:
        kind = reply[0]
        if kind == "error":
            self._error, self._exception = str(reply[1]), reply[2]
            self._pending = 0
        elif kind == "done":
            state = self._with_mirror_view(unpack(reply[3]))
            with self.lock:
                state["ess_seen"] = list(self.training.ess_seen) + list(state["ess_seen"])
                self.training.load_state_dict(state)
            self.steps += int(reply[1])
            self.busy_s += float(reply[2])
            self._pending = 0

    def _with_mirror_view(self, state: dict[str, Any]) -> dict[str, Any]:
        """``state`` with the ratio classifier's view of the mirror: the view is frozen by the
        parent at each generation, the child's copy never is."""
        ratio = self.training.ratio
        if ratio is not None and state.get("ratio") is not None:
            with self.lock:
                state["ratio"]["view"] = {k: v.clone() for k, v in ratio.view.state_dict().items()}
                state["ratio"]["view_steps"] = ratio.view_steps
        return state
