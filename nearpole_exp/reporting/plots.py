"""Generic PNG plots of a job: per-bucket errors and the histogram of sampled inputs.

matplotlib is imported only when a plot is drawn (it was ~1 s of every job's start-up, plots on
or off), and through ``Figure`` rather than pyplot: no global backend state, safe off the main
thread.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import Tensor

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def _figure(width: float, height: float) -> Figure:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height))


def bucket_errors(metrics: dict[str, float], path: Path) -> list[str]:
    """Bar chart of the median relative error per distance bucket (pole problems only)."""
    keys = [f"eval/relerr_median/B{b}" for b in range(5)]
    if not all(k in metrics for k in keys):
        return []
    values = [metrics[k] for k in keys]
    counts = [int(metrics.get(f"eval/bucket_count/B{b}", 0)) for b in range(5)]
    fig = _figure(6, 3.5)
    ax = fig.subplots()
    bars = ax.bar([f"B{b}" for b in range(5)], [v if math.isfinite(v) else 0 for v in values])
    for bar, n in zip(bars, counts, strict=True):
        ax.annotate(f"n={n}", (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                    ha="center", va="bottom", fontsize=8)
    ax.set_yscale("log")
    ax.set_ylabel("median relative error")
    ax.set_title("error by distance to the nearest pole (B0 closest)")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    return [str(path)]


def sampled_histogram(inputs: Tensor, draws: Tensor | None, bounds: Tensor, path: Path) -> list[str]:
    """Histogram of the first input coordinate, weighted by how often each sample was trained on."""
    if draws is None or inputs.ndim != 2 or len(inputs) == 0:
        return []
    x = inputs[:, 0].double()
    fig = _figure(6, 3.5)
    ax = fig.subplots()
    lo, hi = float(bounds[0, 0]), float(bounds[0, 1])
    edges = torch.linspace(lo, hi, 101, dtype=torch.float64)
    ax.hist(x.numpy(), bins=edges.numpy(), weights=draws.double().numpy(), label="drawn into batches")
    ax.hist(x.numpy(), bins=edges.numpy(), histtype="step", color="k",
            weights=(torch.ones_like(x) * draws.sum() / max(len(x), 1)).numpy(), label="pool (scaled)")
    ax.set_xlabel("x[0]")
    ax.set_ylabel("draws")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    return [str(path)]
