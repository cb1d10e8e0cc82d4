"""The Hydra task: validate the composed config, print it, run the job."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf, open_dict

from nearpole_exp.atomic import save_json
from nearpole_exp.config import register_configs, restore_schema, validate
from nearpole_exp.errors import ConfigError, DirectoryInUse
from nearpole_exp.reporting.console import print_config
from nearpole_exp.runner import Runner

log = logging.getLogger("nearpole_exp")

register_configs()


def slug(text: str) -> str:
    """A directory-name-safe form of an override string (``ogas/breeder=ogas`` → ``ogas.breeder=ogas``)."""
    return str(text).replace("/", ".").replace(",", "_").replace(" ", "") or "default"


if not OmegaConf.has_resolver("slug"):
    OmegaConf.register_new_resolver("slug", slug)


def _status(output_dir: Path) -> str | None:
    try:
        return json.loads((output_dir / "summary.json").read_text()).get("status")
    except (OSError, ValueError):
        return None


def record_failure(output_dir: Path, err: BaseException) -> None:
    """A ``failed`` summary.json for a job that died before its runner could write one."""
    save_json({"status": "failed", "error": f"{type(err).__name__}: {err}"}, output_dir / "summary.json")


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
    print_config(cfg, output_dir / "config_tree.log")
    try:
        runner = Runner(cfg, output_dir)
    except ConfigError as err:  # values only the built problem reveals, e.g. model.context_dims
        return _invalid(err, hc.mode, output_dir)
    try:
        summary = runner.run()
    except DirectoryInUse as err:  # the directory is another run's: write nothing into it
        log.error("%s", err)
        if hc.mode == RunMode.RUN:
            raise SystemExit(2) from None
        return float("nan")
    except Exception as err:
        if not (output_dir / "summary.json").exists() or _status(output_dir) != "failed":
            record_failure(output_dir, err)
        if hc.mode == RunMode.RUN:
            raise
        log.exception("job failed; the sweep goes on (its summary.json says failed)")
        return float("nan")
    keys = ("eval/nrmse_mean", "eval/mse") if cfg.objective == "auto" else (cfg.objective,)
    for key in keys:
        if isinstance(summary.get(key), float):
            return summary[key]
    return None
