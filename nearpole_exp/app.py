"""The Hydra task: validate the composed config, print it, run the job."""

from __future__ import annotations

import logging
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from nearpole_exp.config import register_configs, validate
from nearpole_exp.errors import ConfigError
from nearpole_exp.reporting.console import print_config
from nearpole_exp.runner import Runner

log = logging.getLogger("nearpole_exp")

register_configs()


def task(cfg: DictConfig) -> float | None:
    """Run one job; returns ``eval/mse`` or ``eval/nrmse_mean`` (for sweepers that optimise)."""
    hc = HydraConfig.get()
    output_dir = Path(hc.runtime.output_dir)
    try:
        validate(cfg)
    except ConfigError as err:
        log.error("Invalid config: %s", err)
        if hc.mode == RunMode.RUN:
            raise SystemExit(2) from None
        raise
    print_config(cfg, output_dir / "config_tree.log")
    summary = Runner(cfg, output_dir).run()
    for key in ("eval/nrmse_mean", "eval/mse"):
        if isinstance(summary.get(key), float):
            return summary[key]
    return None
