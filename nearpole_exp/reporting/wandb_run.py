"""Weights & Biases, one run per job, that never stops a run when W&B misbehaves.

The mode comes from ``logger.mode``, else ``WANDB_MODE``, else ``online`` when an API key is
configured and ``offline`` when none is. If ``init`` fails online it falls back to offline,
and if that fails too, to no W&B at all; any later W&B error disables logging with one warning.
"""

from __future__ import annotations

import fnmatch
import logging
import netrc
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)
_VALID_MODES = ("online", "offline", "disabled", "dryrun", "run", "shared")


#: Metrics whose goal is a minimum: their W&B summary keeps the min and the last value.
MINIMISED = ("eval/mse", "eval/relerr_median/*", "eval/bucket_mse/*", "eval/nrmse_*",
             "eval/ple", "eval/near_relerr_median", "train/loss")


def has_api_key() -> bool:
    """Whether a W&B API key is configured (environment or ~/.netrc)."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    host = os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai").split("://")[-1].split("/")[0]
    try:
        rc_path = os.environ.get("NETRC", os.path.expanduser("~/.netrc"))
        return netrc.netrc(rc_path).authenticators(host) is not None
    except (OSError, netrc.NetrcParseError):
        return False


def resolve_mode(configured: str | None) -> str:
    """online / offline / disabled, from config, environment and credentials, in that order."""
    if configured:
        return configured
    env = os.environ.get("WANDB_MODE", "").strip().lower()
    if "WANDB_MODE" in os.environ and env not in _VALID_MODES:
        log.warning("ignoring WANDB_MODE=%r (not one of %s)", os.environ["WANDB_MODE"], _VALID_MODES)
        del os.environ["WANDB_MODE"]
    if env in ("offline", "dryrun"):
        return "offline"
    if env in ("disabled", "online"):
        return env
    if env == "run":
        return "online"
    return "online" if has_api_key() else "offline"


def describe(err: BaseException) -> str:
    """An exception as ``Type: message`` (W&B's own errors often have an empty message)."""
    text = str(err).strip()
    return f"{type(err).__name__}: {text}" if text else f"{type(err).__name__} (no message)"


class WandbRun:
    """A thin, failure-proof wrapper around one ``wandb`` run."""

    def __init__(self, *, project: str, entity: str | None, group: str | None, job_type: str | None,
                 name: str | None, tags: list[str], config: dict[str, Any], output_dir: str,
                 mode: str | None, run_id: str | None, init_timeout: float) -> None:
        self.run: Any = None
        self._goals: set[str] = set()
        self.mode = resolve_mode(mode)
        if self.mode == "disabled":
            return
        kwargs = dict(project=project, entity=entity, group=group, job_type=job_type, name=name,
                      tags=tags or None, config=config, dir=output_dir, id=run_id,
                      resume="allow" if run_id else None)
        for mode in (self.mode, "offline") if self.mode == "online" else (self.mode,):
            self.run = self._init(mode, init_timeout, kwargs)
            if self.run is not None:
                self.mode = mode
                break
        if self.run is None:
            self.mode = "disabled"
            return
        self._call(self.run.define_metric, "step")
        self._call(self.run.define_metric, "round")
        self._call(self.run.define_metric, "*", step_metric="step")


    @staticmethod
    def _init(mode: str, timeout: float, kwargs: dict[str, Any]) -> Any:
        """``wandb.init``, retried while a resumed run's id is still held by a killed job's W&B
        service (it notices its parent died within seconds); None when W&B cannot start."""
        deadline = time.monotonic() + min(timeout, 15.0)
        while True:
            try:
                import wandb

                Path(kwargs["dir"]).mkdir(parents=True, exist_ok=True)
                settings = wandb.Settings(init_timeout=timeout, console="off", silent=True)
                return wandb.init(mode=mode, reinit="finish_previous", settings=settings, **kwargs)
            except Exception as err:  # W&B unreachable or misconfigured: never fatal
                if "in use" in str(err) and time.monotonic() < deadline:
                    time.sleep(1.0)
                    continue
                server = os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")
                where = f" (server {server})" if mode == "online" else ""
                log.warning("W&B init failed in %s mode%s: %s; continuing without it", mode, where,
                            describe(err))
                return None

    @property
    def id(self) -> str | None:
        return None if self.run is None else str(self.run.id)

    def _call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        if self.run is None:
            return None
        try:
            return fn(*args, **kwargs)
        except Exception as err:
            log.warning("W&B call failed: %s; W&B logging is off for the rest of this job",
                        describe(err))
            self.run = None
            return None

    def log(self, metrics: dict[str, Any], step: int) -> None:
        if self.run is None:
            return
        for key in metrics:  # W&B's glob definitions do not carry summaries: one per new key
            if key not in self._goals and any(fnmatch.fnmatch(key, p) for p in MINIMISED):
                self._goals.add(key)
                for kind in ("min", "last"):  # errors: the best value and the final one
                    self._call(self.run.define_metric, key, step_metric="step", summary=kind)
        self._call(self.run.log, {**metrics, "step": step})

    def log_histogram(self, key: str, values: np.ndarray, step: int, bins: int = 64) -> None:
        if self.run is None or values.size == 0:
            return
        import wandb

        finite = values[np.isfinite(values)]
        if finite.size:
            hist = self._call(wandb.Histogram, np_histogram=np.histogram(finite, bins=bins))
            if hist is not None:
                self.log({key: hist}, step)

    def log_images(self, paths: list[str], step: int) -> None:
        if self.run is None or not paths:
            return
        import wandb

        images = {f"plots/{Path(p).stem}": self._call(wandb.Image, p) for p in paths}
        self.log({k: v for k, v in images.items() if v is not None}, step)

    def log_table(self, key: str, columns: list[str], rows: list[list[Any]]) -> None:
        """A W&B Table under ``key``."""
        if self.run is None:
            return
        import wandb

        table = self._call(wandb.Table, columns=columns, data=rows)
        if table is not None:
            self._call(self.run.log, {key: table})

    def log_bar_chart(self, key: str, columns: list[str], rows: list[list[Any]], x: str, y: str,
                      step: int) -> None:
        """A W&B Table under ``key`` and a bar chart of column ``y`` against ``x`` under ``key/chart``."""
        if self.run is None:
            return
        import wandb

        table = self._call(wandb.Table, columns=columns, data=rows)
        if table is None:
            return
        chart = self._call(wandb.plot.bar, table, x, y, title=key)
        self.log({key: table, **({f"{key}/chart": chart} if chart is not None else {})}, step)

    def update_config(self, values: dict[str, Any]) -> None:
        if self.run is not None:
            self._call(self.run.config.update, values, allow_val_change=True)

    def summarize(self, summary: dict[str, Any]) -> None:
        """The end-of-job values; metrics with a goal keep the min/last W&B made of their history."""
        if self.run is not None:
            kept = {k: v for k, v in summary.items() if k not in self._goals}
            self._call(self.run.summary.update, kept)

    def log_files(self, name: str, kind: str, paths: list[Path]) -> None:
        """One artifact ``name`` of type ``kind`` holding ``paths`` (offline it syncs later)."""
        if self.run is None or not paths:
            return
        import wandb

        artifact = self._call(wandb.Artifact, name=name, type=kind)
        if artifact is None:
            return
        for path in paths:
            self._call(artifact.add_file, str(path))
        self._call(self.run.log_artifact, artifact)

    def location(self) -> str | None:
        """Where this run lives: its URL online; offline, its directory and how to sync it."""
        if self.run is None:
            return None
        if self.mode == "online":
            return f"W&B run: {self.run.url}"
        folder = Path(self.run.dir).parent
        return f"W&B run (offline): {folder}; upload it with: wandb sync {folder}"

    def finish(self, exit_code: int) -> None:
        if self.run is not None:
            self._call(self.run.finish, exit_code=exit_code)
            self.run = None
