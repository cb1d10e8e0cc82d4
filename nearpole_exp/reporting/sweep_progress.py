"""Where a job stands in its multirun: "job k/N", how many have finished, an ETA. Read from the
sweep directory (``multirun.yaml`` names the sweep; finished jobs leave a ``summary.json`` whose
status is not ``interrupted``), so it works the same under every launcher, one line per job."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep, RangeSweep
from omegaconf import OmegaConf


def count_jobs(overrides: list[str]) -> int | None:
    """Jobs a sweep of ``overrides`` makes (the product of its lists), None for sweeps Hydra
    expands otherwise (globs, a sweeper such as Optuna)."""
    total = 1
    for override in OverridesParser.create().parse_overrides(overrides):
        if not override.is_sweep_override():
            continue
        value = override.value()
        if isinstance(value, ChoiceSweep):
            total *= len(value.list)
        elif isinstance(value, RangeSweep):
            total *= len(list(override.sweep_iterator()))
        else:
            return None
    return total


def _duration(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


def _finished(summary: Path) -> bool:
    """Whether a job's summary says it ended (an ``interrupted`` job resumes: a requeued or
    relaunched one is not finished)."""
    try:
        return json.loads(summary.read_text()).get("status") != "interrupted"
    except (OSError, ValueError, AttributeError):
        return True  # unreadable: it was written, the job ended somehow


def sweep_position(sweep_dir: Path, job_num: int, sweeper: str = "") -> str:
    """``job k/N (m finished, ETA …)`` for job number ``job_num`` of the sweep in ``sweep_dir``."""
    multirun = sweep_dir / "multirun.yaml"
    total = None
    started = time.time()
    if multirun.is_file() and "basic" in sweeper.lower():
        saved = OmegaConf.load(multirun)
        total = count_jobs([str(o) for o in saved.hydra.overrides.task])
        started = multirun.stat().st_mtime
    done = sum(1 for path in sweep_dir.glob("*/summary.json") if _finished(path))
    line = f"job {job_num + 1}/{total if total else '?'} ({done} finished"
    elapsed = time.time() - started
    if total and done:
        eta = elapsed / done * max(total - done, 0)
        line += f", elapsed {_duration(elapsed)}, ETA ≈ {_duration(eta)}" if math.isfinite(eta) else ""
    return line + ")"
