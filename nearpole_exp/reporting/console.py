"""Rich console output: the config tree, a progress bar per job and an end-of-job table."""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import rich
from omegaconf import DictConfig, OmegaConf
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.syntax import Syntax
from rich.table import Table
from rich.tree import Tree

ORDER = ("problem", "model", "sampler", "curriculum", "gradient", "ogas", "trainer", "logger")


class BelowWarning(logging.Filter):
    """Passes INFO and below: warnings and errors go to stderr as whole lines instead."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno < logging.WARNING


def console() -> Console:
    """The shared global console (log handler and progress bars must use the same one)."""
    return rich.get_console()


def config_tree(cfg: DictConfig) -> Tree:
    """One branch per top-level key, holding its resolved YAML."""
    tree = Tree("CONFIG", style="bold")
    keys = [k for k in ORDER if k in cfg] + [k for k in cfg if k not in ORDER]
    for key in keys:
        node = cfg[key]
        text = OmegaConf.to_yaml(node, resolve=True) if OmegaConf.is_config(node) else str(node)
        tree.add(f"[bold]{key}[/bold]").add(Syntax(text.rstrip(), "yaml", theme="ansi_dark"))
    return tree


def print_config(cfg: DictConfig, save_to: Path | None) -> None:
    """Print the config tree and save a plain-text copy (``config_tree.log``)."""
    tree = config_tree(cfg)
    console().print(tree)
    if save_to is not None:
        recorder = Console(record=True, width=120, file=open("/dev/null", "w"))  # noqa: SIM115
        recorder.print(tree)
        save_to.write_text(recorder.export_text())


def progress(enabled: bool) -> Progress:
    """A progress bar over gradient steps, with the latest loss and round."""
    return Progress(
        TextColumn("[bold blue]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
        console=console(),
        disable=not enabled,
        transient=False,
    )


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return "—"
        return f"{value:.4g}"
    return str(value)


def summary_table(summary: dict[str, Any], title: str) -> Table:
    """The end-of-job table of the main metrics (eval/*, sampler/*, breeder/*, time/*)."""
    table = Table(title=title, show_lines=False)
    table.add_column("metric", style="cyan")
    table.add_column("value", justify="right")
    for key in sorted(summary):
        if key.split("/")[0] in ("eval", "sampler", "breeder", "time", "status", "train", "sims") \
                and not isinstance(summary[key], (list, dict)):
            table.add_row(key, _fmt(summary[key]))
    return table
