"""Plots say what they show: labelled axes, readable ticks, bucket ranges, one colour per
generation, no impossible bars. Each test reads the figure that was saved, not the file name."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from matplotlib.colors import to_hex
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from nearpole_exp.acquisition.plots import plot_breeder
from nearpole_exp.problems.rational1d import Rational1D
from nearpole_exp.reporting.comparison.plots import error_bars, lower_error_bars
from nearpole_exp.reporting.plots import bucket_errors


@pytest.fixture
def saved(monkeypatch: pytest.MonkeyPatch) -> list[Figure]:
    """Every figure saved during the test, in order (the file is still written)."""
    figures: list[Figure] = []
    original = Figure.savefig

    def keep(self: Figure, *args: object, **kwargs: object) -> None:
        figures.append(self)
        original(self, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", keep)
    return figures


def test_bucket_plot_names_each_distance_range_and_count(tmp_path: Path, saved) -> None:
    metrics = {f"eval/relerr_median/B{b}": 10.0 ** -(9 - b) for b in range(5)}
    metrics.update({f"eval/bucket_count/B{b}": float(10 * (b + 1)) for b in range(5)})
    assert bucket_errors(metrics, tmp_path / "b.png") == [str(tmp_path / "b.png")]
    (ax,) = saved[0].axes
    ticks = [t.get_text() for t in ax.get_xticklabels()]
    assert ticks == ["B0\n[0, 1e-5]", "B1\n(1e-5, 1e-4]", "B2\n(1e-4, 1e-3]", "B3\n(1e-3, 1e-2]",
                     "B4\n(1e-2, ∞)"]
    assert ax.get_yscale() == "log" and "relative error" in ax.get_ylabel()
    assert "distance" in ax.get_xlabel()
    heights = [bar.get_height() for bar in ax.patches]
    assert heights == pytest.approx([10.0 ** -(9 - b) for b in range(5)])
    assert [t.get_text() for t in ax.texts] == [f"n={10 * (b + 1)}" for b in range(5)]
    assert bucket_errors({"eval/relerr_median/B0": 1.0}, tmp_path / "partial.png") == []


def test_error_bars_never_cross_zero() -> None:
    assert lower_error_bars([1.0, 3.0, -2.0], [2.0, 1.0, 5.0], log=False) == [1.0, 1.0, 5.0]
    assert lower_error_bars([1e-3], [5e-3], log=True)[0] == pytest.approx(0.9e-3)


def test_an_errors_bar_is_its_geometric_mean_times_or_over_its_factor() -> None:
    """Seeds at 1e-6 and 1e-2: the bar stands at 1e-4 (not at the 5e-3 one seed sets) and its
    error bar spans the two seeds' decades on a log axis."""
    from nearpole_exp.reporting.comparison.aggregate import PointRow, metric_stats

    errors, wall = metric_stats([1e-6, 1e-2], "eval/mse"), metric_stats([1.0, 3.0], "time/wall_s")
    row = PointRow("p", (), "", 2, 0, 0, ["0", "1"], {"eval/mse": errors, "time/wall_s": wall})
    heights, (lower, upper) = error_bars(row, ["eval/mse", "time/wall_s"], log=True)
    assert heights == pytest.approx([1e-4, 2.0])
    factor = math.exp(math.log(1e4) / math.sqrt(2))  # exp of the logs' sample std
    assert lower[0] == pytest.approx(1e-4 - 1e-4 / factor) and upper[0] == pytest.approx(1e-4 * factor - 1e-4)
    assert upper[1] == pytest.approx(math.sqrt(2)) and lower[1] == pytest.approx(math.sqrt(2))


def test_pole_fit_plot_labels_both_panels_with_few_decade_ticks(tmp_path: Path, saved) -> None:
    problem = Rational1D()
    (path,) = problem.plots(lambda x: problem.target(x.double()), str(tmp_path))
    assert Path(path).stat().st_size > 0
    wide, zoom = saved[0].axes
    for ax in (wide, zoom):
        assert ax.get_ylabel() and ax.get_xlabel() and ax.get_yscale() == "symlog"
        assert len(ax.get_yticks()) <= 7
        assert [line.get_label() for line in ax.get_lines()][:2] == ["truth", "model"]
    assert "0.3" in wide.get_title() and "offset from the pole" in zoom.get_xlabel()
    truth, model = zoom.get_lines()[:2]  # a perfect model: the curves coincide
    np.testing.assert_allclose(model.get_ydata(), truth.get_ydata())


def test_breeder_plots_give_each_generation_its_own_colour(tmp_path: Path, saved) -> None:
    rng = np.random.default_rng(0)
    data = {"params": rng.random((60, 2)), "generation": np.repeat(np.arange(3), 20),
            "is_bred": np.zeros(60, bool), "signal": rng.random(60)}
    paths = plot_breeder(data, tmp_path)
    assert {p.name for p in paths} >= {"params_by_generation.png", "signal_distribution.png"}
    by_generation = next(f for f, p in zip(saved, paths, strict=True)
                         if p.name == "params_by_generation.png")
    ax = by_generation.axes[0]
    colours = [to_hex(c.get_facecolor()[0]) for c in ax.collections]
    assert len(colours) == 3 and len(set(colours)) == 3  # one discrete colour per generation
    assert [len(c.get_offsets()) for c in ax.collections] == [20, 20, 20]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [
        "generation 0", "generation 1", "generation 2"]
    assert ax.get_xlabel().startswith("λ0") and ax.get_ylabel().startswith("λ1")


def test_sampled_histogram_weights_inputs_by_their_draws(tmp_path: Path, saved) -> None:
    from nearpole_exp.reporting.plots import sampled_histogram

    x = torch.tensor([[-0.9], [-0.1], [0.5], [0.55]], dtype=torch.float64)
    draws = torch.tensor([0, 3, 1, 4])
    sampled_histogram(x, draws, torch.tensor([[-1.0, 1.0]]), tmp_path / "h.png")
    ax = saved[0].axes[0]
    bars = [p.get_height() for p in ax.patches if isinstance(p, Rectangle) and p.get_height() > 0]
    assert sorted(bars) == [1.0, 3.0, 4.0]  # the point never drawn adds nothing
    assert "drawn" in ax.get_ylabel()
