"""Hydra callback: at the end of a multirun, compare its sweep points (table, CSV, markdown, PNGs).

Register it with ``conf/hydra/callbacks/compare.yaml`` (``# @package _global_``)::

    hydra:
      callbacks:
        compare:
          _target_: nearpole_exp.reporting.sweep_callback.CompareOnMultirunEnd
          baseline: sampler=uniform
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from nearpole_exp.reporting.comparison import compare_sweep, print_comparison
from nearpole_exp.reporting.console import console

log = logging.getLogger(__name__)


def _plain(value: Any) -> Any:
    """A YAML list (ListConfig) as a Python list; anything else unchanged."""
    return OmegaConf.to_container(value) if OmegaConf.is_config(value) else value


class CompareOnMultirunEnd(Callback):
    """Runs ``compare_sweep`` on ``hydra.sweep.dir`` after the last job and prints the table.

    It runs in the parent process (also under joblib) and reads only per-job files. A failed
    comparison is a warning, not a failed sweep; but when jobs failed (the task records them
    and lets the sweep go on), it lists them and ends the multirun with exit code 1.
    """

    def __init__(self, baseline: str | Sequence[str] | None = None,
                 metrics: Sequence[str] | None = None, by: str | Sequence[str] | None = None,
                 lower_is_better: bool = True, out: str | None = None) -> None:
        self.baseline = _plain(baseline)
        self.metrics = _plain(metrics)
        self.by = _plain(by)
        self.lower_is_better = bool(lower_is_better)
        self.out = out

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        """Compare the finished sweep, then exit with 1 if any job failed."""
        sweep_dir = Path(str(config.hydra.sweep.dir))
        try:
            result = compare_sweep(sweep_dir, baseline=self.baseline, metrics=self.metrics,
                                   out=self.out, lower_is_better=self.lower_is_better, by=self.by)
            print_comparison(result, console())
            log.info("sweep comparison written to %s", ", ".join(map(str, result.paths.values())))
            lc = config.get("logger")
            if lc is not None and lc.get("enabled") and result.n_completed:
                from nearpole_exp.reporting.comparison.wandb_log import log_comparison

                where = log_comparison(result, project=lc.project, entity=lc.get("entity"),
                                       mode=lc.get("mode"),
                                       init_timeout=float(lc.get("init_timeout", 30.0)))
                if where:
                    log.info("sweep comparison in %s", where)
        except Exception as err:
            log.warning("sweep comparison skipped: %s: %s", type(err).__name__, err)
        failed = failed_jobs(sweep_dir)
        if failed:
            for job_dir, error in failed:
                log.error("job failed: %s: %s", job_dir, error)
            raise SystemExit(1)


def failed_jobs(sweep_dir: Path) -> list[tuple[str, str]]:
    """(job directory, error) of every job under ``sweep_dir`` whose summary says ``failed``."""
    out = []
    for path in sorted(sweep_dir.rglob("summary.json")):
        try:
            summary = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if summary.get("status") == "failed":
            out.append((str(path.parent), str(summary.get("error", ""))))
    return out
