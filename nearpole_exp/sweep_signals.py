"""Stopping a sweep: SIGTERM to a multirun's process reaches the jobs its launcher started.

A launcher's worker processes (joblib's loky workers, local submitit jobs) do not die with the
process that launched them: after a SIGTERM (Slurm's preemption, ``timeout``) they went on
training as orphans. With this handler the launching process passes the signal to every
process it started, so each running job ends as ``interrupted`` with its checkpoint, waits for
them, and exits 143. Relaunching the same command with the same ``hydra.sweep.dir`` resumes
the interrupted jobs, skips the finished ones and starts the rest.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
from pathlib import Path
from types import FrameType

GRACE_S = 30.0  # how long jobs get to save themselves before they are killed
LAUNCHER_PID = "NEARPOLE_EXP_SWEEP_PID"  # the launching process, seen by its workers


def descendants(pid: int) -> list[int]:
    """Every living process below ``pid`` (children first), from /proc; [] where there is none."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").glob("[0-9]*"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            ppid = int(entry.joinpath("stat").read_text().rsplit(")", 1)[1].split()[1])
            parents.setdefault(ppid, []).append(int(entry.name))
    found, frontier = [], [pid]
    while frontier:
        children = [c for p in frontier for c in parents.get(p, [])]
        found += children
        frontier = children
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def _ignores(pid: int, signum: int) -> bool:
    """Whether process ``pid`` ignores ``signum`` (the SigIgn mask of /proc/<pid>/status)."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("SigIgn:"):
                return bool(int(line.split()[1], 16) >> (signum - 1) & 1)
    return False


def stop_descendants(signum: int, grace_s: float = GRACE_S) -> list[int]:
    """Send ``signum`` to every process this one started (SIGKILL to those that ignore it, such
    as resource trackers), wait up to ``grace_s`` for them to end, then SIGKILL the rest;
    returns the processes signalled."""
    pids: list[int] = []
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        fresh = [p for p in descendants(os.getpid()) if p not in pids]  # a launcher may respawn
        for pid in fresh:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL if _ignores(pid, signum) else signum)
        pids += fresh
        if not any(_alive(p) for p in pids):
            break
        time.sleep(0.1)
    for pid in pids:
        if _alive(pid):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
    return pids


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    pids = stop_descendants(signum)
    print(f"sweep stopped by SIGTERM: {len(pids)} processes of its jobs were stopped (running "
          "jobs saved as interrupted); the same command with the same hydra.sweep.dir resumes "
          "it", file=sys.stderr, flush=True)
    os._exit(128 + signum)


def install_sweep_stop() -> None:
    """In the process that launches a multirun: SIGTERM stops its jobs' processes too (Linux)."""
    if Path("/proc/self/stat").exists():
        os.environ[LAUNCHER_PID] = str(os.getpid())
        signal.signal(signal.SIGTERM, _on_sigterm)


def in_launcher_worker() -> bool:
    """Whether this process runs jobs for a multirun launched by another process (a worker
    that must end with its job when the sweep is stopped, not take the next one)."""
    launcher = os.environ.get(LAUNCHER_PID)
    return launcher is not None and launcher != str(os.getpid())
