"""The Hydra task: validate the composed config, hold the job directory, print the config, run the
job, and decide in one place how a job that fails ends (its summary and its exit code)."""

from __future__ import annotations

import json
import logging
import os
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, open_dict

from nearpole_exp.atomic import save_json
from nearpole_exp.config.discovery import job_choices, register_configs, restore_schema
from nearpole_exp.config.validate import validate, validate_overrides
from nearpole_exp.errors import (
    CheckpointError,
    ConfigError,
    DirectoryInUse,
    OutputError,
    ProblemError,
    Terminated,
)
from nearpole_exp.joblock import JobDirectoryLock
from nearpole_exp.reporting.console import print_config
from nearpole_exp.reporting.sweep_progress import sweep_position
from nearpole_exp.runner import Runner
from nearpole_exp.sweep_signals import in_launcher_worker

log = logging.getLogger("nearpole_exp")

register_configs()

#: Exit codes of an interrupted single run, as the shell reports a process ended by the signal
INTERRUPTED_BY_SIGTERM, INTERRUPTED_BY_CTRL_C = 143, 130

#: Errors a user acts on (a file, a checkpoint, a problem's contract): one line, exit code 1.
USER_ERRORS = (OutputError, CheckpointError, ProblemError)


class JobGuard:
    """How one job ends when it fails, decided here and nowhere else.

    A configuration error ends a single run with exit code 2 (one line, nothing written); an
    interrupted one (SIGTERM, Ctrl-C) with one line and 143 or 130, its summary saying so; a run
    whose directory another live run holds ends with exit code 2 and writes nothing; a user
    error (a file, a checkpoint, a problem's contract) ends with exit code 1 and one line;
    anything else with its traceback and exit code 1. In a sweep each of these is a failed job
    (its summary.json says so, NaN to the sweeper) and the sweep goes on.
    """

    def __init__(self, output_dir: Path, multirun: bool) -> None:
        self.output_dir = output_dir
        self.multirun = multirun

    def run(self, job: Callable[[], float | None]) -> float | None:
        """Run ``job`` under the directory's lock and end it as the class docstring says."""
        try:
            with JobDirectoryLock(self.output_dir):  # before anything is written into it
                return job()
        except ConfigError as err:  # a single run's directory stays as it was
            log.error("Invalid config: %s", err)
            return self._end(err if self.multirun else None, exit_code=2)
        except DirectoryInUse as err:  # the directory is another run's: write nothing into it
            log.error("%s", err)
            return self._end(None, exit_code=2)
        except USER_ERRORS as err:
            log.error("%s", err)
            return self._end(err, exit_code=1)
        except KeyboardInterrupt as err:  # SIGTERM or Ctrl-C; the runner saved it as interrupted
            if self.multirun and in_launcher_worker():  # a stopped sweep's worker ends with it
                logging.shutdown()
                os._exit(INTERRUPTED_BY_SIGTERM)
            if self.multirun:
                raise  # the sweep stops too
            log.error("%s: saved as interrupted; the same command resumes it",
                      str(err) or "interrupted")
            raise SystemExit(INTERRUPTED_BY_SIGTERM if isinstance(err, Terminated)
                             else INTERRUPTED_BY_CTRL_C) from None
        except Exception as err:
            if self.multirun:
                log.exception("job failed; the sweep goes on (its summary.json says failed)")
            else:
                log.error("%s", "".join(traceback.format_exception(err)).rstrip())
            return self._end(err, exit_code=1)

    def _end(self, err: BaseException | None, exit_code: int) -> float:
        """Record the failure ``err`` (None: write nothing; not twice) and end the job: a failed
        job in a sweep, the process's exit code in a single run."""
        if err is not None and self._status() != "failed":
            try:
                save_json({"status": "failed", "error": f"{type(err).__name__}: {err}"},
                          self.output_dir / "summary.json")
            except OSError as write_err:
                log.error("%s", write_err)
        if not self.multirun:
            raise SystemExit(exit_code) from None
        return float("nan")

    def _status(self) -> str | None:
        try:
            return json.loads((self.output_dir / "summary.json").read_text()).get("status")
        except (OSError, ValueError):
            return None


def _parallel_launcher(hc: Any) -> bool:
    """Whether jobs run in worker processes (joblib, submitit), where live bars only garble logs."""
    target = str(getattr(getattr(hc, "launcher", None), "_target_", ""))
    return "joblib" in target or "submitit" in target


def task(cfg: DictConfig) -> float | None:
    """Run one job; returns the ``objective`` metric (for sweepers that optimise, e.g. Optuna)."""
    hc = HydraConfig.get()
    output_dir = Path(hc.runtime.output_dir)
    return JobGuard(output_dir, hc.mode == RunMode.MULTIRUN).run(lambda: _job(cfg, hc, output_dir))


def _job(cfg: DictConfig, hc: Any, output_dir: Path) -> float | None:
    """Validate, print the config, run; returns the objective."""
    cfg = restore_schema(cfg)
    validate(cfg)
    validate_overrides(cfg, list(hc.overrides.task))
    if _parallel_launcher(hc) and cfg.trainer.progress:
        with open_dict(cfg):
            cfg.trainer.progress = False
    choices = job_choices(hc)
    position = None
    if hc.mode == RunMode.MULTIRUN:
        position = sweep_position(Path(hc.sweep.dir), int(hc.job.num),
                                  str(hc.sweeper.get("_target_", "")))
    print_config(cfg, output_dir / "config_tree.log", choices, list(hc.overrides.task), position)
    summary = Runner(cfg, output_dir).run()
    keys = ("eval/nrmse_mean", "eval/mse") if cfg.objective == "auto" else (cfg.objective,)
    for key in keys:
        if isinstance(summary.get(key), float):
            return summary[key]
    return None
