"""Plots say what they show: labelled axes, readable ticks, bucket ranges, no impossible bars."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from nearpole_exp.acquisition.plots import plot_breeder
from nearpole_exp.problems.rational1d import Rational1D
from nearpole_exp.reporting.comparison.plots import lower_error_bars
from nearpole_exp.reporting.plots import _range, bucket_errors


def test_bucket_plot_names_each_distance_range(tmp_path: Path) -> None:
    assert [_range(0.0, 1e-5), _range(1e-5, 1e-4), _range(1e-2, float("inf"))] == [
        "[0, 1e-5]", "(1e-5, 1e-4]", "(1e-2, ∞)"]
    metrics = {f"eval/relerr_median/B{b}": 10.0 ** -(9 + b) for b in range(5)}
    assert bucket_errors(metrics, tmp_path / "b.png") and (tmp_path / "b.png").stat().st_size > 0


def test_error_bars_never_cross_zero() -> None:
    assert lower_error_bars([1.0, 3.0, -2.0], [2.0, 1.0, 5.0], log=False) == [1.0, 1.0, 5.0]
    assert lower_error_bars([1e-3], [5e-3], log=True)[0] == pytest.approx(0.9e-3)


def test_pole_fit_plot_has_labels_and_few_ticks(tmp_path: Path) -> None:
    from matplotlib.figure import Figure

    from nearpole_exp.problems.poles import _symlog_decades

    ax = Figure().subplots()
    _symlog_decades(ax, torch.tensor([-1e8, 3.0, 1e8]))
    assert len(ax.get_yticks()) <= 7
    problem = Rational1D()
    (path,) = problem.plots(lambda x: problem.target(x.double()), str(tmp_path))
    assert Path(path).stat().st_size > 0


def test_breeder_plots_colour_generations_discretely(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    data = {"params": rng.random((60, 2)), "generation": np.repeat(np.arange(3), 20),
            "is_bred": np.zeros(60, bool), "signal": rng.random(60)}
    paths = plot_breeder(data, tmp_path)
    assert {p.name for p in paths} >= {"params_by_generation.png", "signal_distribution.png"}
