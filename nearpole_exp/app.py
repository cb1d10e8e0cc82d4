"""The Hydra task: validate the composed config, print it, run the job."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, open_dict

from nearpole_exp.atomic import save_json
from nearpole_exp.config import register_configs, restore_schema, validate
from nearpole_exp.errors import (
    CheckpointError,
    ConfigError,
    DirectoryInUse,
    OutputError,
    ProblemError,
)
from nearpole_exp.joblock import JobDirectoryLock
from nearpole_exp.reporting.console import print_config
from nearpole_exp.reporting.sweep_progress import sweep_position
from nearpole_exp.runner import Runner

log = logging.getLogger("nearpole_exp")

register_configs()


#: Jobs this process has started: a Hydra error before the first one is a configuration error.
JOBS_STARTED = 0


def _status(output_dir: Path) -> str | None:
    try:
        return json.loads((output_dir / "summary.json").read_text()).get("status")
    except (OSError, ValueError):
        return None


def record_failure(output_dir: Path, err: BaseException) -> None:
    """A ``failed`` summary.json for a job that died before its runner could write one (logged
    instead when the directory cannot be written)."""
    try:
        save_json({"status": "failed", "error": f"{type(err).__name__}: {err}"},
                  output_dir / "summary.json")
    except OSError as write_err:
        log.error("%s", write_err)


def _parallel_launcher(hc: object) -> bool:
    """Whether jobs run in worker processes (joblib, submitit), where live bars only garble logs."""
    target = str(getattr(getattr(hc, "launcher", None), "_target_", ""))
    return "joblib" in target or "submitit" in target


def _invalid(err: ConfigError, mode: RunMode, output_dir: Path) -> float:
    """One line naming the key; exit 2 in a single run, a failed job (NaN) in a sweep."""
    log.error("Invalid config: %s", err)
    if mode == RunMode.RUN:
        raise SystemExit(2) from None
    record_failure(output_dir, err)
    return float("nan")


def task(cfg: DictConfig) -> float | None:
    """Run one job; returns the ``objective`` metric (for sweepers that optimise, e.g. Optuna)."""
    global JOBS_STARTED
    JOBS_STARTED += 1
    hc = HydraConfig.get()
    output_dir = Path(hc.runtime.output_dir)
    try:
        cfg = restore_schema(cfg)
        validate(cfg)
    except ConfigError as err:
        return _invalid(err, hc.mode, output_dir)
    if _parallel_launcher(hc) and cfg.trainer.progress:
        with open_dict(cfg):
            cfg.trainer.progress = False
    try:
        with JobDirectoryLock(output_dir):  # before anything is written into the directory
            choices = {k: v for k, v in hc.runtime.choices.items() if not k.startswith("hydra")}
            position = None
            if hc.mode == RunMode.MULTIRUN:
                position = sweep_position(Path(hc.sweep.dir), int(hc.job.num),
                                          str(hc.sweeper.get("_target_", "")))
            print_config(cfg, output_dir / "config_tree.log", choices, list(hc.overrides.task),
                         position)
            try:
                runner = Runner(cfg, output_dir)
                summary = runner.run()
            except ConfigError as err:  # values only the built problem or a checkpoint reveal
                return _invalid(err, hc.mode, output_dir)
    except DirectoryInUse as err:  # the directory is another run's: write nothing into it
        log.error("%s", err)
        if hc.mode == RunMode.RUN:
            raise SystemExit(2) from None
        return float("nan")
    except Exception as err:
        if not (output_dir / "summary.json").exists() or _status(output_dir) != "failed":
            record_failure(output_dir, err)
        if hc.mode == RunMode.RUN and isinstance(err, OutputError | CheckpointError | ProblemError):
            log.error("%s", err)  # a file to fix, not a bug: one line, no traceback
            raise SystemExit(1) from None
        if hc.mode == RunMode.RUN:
            raise
        log.exception("job failed; the sweep goes on (its summary.json says failed)")
        return float("nan")
    keys = ("eval/nrmse_mean", "eval/mse") if cfg.objective == "auto" else (cfg.objective,)
    for key in keys:
        if isinstance(summary.get(key), float):
            return summary[key]
    return None
