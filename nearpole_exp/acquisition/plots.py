"""PNG plots of a breeder's history: parameters per generation (by generation and by score),
the DDPM loss curve, the breed ratio per generation and the distribution of scores.

Drawn with matplotlib's ``Figure`` API (Agg canvas), so the global pyplot backend is untouched.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib.figure import Figure

MAX_GRID_DIMS = 4


def _np(value: Any) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    return np.asarray(value)


def _pairs(dim: int) -> list[tuple[int, int]]:
    k = min(dim, MAX_GRID_DIMS)
    return [(i, j) for i in range(k) for j in range(i + 1, k)]


def _scatter_grid(params: np.ndarray, colour: np.ndarray, label: str, cmap: str,
                  path: Path, title: str, discrete: bool = False) -> Path:
    """Pairwise scatter of the first dims (x vs sim index in 1D), coloured by ``colour`` (one
    colour per integer value, with a legend, when ``discrete``)."""
    dim = params.shape[1]
    pairs = _pairs(dim) or [(-1, 0)]
    cols = min(len(pairs), 3)
    rows = int(np.ceil(len(pairs) / cols))
    fig = Figure(figsize=(4.2 * cols, 3.8 * rows), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False)
    known = np.isfinite(colour)
    art = None
    levels = np.unique(colour[known]) if discrete else np.array([])
    palette = _discrete_colours(len(levels))
    for ax, (i, j) in zip(axes.flat, pairs, strict=False):
        x = np.arange(len(params)) if i < 0 else params[:, i]
        y = params[:, j]
        if (~known).any():
            ax.scatter(x[~known], y[~known], s=4, c="lightgrey", label="no score")
        if discrete:
            for level, colour_k in zip(levels, palette, strict=True):
                mask = known & (colour == level)
                ax.scatter(x[mask], y[mask], s=5, color=colour_k, label=f"{label} {level:.0f}")
        else:
            art = ax.scatter(x[known], y[known], s=4, c=colour[known], cmap=cmap)
        ax.set_xlabel("simulation id" if i < 0 else f"λ{i} (parameter {i})")
        ax.set_ylabel(f"λ{j} (parameter {j})")
    for ax in list(axes.flat)[len(pairs):]:
        ax.axis("off")
    if discrete and len(levels):
        axes.flat[0].legend(fontsize=7, markerscale=2, loc="best")
    elif art is not None:
        fig.colorbar(art, ax=axes.ravel().tolist(), label=label)
    fig.suptitle(title)
    fig.savefig(path, dpi=110)
    return path


def _discrete_colours(n: int) -> list[Any]:
    """``n`` distinct colours in order (tab10, then a sampled viridis past ten)."""
    from matplotlib import colormaps

    if n <= 10:
        return [colormaps["tab10"](k) for k in range(n)]
    return [colormaps["viridis"](k / max(n - 1, 1)) for k in range(n)]


def _line(x: np.ndarray, ys: Mapping[str, np.ndarray], xlabel: str, ylabel: str, path: Path,
          title: str, log: bool = False) -> Path:
    fig = Figure(figsize=(5.5, 3.8), layout="constrained")
    ax = fig.subplots()
    ax.set_title(title)
    for name, y in ys.items():
        ax.plot(x[: len(y)], y, marker="o" if len(y) < 50 else None, label=name)
    if log:
        ax.set_yscale("log")
    if np.issubdtype(np.asarray(x).dtype, np.integer):
        from matplotlib.ticker import MaxNLocator

        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # generations are whole numbers
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if len(ys) > 1:
        ax.legend()
    fig.savefig(path, dpi=110)
    return path


def _signal_hist(signal: np.ndarray, is_bred: np.ndarray, path: Path) -> Path:
    fig = Figure(figsize=(5.5, 3.8), layout="constrained")
    ax = fig.subplots()
    known = np.isfinite(signal)
    bins = np.histogram_bin_edges(signal[known], bins=40) if known.any() else 10
    for name, mask in (("design", ~is_bred), ("bred", is_bred)):
        values = signal[known & mask]
        if values.size:
            ax.hist(values, bins=bins, alpha=0.6, label=f"{name} ({values.size})")
    ax.set_xlabel("score per simulation (EMA of its per-sample signal)")
    ax.set_ylabel("simulations")
    ax.set_title("scores of designed and bred simulations")
    ax.legend()
    fig.savefig(path, dpi=110)
    return path


def plot_breeder(history_like: Any, outdir: str | Path) -> list[Path]:
    """Write the breeder PNGs into ``outdir``; return their paths.

    ``history_like`` is a breeder with ``plot_data()`` or its mapping: ``params`` [N, d],
    ``generation`` [N], ``is_bred`` [N], ``signal`` [N] (NaN = unscored), and optionally
    ``ddpm_loss`` [K, 2] (step, loss), ``breed_ratio`` / ``breed_ratio_target`` / ``oob_rate``
    per generation.
    """
    data = history_like.plot_data() if hasattr(history_like, "plot_data") else history_like
    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    params = _np(data["params"]).astype(float)
    generation = _np(data["generation"]).astype(float)
    signal = _np(data["signal"]).astype(float)
    is_bred = _np(data["is_bred"]).astype(bool)
    paths: list[Path] = []
    if len(params):
        paths.append(_scatter_grid(params, generation, "generation", "viridis",
                                   out / "params_by_generation.png",
                                   "simulation parameters by generation", discrete=True))
        paths.append(_scatter_grid(params, signal, "score", "magma",
                                   out / "params_by_signal.png",
                                   "simulation parameters by score (EMA of the signal)"))
        paths.append(_signal_hist(signal, is_bred, out / "signal_distribution.png"))
    loss = _np(data.get("ddpm_loss", np.zeros((0, 2)))).reshape(-1, 2)
    if len(loss):
        paths.append(_line(loss[:, 0], {"DDPM loss": loss[:, 1]}, "DDPM training step",
                           "denoising loss (MSE of the predicted noise)", out / "ddpm_loss.png",
                           "OGAS DDPM training loss", log=bool((loss[:, 1] > 0).all())))
    ratios = {name: _np(data[key]).astype(float) for name, key in
              (("bred share", "breed_ratio"), ("scheduled R", "breed_ratio_target"),
               ("OOB rate", "oob_rate")) if len(data.get(key, []))}
    if ratios:
        gens = np.arange(max(len(v) for v in ratios.values()))
        paths.append(_line(gens, ratios, "generation", "share of the generation",
                           out / "breed_ratio.png", "bred share per generation"))
    return paths


def plot_placement(log: Any, outdir: str) -> list[str]:
    """Each generation's points (bred filled, design hollow) over the ideal density p* on the
    first two axes, hard regions outlined, with the generation's TV and hard mass in the title."""
    diag = log.diagnostic
    ideal = diag.ideal
    if not log.generations:
        return []
    if ideal.axes == 1:
        return _plot_placement_1d(log, outdir)
    side = 96
    axis = (torch.arange(side, dtype=torch.float64) + 0.5) / side
    grid = torch.full((side * side, ideal.dim), 0.5, dtype=torch.float64)
    grid[:, :2] = torch.stack(torch.meshgrid(axis, axis, indexing="ij"), dim=-1).reshape(-1, 2)
    if ideal.axes > 2:
        grid[:, 2 : ideal.axes] = ((ideal.lows[0, 2:] + ideal.highs[0, 2:]) / 2).double()
    density = _np(ideal.density(grid).reshape(side, side).T)
    n = len(log.generations)
    cols = min(n + 1, 5)
    rows = int(np.ceil((n + 1) / cols))
    fig = Figure(figsize=(3.2 * cols, 3.1 * rows), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).flatten()
    for k, ax in enumerate(axes):
        if k > n:
            ax.set_axis_off()
            continue
        ax.imshow(density, origin="lower", extent=(0, 1, 0, 1), cmap="Greys", alpha=0.6)
        for lo, hi in zip(ideal.lows, ideal.highs, strict=True):
            ax.add_patch(_box_patch(lo, hi))
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_xlabel("λ_0 (unit box)")
        ax.set_ylabel("λ_1 (unit box)")
        if k == 0:
            ax.set_title(f"ideal p* (hard mass {float(ideal.region_masses.sum()):.2f})", fontsize=9)
            continue
        unit, bred = _np(log.generations[k - 1]), _np(log.bred[k - 1])
        ax.scatter(unit[~bred, 0], unit[~bred, 1], s=6, facecolors="none", edgecolors="tab:blue",
                   linewidths=0.6, label="design")
        ax.scatter(unit[bred, 0], unit[bred, 1], s=6, c="tab:red", label="bred")
        h = log.history[k - 1]
        tv, hard = h.get("placement/tv", float("nan")), h["placement/hard_mass"]
        ax.set_title(f"generation {k - 1}: TV {tv:.2f}, hard mass {hard:.2f}", fontsize=9)
        if k == 1:
            ax.legend(fontsize=7, loc="lower left")
    path = Path(outdir) / "placement.png"
    fig.suptitle("Generated points vs the ideal tilted density (grey), hard regions outlined")
    fig.savefig(path, dpi=80)
    return [str(path)]


def _plot_placement_1d(log: Any, outdir: str) -> list[str]:
    """One placement coordinate: each generation's histogram over it against p*'s cell masses,
    the hard region shaded."""
    diag = log.diagnostic
    ideal = diag.ideal
    bins = diag.bins
    edges = np.linspace(0.0, 1.0, bins + 1)
    n = len(log.generations)
    cols = min(n, 4)
    rows = int(np.ceil(n / cols))
    fig = Figure(figsize=(3.4 * cols, 2.8 * rows), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).flatten()
    for k, ax in enumerate(axes):
        if k >= n:
            ax.set_axis_off()
            continue
        coords = _np(ideal.coords(log.generations[k].double())[:, 0])
        counts, _ = np.histogram(coords, bins=edges)
        ax.stairs(counts / max(len(coords), 1), edges, color="tab:red", label="generation")
        ax.stairs(_np(diag.masses), edges, color="black", label="ideal p*")
        for lo, hi in zip(ideal.lows, ideal.highs, strict=True):
            ax.axvspan(float(lo[0]), float(hi[0]), color="grey", alpha=0.2)
        h = log.history[k]
        ax.set_title(f"generation {k}: TV {h.get('placement/tv', float('nan')):.2f}, "
                     f"hard mass {h['placement/hard_mass']:.2f}", fontsize=9)
        ax.set_xlabel("placement coordinate")
        if k == 0:
            ax.legend(fontsize=7)
    path = Path(outdir) / "placement.png"
    fig.suptitle("Each generation's points against the ideal tilted density (hard region shaded)")
    fig.savefig(path, dpi=80)
    return [str(path)]


def _box_patch(lo: torch.Tensor, hi: torch.Tensor) -> Any:
    from matplotlib.patches import Rectangle

    lo0, lo1 = float(lo[0]), float(lo[1])
    return Rectangle((lo0, lo1), float(hi[0]) - lo0, float(hi[1]) - lo1, fill=False,
                     edgecolor="black", linewidth=1.0)
