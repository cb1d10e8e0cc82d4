"""The comparison's bar charts (one PNG per metric group)."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from nearpole_exp.reporting.comparison.aggregate import NRMSE_STATS, ComparisonResult, PointRow
from nearpole_exp.reporting.comparison.render import short_name


def plot_groups(metrics: Sequence[str], table_metrics: Sequence[str]) -> dict[str, list[str]]:
    """Charts to draw: bucket families (``…/B0``…), nRMSE stats, and the other table metrics."""
    groups: dict[str, list[str]] = {}
    for m in metrics:
        bucket = re.fullmatch(r"(.+)/B\d+", m)
        if bucket and "bucket_count" not in m:
            groups.setdefault(bucket.group(1).rsplit("/", 1)[-1], []).append(m)
    nrmse = [f"eval/nrmse_{s}" for s in NRMSE_STATS if f"eval/nrmse_{s}" in metrics]
    if nrmse:
        groups["nrmse"] = nrmse
    groups = {g: ms for g, ms in groups.items() if set(ms) & set(table_metrics)}
    grouped = {m for ms in groups.values() for m in ms}
    scalars = [m for m in table_metrics if m not in grouped]
    if scalars:
        groups["scalars"] = scalars
    return groups


#: Axis titles for the metric groups the comparison draws.
AXIS_NAMES = {"relerr_median": "median relative error |ŷ − y| / |y|",
              "bucket_mse": "mean squared error per bucket", "nrmse": "normalised RMSE"}


def _log_scale(values: Iterable[float]) -> bool:
    vals = [v for v in values if v is not None and math.isfinite(v)]
    return bool(vals) and min(vals) > 0 and max(vals) / min(vals) >= 10


def lower_error_bars(heights: Sequence[float], stds: Sequence[float], log: bool) -> list[float]:
    """The downward error bar of each bar: the std, stopped at zero for a non-negative mean (and
    above zero on a log axis), since errors, counts and times cannot be negative."""
    return [min(s, 0.9 * h) if log and h > 0 else min(s, h) if h >= 0 else s
            for s, h in zip(stds, heights, strict=True)]


def error_bars(row: PointRow, metrics: Sequence[str], log: bool) -> tuple[list[float], list[list[float]]]:
    """(bar heights, [lower, upper] error bars): the geometric mean ×/÷ its std factor for errors,
    else the mean ± std."""
    heights, lower, upper = [], [], []
    for m in metrics:
        st = row.metrics[m]
        height = st.center if st.center is not None else 0.0
        heights.append(height)
        if st.gmean is not None:
            factor = st.gsd or 1.0
            lower.append(height - height / factor)
            upper.append(height * factor - height)
        else:
            std = st.std or 0.0
            lower.append(lower_error_bars([height], [std], log)[0])
            upper.append(std)
    return heights, [lower, upper]


def _bars(ax: Any, rows: Sequence[PointRow], metrics: Sequence[str], labels: Sequence[str],
          colours: Sequence[Any], log: bool) -> None:
    width = 0.8 / max(len(rows), 1)
    for i, row in enumerate(rows):
        heights, yerr = error_bars(row, metrics, log)
        xs = [k + (i - (len(rows) - 1) / 2) * width for k in range(len(metrics))]
        ax.bar(xs, heights, width, yerr=yerr, capsize=2, color=colours[i], label=row.label)
    ax.set_xticks(range(len(metrics)), labels)
    if log:
        ax.set_yscale("log")
    ax.grid(axis="y", alpha=0.3, which="both")


def plot_group(result: ComparisonResult, group: str, metrics: Sequence[str], path: Path) -> bool:
    """One grouped bar chart (bars = sweep points; errors at their geometric mean with error bars
    ×/÷ the geometric std, others mean ± sample std); False if empty."""
    from matplotlib import colormaps
    from matplotlib.figure import Figure

    rows = [r for r in result.rows if any(r.metrics[m].center is not None for m in metrics)]
    if not rows:
        return False
    cmap = colormaps["tab10" if len(rows) <= 10 else "tab20"]
    colours = [cmap(i % cmap.N) for i in range(len(rows))]
    if group == "scalars":
        fig = Figure(figsize=(min(4 * len(metrics), 16), 3.8 + 0.25 * len(rows)))
        axes = fig.subplots(1, len(metrics), squeeze=False)[0]
        for ax, m in zip(axes, metrics, strict=True):
            _bars(ax, rows, [m], [short_name(m)], colours,
                  _log_scale(r.metrics[m].center for r in rows))
            ax.set_ylabel(f"{short_name(m)} (s)" if m.endswith("_s") else short_name(m))
    else:
        fig = Figure(figsize=(min(3 + 0.35 * len(metrics) * len(rows), 16), 3.8 + 0.25 * len(rows)))
        ax = fig.subplots()
        labels = [m.rsplit("/", 1)[-1].removeprefix("nrmse_") for m in metrics]
        _bars(ax, rows, metrics, labels, colours,
              _log_scale(r.metrics[m].center for r in rows for m in metrics))
        ax.set_ylabel(AXIS_NAMES.get(group, group))
        if all(label[:1] == "B" and label[1:].isdigit() for label in labels):
            ax.set_xlabel("distance-to-pole bucket (B0 closest; ranges in bucket_errors.png)")
    spread = ("geometric mean ×/÷ geometric std" if any(r.metrics[m].gmean is not None
              for r in rows for m in metrics) else "mean ± sample std")
    fig.suptitle(f"{group}: {spread} over seeds")
    handles, labels = fig.axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncols=min(len(rows), 3), fontsize=8,
               frameon=False)
    fig.tight_layout(rect=(0, 0.06 + 0.06 * math.ceil(len(rows) / 3), 1, 1))
    fig.savefig(path, dpi=90)
    return True
