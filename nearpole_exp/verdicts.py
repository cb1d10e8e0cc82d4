"""Verdicts a finished run's summary carries beside its numbers: whether its training was what
the config asked for (``unstable``), and whether it learnt the poles (``fit/near_pole_failed``)."""

from __future__ import annotations

import logging
from typing import Any

from nearpole_exp.problems.base import Problem

log = logging.getLogger(__name__)


def stability(skipped: int, steps: int, max_fraction: float) -> dict[str, Any]:
    """Status ``unstable`` and a warning when more than ``max_fraction`` of the steps were skipped
    for a non-finite loss or gradient: the model is finite but its training was not what the
    config asked for."""
    fraction = skipped / max(steps, 1)
    if fraction <= max_fraction:
        return {}
    warning = (f"{skipped} of {steps} steps ({fraction:.1%}) were skipped for a non-finite loss "
               f"or gradient, above trainer.max_skipped_fraction={max_fraction:g}: lower "
               "trainer.lr or set trainer.grad_clip")
    log.warning("%s", warning)
    return {"status": "unstable", "warning": warning}


def fit_verdict(problem: Problem, metrics: dict[str, float]) -> dict[str, Any]:
    """``fit/near_pole_failed`` (and a warning saying why) on problems that know their poles: a
    run can complete and still not have learnt them."""
    if not problem.capabilities.knows_poles:
        return {}
    reason = problem.fit_verdict(metrics)
    if reason is not None:
        log.warning("the fit failed near the poles: %s", reason)
    return {"fit/near_pole_failed": reason is not None, "fit/near_pole_reason": reason or ""}
