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

from nearpole_exp.metrics import BUCKET_EDGES

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
    edges = BUCKET_EDGES
    names = [f"B{b}\n{_range(edges[b], edges[b + 1])}" for b in range(5)]
    bars = ax.bar(names, [v if math.isfinite(v) else 0 for v in values])
    for bar, n in zip(bars, counts, strict=True):
        ax.annotate(f"n={n}", (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                    ha="center", va="bottom", fontsize=8)
    ax.set_yscale("log")
    shown = [v for v in values if math.isfinite(v) and v > 0]
    if shown:
        ax.set_ylim(top=max(shown) * 10)  # room for the n= labels under the title
    ax.set_ylabel("median relative error |ŷ − y| / |y|")
    ax.set_xlabel("distance to the nearest pole")
    ax.set_title("error by distance to the nearest pole (B0 closest)")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    return [str(path)]


def _range(lo: float, hi: float) -> str:
    """A bucket's distance range, e.g. ``(1e-05, 1e-04]``."""
    def fmt(v: float) -> str:
        return "∞" if math.isinf(v) else "0" if v == 0 else f"{v:.0e}".replace("e-0", "e-")
    return f"{'[' if lo == 0 else '('}{fmt(lo)}, {fmt(hi)}]" if not math.isinf(hi) else f"({fmt(lo)}, ∞)"


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
    ax.set_xlabel("x₀ (first input coordinate)")
    ax.set_ylabel("times drawn into a batch")
    ax.set_title("where the training batches came from")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    return [str(path)]
