"""The signals that stop a running loop, so that it ends ``interrupted`` with its checkpoint
instead of dying mid-write, and (in a submitit job) is requeued to resume.

SIGTERM (Slurm's ``scancel``, ``timeout``, a stopped sweep) raises :class:`Terminated` in the
loop. In a submitit job, so does submitit's preemption signal (``SUBMITIT_PREEMPT_SIGNAL``, USR2
by default; Slurm sends it before the time limit and on preemption): once the run has saved
itself, the signal goes on to submitit's own handler, which calls the launcher's checkpoint hook
and requeues the job; the requeued job finds ``checkpoints/last.pt`` in its directory and
resumes exactly. On Slurm, SIGTERM is left to submitit (which ignores it: Slurm sends it before a
preemption, and the requeue comes with the preemption signal).
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from types import FrameType
from typing import Any

from nearpole_exp.errors import Terminated

log = logging.getLogger(__name__)


def preemption_signal() -> int | None:
    """The signal submitit's job handler requeues on, or None outside a submitit job."""
    if not os.environ.get("SUBMITIT_EXECUTOR"):
        return None
    return getattr(signal, "SIG" + os.environ.get("SUBMITIT_PREEMPT_SIGNAL", "USR2"), None)


class StopSignals:
    """Install with :meth:`install` when the loop starts (main thread only); :meth:`release`
    after the run saved itself restores the previous handlers and, when the job was preempted,
    hands the signal on to submitit (which requeues the job and exits)."""

    def __init__(self) -> None:
        self.previous: dict[int, Any] = {}
        self.preempted: int | None = None

    def install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        preempt = preemption_signal()
        watched = [preempt] if preempt is not None else []
        if os.environ.get("SUBMITIT_EXECUTOR") != "slurm":
            watched.append(signal.SIGTERM)
        for signum in watched:
            self.previous[signum] = signal.signal(signum, self._stop)

    def _stop(self, signum: int, frame: FrameType | None) -> None:
        # once: a second signal (a launcher stopping its workers too) must not cut short the
        # writing of the interrupted run's summary and checkpoint
        for watched in self.previous:
            signal.signal(watched, signal.SIG_IGN)
        name = signal.Signals(signum).name
        if signum == preemption_signal():
            self.preempted = signum
            raise Terminated(f"preempted ({name}): saved, requeueing")
        raise Terminated(f"stopped by signal {name}")

    def release(self) -> None:
        """Restore the handlers; a preempted job's signal then reaches submitit's handler."""
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)
        handler = self.previous.get(self.preempted) if self.preempted is not None else None
        self.previous = {}
        if callable(handler):
            log.warning("preempted: the run saved itself as interrupted; submitit requeues the "
                        "job, which resumes from its checkpoint")
            handler(self.preempted, None)  # submitit: checkpoint hook, requeue, exit
