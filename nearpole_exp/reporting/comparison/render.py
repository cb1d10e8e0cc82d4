"""The comparison as a Rich table, markdown and CSV."""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

from nearpole_exp.reporting.comparison.aggregate import ComparisonResult, MetricStats, PointRow

MAX_WIDTH = 240


def fmt(value: float | None) -> str:
    """Three significant digits; an em dash for a missing value."""
    if value is None:
        return "—"
    if math.isinf(value):
        return "∞" if value > 0 else "-∞"
    return f"{value:.3g}"


def short_name(metric: str) -> str:
    """A column header: the metric name without its ``eval/`` prefix."""
    return metric.removeprefix("eval/")


def _mean_std(st: MetricStats, n: int) -> str:
    """``gmean ×/÷ gsd`` for an error, else ``mean ± std``; ``(n=k)`` when seeds are missing."""
    if st.n == 0:
        return "—"
    if st.gmean is not None:
        text = fmt(st.gmean) if st.gsd is None else f"{fmt(st.gmean)} ×/÷ {fmt(st.gsd)}"
    else:
        text = fmt(st.mean) if st.std is None else f"{fmt(st.mean)} ± {fmt(st.std)}"
    return text + (f" (n={st.n})" if st.n < n else "")


def _ratio_text(st: MetricStats, row: PointRow) -> str:
    if row.is_baseline or st.ratio is None:
        return ""
    wins = f" ({st.wins}/{st.paired})" if st.wins is not None else ""
    return f"×{fmt(st.ratio)}{wins}"


def _caption(result: ComparisonResult) -> str:
    sense = "baseline/point" if result.lower_is_better else "point/baseline"
    return ("over seeds: errors (eval/*) as geometric mean ×/÷ geometric std, others as mean ± "
            f"sample std (n−1); n = completed/all jobs; ×ratio = {sense} of those (>1 better), "
            "(wins/paired seeds); time is reported, not ranked")


def render_table(result: ComparisonResult) -> Table:
    """The Rich table: one row per sweep point, per metric "mean ± std" over "×ratio (wins)"."""
    common = f" (all with {','.join(result.common)})" if result.common else ""
    table = Table(title=f"sweep comparison: {result.sweep_dir}{common}", caption=_caption(result),
                  show_lines=True)
    table.add_column("point", style="cyan", overflow="fold")
    table.add_column("n", justify="right")
    for m in result.table_metrics:
        table.add_column(short_name(m), justify="right", overflow="fold")
    block = None
    for row in result.rows:
        if result.by and row.block != block:
            if block is not None:
                table.add_section()
            block = row.block
        label = Text(row.label)
        if row.is_baseline:
            label.append(" (baseline)", style="bold")
        cells: list[Text | str] = [label, f"{row.n}/{row.n + row.n_failed + row.n_missing}"]
        for m in result.table_metrics:
            st = row.metrics[m]
            cell = Text(_mean_std(st, row.n))
            tail = _ratio_text(st, row)
            if tail:
                good = st.ratio is not None and st.ratio > 1
                cell.append("\n" + tail, style="green" if good else "red")
            cells.append(cell)
        table.add_row(*cells)
    return table


def render_markdown(result: ComparisonResult) -> str:
    """A GitHub-flavoured markdown table (plus notes and failures) to paste into a README."""
    head = ["point", "n", *(short_name(m) for m in result.table_metrics)]
    common = f" (all with `{','.join(result.common)}`)" if result.common else ""
    lines = [f"Sweep `{result.sweep_dir}`{common}: {_caption(result)}.", "",
             "| " + " | ".join(head) + " |",
             "|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|"]
    for row in result.rows:
        cells = [row.label.replace("|", "\\|") + (" **(baseline)**" if row.is_baseline else ""),
                 f"{row.n}/{row.n + row.n_failed + row.n_missing}"]
        for m in result.table_metrics:
            st = row.metrics[m]
            tail = _ratio_text(st, row)
            cells.append(_mean_std(st, row.n) + (f" {tail}" if tail else ""))
        lines.append("| " + " | ".join(cells) + " |")
    lines += [""] + [f"- note: {n}" for n in result.notes]
    lines += [f"- {f.status}: `{f.job_dir}` ({f.point}, seed {f.seed}): {f.error}"
              for f in result.failures]
    return "\n".join(lines).rstrip() + "\n"


def write_csv(result: ComparisonResult, path: Path) -> None:
    """One row per sweep point: point, n, failures, then per metric the arithmetic mean and std,
    the geometric mean and std factor (errors), n, ratio, wins and paired seeds."""
    stats = ("mean", "std", "gmean", "gsd", "n", "ratio", "wins", "paired")
    head = ["block"] if result.by else []
    head += ["point", "n", "n_failed", "n_missing", "is_baseline"]
    head += [f"{m}/{s}" for m in result.metrics for s in stats]
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(head)
        for row in result.rows:
            out: list[Any] = [row.block] if result.by else []
            out += [row.label, row.n, row.n_failed, row.n_missing, int(row.is_baseline)]
            for m in result.metrics:
                st = row.metrics[m]
                out += ["" if v is None else v
                        for v in (st.mean, st.std, st.gmean, st.gsd, st.n, st.ratio, st.wins)]
                out.append(st.paired if st.wins is not None else "")
            writer.writerow(out)


def print_comparison(result: ComparisonResult, console: Console | None = None) -> None:
    """Print the table, the notes, the failed/missing jobs and where the files went."""
    con = console or Console()
    table = render_table(result)
    if not con.is_terminal:  # pipes, CI and log files: as wide as the table, not rich's 80 columns
        width = Measurement.get(con, con.options.update_width(MAX_WIDTH), table).maximum
        con = Console(file=con.file, width=max(con.width, min(width, MAX_WIDTH)))
    con.print(table)
    for note in result.notes:
        con.print(Text.assemble(("note: ", "yellow"), note))
    for f in result.failures:
        where = f" {f.job_dir} ({f.point}, seed {f.seed}): {f.error}"
        con.print(Text.assemble((f.status, "red"), where))
    if result.paths:
        con.print(Text("written: " + ", ".join(str(p) for p in result.paths.values())))
