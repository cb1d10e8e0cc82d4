"""Where a job's numbers go: metrics.jsonl, summary.json, W&B and the console."""

from __future__ import annotations

import hashlib
import logging
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig, OmegaConf

from nearpole_exp import __version__
from nearpole_exp.atomic import append_jsonl, save_json
from nearpole_exp.reporting.console import (
    console,
    print_table,
    run_title,
    summary_table,
    to_log_file,
)
from nearpole_exp.reporting.wandb_run import WandbRun

log = logging.getLogger(__name__)

CHOICE_TAGS = ("problem", "model", "sampler", "curriculum", "gradient", "ogas/breeder", "experiment")
NRMSE_STATS = ("mean", "p50", "p95", "p99", "max", "std")


def comparison_tables(summary: dict[str, Any]) -> dict[str, tuple[list[str], list[list[Any]], str, str]]:
    """Per-bucket and nRMSE-quantile tables of a summary: key → (columns, rows, x, y) for bar charts."""
    tables: dict[str, tuple[list[str], list[list[Any]], str, str]] = {}
    if "eval/relerr_median/B0" in summary:
        rows = [[f"B{b}", summary.get(f"eval/relerr_median/B{b}"), summary.get(f"eval/bucket_mse/B{b}"),
                 summary.get(f"eval/bucket_count/B{b}")] for b in range(5)]
        columns = ["bucket", "relerr_median", "mse", "count"]
        tables["eval/buckets"] = (columns, rows, "bucket", "relerr_median")
    if "eval/nrmse_mean" in summary:
        rows = [[stat, summary.get(f"eval/nrmse_{stat}")] for stat in NRMSE_STATS]
        tables["eval/nrmse_quantiles"] = (["statistic", "nrmse"], rows, "statistic", "nrmse")
    return tables


def git_sha() -> str | None:
    """The git commit of nearpole_exp's own source: None unless the package is a tracked checkout
    (an installed wheel has no commit, only a version; a run from another repository does not
    record that repository's commit)."""
    source = Path(__file__).resolve().parents[1]
    try:
        tracked = subprocess.run(["git", "-C", str(source), "ls-files", "--error-unmatch",
                                  "__init__.py"], capture_output=True, timeout=5, check=False)
        if tracked.returncode != 0:
            return None
        out = subprocess.run(["git", "-C", str(source), "rev-parse", "HEAD"], capture_output=True,
                             text=True, timeout=5, check=False)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def sweep_identity(sweep_dir: str | Path, job_num: int) -> dict[str, Any]:
    """A multirun's id (from its directory: two sweeps never share one, a resumed sweep keeps
    its own) and this job's number in it."""
    folder = Path(sweep_dir).resolve()
    return {"id": hashlib.sha1(str(folder).encode()).hexdigest()[:8], "job": int(job_num),
            "dir": str(folder)}


def hydra_context() -> dict[str, Any]:
    """Hydra's override dirname and group choices for this job (empty outside Hydra)."""
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        from nearpole_exp.config.discovery import job_choices

        hc = HydraConfig.get()
    except (ImportError, ValueError):
        return {}
    choices = job_choices(hc)
    sweep = (sweep_identity(hc.sweep.dir, hc.job.get("num") or 0)
             if hc.mode == RunMode.MULTIRUN else None)
    return {"override_dirname": hc.job.override_dirname, "choices": choices, "sweep": sweep,
            "overrides": list(hc.overrides.task), "job_num": hc.job.get("num"),
            "mode": str(hc.mode)}


class Reporter:
    """Writes every logged record to ``metrics.jsonl`` and W&B; the summary to both at the end."""

    def __init__(self, cfg: DictConfig, output_dir: Path, run_id: str | None,
                 facts: dict[str, Any] | None = None) -> None:
        self.output_dir = output_dir
        self.metrics_path = output_dir / "metrics.jsonl"
        self.summary_path = output_dir / "summary.json"
        context = hydra_context()
        self.choices = context.get("choices", {})
        self.overrides: list[str] = context.get("overrides", [])
        lc = cfg.logger
        self.logger_config = lc
        sweep = context.get("sweep")
        point = context.get("override_dirname") or cfg.task_name
        group = lc.group or (f"{sweep['id']}-{point}" if sweep else point)
        self.group = group
        name = lc.name or f"{group}-s{cfg.seed}"
        config = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False)
        assert isinstance(config, dict)
        config.pop("hydra", None)
        config["choices"] = self.choices
        config["git_sha"] = git_sha()
        config["package_version"] = __version__
        config["sweep"] = sweep
        config.update(facts or {})
        choice_tags = [f"{k}:{v}" for k, v in sorted(self.choices.items())
                       if v is not None and k in CHOICE_TAGS]
        if lc.enabled:
            self.wandb = WandbRun(project=lc.project, entity=lc.entity, group=group,
                                  job_type=lc.job_type or cfg.task_name, name=name,
                                  tags=[*cfg.tags, *lc.tags, *choice_tags,
                                        *([f"sweep:{sweep['id']}"] if sweep else [])],
                                  config=config,
                                  output_dir=str(output_dir), mode=lc.mode, run_id=run_id,
                                  init_timeout=lc.init_timeout)
        else:
            self.wandb = WandbRun(project="", entity=None, group=None, job_type=None, name=None,
                                  tags=[], config={}, output_dir=str(output_dir), mode="disabled",
                                  run_id=None, init_timeout=1.0)
        self.log_histograms = lc.log_histograms
        self.log_plots = lc.log_plots

    @property
    def run_id(self) -> str | None:
        return self.wandb.id

    def log(self, metrics: dict[str, Any], step: int) -> None:
        """One record: appended to metrics.jsonl and sent to W&B."""
        record = {"step": step, **metrics}
        append_jsonl(record, self.metrics_path)
        self.wandb.log(metrics, step)

    def histogram(self, key: str, values: np.ndarray, step: int) -> None:
        if self.log_histograms:
            self.wandb.log_histogram(key, values, step)

    def images(self, paths: list[str], step: int) -> None:
        if self.log_plots:
            self.wandb.log_images(paths, step)

    def _log_provenance(self) -> None:
        """The job's config and its final checkpoint as W&B artifacts (the checkpoint only up to
        ``logger.checkpoint_artifact_mb``; 0 leaves it out)."""
        run_id = self.wandb.id
        if run_id is None:
            return
        config = [p for p in (self.output_dir / ".hydra" / "config.yaml",
                              self.output_dir / "config_tree.log") if p.is_file()]
        self.wandb.log_files(f"config-{run_id}", "config", config)
        ckpt = self.output_dir / "checkpoints" / "last.pt"
        cap = float(self.logger_config.checkpoint_artifact_mb)
        if ckpt.is_file() and cap > 0 and ckpt.stat().st_size <= cap * 2**20:
            self.wandb.log_files(f"checkpoint-{run_id}", "model", [ckpt])
        elif ckpt.is_file() and cap > 0:
            log.warning("checkpoint %s is over logger.checkpoint_artifact_mb=%g MB: not uploaded",
                        ckpt, cap)

    def finish(self, summary: dict[str, Any], failed: bool) -> None:
        """Write summary.json, push the summary (and comparison tables and charts) to W&B, print
        the end-of-job table."""
        summary = {**summary, "choices": self.choices, "wandb_mode": self.wandb.mode,
                   "wandb_run_id": self.wandb.id, "wandb_group": self.group}
        try:
            save_json(summary, self.summary_path)
        except OSError as err:  # a full disk must not hide the run's own error, or stop W&B
            log.error("%s", err)
            unsaved: OSError | None = err
        else:
            unsaved = None
        step = int(summary.get("step", 0) or 0)
        for key, (columns, rows, x, y) in comparison_tables(summary).items():
            self.wandb.log_bar_chart(key, columns, rows, x, y, step)
        self.wandb.summarize({k: v for k, v in summary.items() if not isinstance(v, dict)})
        self._log_provenance()
        where = self.wandb.location()
        self.wandb.finish(exit_code=1 if failed else 0)
        if where:
            console().print(where, highlight=False, soft_wrap=True)
            to_log_file(where)
        title = f"{run_title(self.overrides)}: {summary['status']}"
        print_table(summary_table(summary, title=title))
        if unsaved is not None and not failed:
            raise unsaved
