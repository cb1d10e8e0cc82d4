"""Rich console output: the config tree, a progress bar per job and an end-of-job table."""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path
from typing import Any

import rich
from omegaconf import DictConfig, OmegaConf
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.syntax import Syntax
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

file_log = logging.getLogger("nearpole_exp.console")
ORDER = ("problem", "model", "sampler", "curriculum", "gradient", "ogas", "trainer", "logger")


class BelowWarning(logging.Filter):
    """Passes INFO and below, except lines meant for the log file only: warnings and errors go
    to stderr as whole lines instead, and what the console printed itself is not repeated."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno < logging.WARNING and not getattr(record, "file_only", False)


def console() -> Console:
    """The shared global console (log handler and progress bars must use the same one)."""
    return rich.get_console()


def interactive() -> bool:
    """Whether the console is a terminal (else output goes to a file or a pipe: plain lines)."""
    return console().is_terminal


def console_handler(**kwargs: Any) -> logging.Handler:
    """The job logging's console handler: Rich's on a terminal; without one a plain stream
    handler on stdout, since Rich wraps at 80 columns there and splits paths mid-word."""
    if interactive():
        from rich.logging import RichHandler

        return RichHandler(**kwargs)
    return logging.StreamHandler(stream=console().file)


def config_tree(cfg: DictConfig) -> Tree:
    """One branch per top-level key, holding its resolved YAML."""
    tree = Tree("CONFIG", style="bold")
    keys = [k for k in ORDER if k in cfg] + [k for k in cfg if k not in ORDER]
    for key in keys:
        node = cfg[key]
        text = OmegaConf.to_yaml(node, resolve=True) if OmegaConf.is_config(node) else str(node)
        tree.add(f"[bold]{key}[/bold]").add(Syntax(text.rstrip(), "yaml", theme="ansi_dark"))
    return tree


#: Groups shown only when chosen away from their default, and the OGAS parts only with OGAS.
QUIET_DEFAULTS = {"ogas/breeder": "uniform", "executor": "batched", "experiment": None,
                  "debug": None, "hparams_search": None, "local": "default", "diagnostics": "default",
                  "callbacks": "none", "paths": "default"}
GROUP_ORDER = ("experiment", "debug", "problem", "model", "sampler", "curriculum", "gradient",
               "ogas/breeder", "ogas/model", "ogas/data", "executor", "trainer", "logger",
               "diagnostics", "callbacks", "paths", "hparams_search")
OGAS_PARTS = ("ogas/model", "ogas/data")


def run_title(overrides: list[str]) -> str:
    """What ran, in one line: the command line's own overrides (Hydra's left out)."""
    mine = [o for o in overrides if not o.lstrip("+~").startswith("hydra")]
    return " ".join(mine) if mine else "default run"


def option_line(choices: dict[str, Any]) -> str:
    """The options this run uses: every group, except quiet defaults and unused OGAS parts."""
    ogas = choices.get("ogas/breeder") == "ogas"
    rank = {g: i for i, g in enumerate(GROUP_ORDER)}
    ordered = sorted(choices.items(), key=lambda kv: rank.get(kv[0], len(rank)))
    shown = [f"{group}={option}" for group, option in ordered
             if not group.startswith("hydra")
             and not (group in QUIET_DEFAULTS and option == QUIET_DEFAULTS[group])
             and (ogas or group not in OGAS_PARTS)]
    return " ".join(shown)


def print_config(cfg: DictConfig, save_to: Path | None, choices: dict[str, Any] | None = None,
                 overrides: list[str] | None = None, position: str | None = None) -> None:
    """Print what this run uses in a few lines (its command-line overrides and chosen options,
    and in a multirun where the job stands) and write the full resolved tree to
    ``config_tree.log``; the lines also go to the log file."""
    lines = [f"[bold]nearpole_exp[/bold]: {run_title(overrides or [])}"]
    if position:
        lines[0] += f" — {position}"
    if choices:
        lines.append(f"options: {option_line(choices)}")
    if save_to is not None:
        lines.append(f"job directory: {save_to.parent} (full config: {save_to.name})")
    for line in lines:
        console().print(line, highlight=False, soft_wrap=True)
        to_log_file(Text.from_markup(line).plain)
    if save_to is not None:
        save_to.write_text(plain_text(config_tree(cfg)))


def print_table(table: Table) -> None:
    """Print a table and write its plain text to the log file."""
    console().print(table)
    to_log_file(plain_text(table).rstrip())


def plain_text(renderable: Any) -> str:
    """What Rich would print for ``renderable``, as plain text 120 columns wide (for files)."""
    with open(os.devnull, "w") as sink:
        recorder = Console(record=True, width=120, file=sink)
        recorder.print(renderable)
        return recorder.export_text()


def to_log_file(text: str) -> None:
    """Write ``text`` to the job's log file only (the console already shows it)."""
    file_log.info("%s", text, extra={"file_only": True})


def progress_line(text: str, enabled: bool) -> None:
    """A round's progress line: to the log file, and to the console when it has no live bar
    (``enabled`` progress without a terminal, where a bar would print only its last state)."""
    if enabled and not interactive():
        console().print(text, highlight=False, markup=False, soft_wrap=True)
    to_log_file(text)


def progress(enabled: bool) -> Progress:
    """A progress bar over gradient steps, with the latest loss and round (on a terminal only;
    elsewhere :func:`progress_line` prints a line per round)."""
    return Progress(
        TextColumn("[bold blue]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
        console=console(),
        disable=not (enabled and interactive()),
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
    table = Table(title=title, show_lines=False, min_width=min(len(title) + 2, 100))
    table.add_column("metric", style="cyan")
    table.add_column("value", justify="right")
    for key in sorted(summary):
        if key.split("/")[0] in ("eval", "sampler", "breeder", "time", "status", "train", "sims",
                                 "fit") and key != "fit/near_pole_reason" \
                and not isinstance(summary[key], (list, dict)):
            table.add_row(key, _fmt(summary[key]))
    return table
