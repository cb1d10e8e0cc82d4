"""Neighbour-averaged conditions and adaptive-bandwidth child jitter of the OGAS breeder, each
checked on a case whose answer is known."""

from __future__ import annotations

import pytest
import torch

from nearpole_exp.acquisition.ogas import DataConfig, DDPMConfig, OGASBreeder
from nearpole_exp.acquisition.ogas.smoothing import (
    adaptive_bandwidth,
    knn_mean,
    knn_radius,
    loo_neighbours,
)
from nearpole_exp.errors import ConfigError


def test_knn_mean_limits_and_a_linear_field():
    gen = torch.Generator().manual_seed(0)
    points, values = torch.rand(300, 2, generator=gen), torch.randn(300, generator=gen)
    assert torch.equal(knn_mean(points, points, values, 1), values)
    assert torch.allclose(knn_mean(points, points, values, 10_000), values.mean().expand(300),
                          atol=1e-6)
    # on an even 1-D grid the 3 nearest points of an interior point are itself and its two
    # neighbours, whose mean of a linear field is the point's own value
    grid = torch.linspace(0, 1, 101)[:, None]
    line = 3.0 * grid[:, 0] - 1.0
    assert torch.allclose(knn_mean(grid[1:-1], grid, line, 3), line[1:-1], atol=1e-5)
    assert knn_mean(torch.empty(0, 2), points, values, 4).shape == (0,)


def test_knn_radius_on_a_grid_and_degenerate_sizes():
    axis = torch.arange(10, dtype=torch.float32) * 0.1
    grid = torch.stack(torch.meshgrid(axis, axis, indexing="ij"), dim=-1).reshape(-1, 2)
    r1 = knn_radius(grid, 1)
    assert torch.allclose(r1, torch.full((100,), 0.1), atol=1e-6)
    # the 4 axis neighbours of an interior point are at 0.1, the 5th on a diagonal at 0.1·√2
    interior = ((grid > 0.05) & (grid < 0.85)).all(dim=1)
    assert torch.allclose(knn_radius(grid, 5)[interior], torch.full((64,), 0.1 * 2**0.5), atol=1e-6)
    assert knn_radius(grid[:1], 3).tolist() == [0.0]


def test_adaptive_bandwidth_follows_the_region_size():
    gen = torch.Generator().manual_seed(1)
    small = 0.5 + 0.05 * torch.rand(400, 2, generator=gen)
    large = 0.2 * torch.rand(400, 2, generator=gen)
    ratio = float(adaptive_bandwidth(large, 1.0).mean() / adaptive_bandwidth(small, 1.0).mean())
    assert 3.6 < ratio < 4.4  # same count in a box 4x as wide: widths 4x
    assert torch.allclose(adaptive_bandwidth(small, 2.0), 2 * adaptive_bandwidth(small, 1.0))


def breeder(**opts) -> OGASBreeder:
    data = opts.pop("data", {})
    model = DDPMConfig(sampler="ddim", model_dim=32, depth=2, timesteps=30, sample_steps=5)
    base = {"synchronous": True, "train_steps_per_ask": 100, "min_train_steps": 30,
            "end_breed_ratio": 0.5, "breakpoint": 2, "adaptive_ratio": "off",
            "proposal_mix": "generator", "child_jitter": 0.0, "loss_sampling_alpha": 1.0,
            "non_breed_design": "uniform"}
    data = {"smoothing_neighbours": 1, **data}
    return OGASBreeder(torch.tensor([[0.0, 1.0], [0.0, 1.0]]), model=model,
                       data=DataConfig(batch_size=64, buffer_size=2000, **data), **{**base, **opts})


def scored(b: OGASBreeder, n: int = 400) -> torch.Tensor:
    """Ask ``n`` points and tell a noisy score that is high in the corner; return the points."""
    gen = torch.Generator().manual_seed(3)
    x = b.ask(n)
    hard = ((x[:, 0] > 0.7) & (x[:, 1] > 0.7)).float()
    b.tell(torch.arange(n), 0.2 + hard * torch.rand(n, generator=gen) * 2)
    return x


def test_smoothed_conditions_average_the_noise_and_agree_per_batch():
    torch.manual_seed(0)
    raw = breeder()
    torch.manual_seed(0)
    smooth = breeder(data={"smoothing_neighbours": 8})
    x = scored(raw)
    assert torch.equal(scored(smooth), x)
    hard = (x[:, 0] > 0.75) & (x[:, 1] > 0.75)
    with raw._data_lock, smooth._data_lock:
        c_raw, c_smooth = raw._reservoir_conditions(), smooth._reservoir_conditions()
        idx = torch.tensor([5, 17, 200, 399])
        assert torch.allclose(smooth._reservoir_conditions(idx), c_smooth[idx], atol=1e-6)
    # inside the corner the scores are i.i.d. uniform: averaging 8 cuts their spread ~√8-fold
    assert float(c_smooth[hard].std()) < 0.6 * float(c_raw[hard].std())
    # and the easy bulk keeps its (constant) level
    far = (x[:, 0] < 0.5) & (x[:, 1] < 0.5)
    assert torch.allclose(c_smooth[far], c_raw[far], atol=1e-6)


def test_adaptive_jitter_moves_only_bred_points_and_excludes_fixed_jitter():
    def second_generation(scale: float) -> tuple[torch.Tensor, torch.Tensor]:
        torch.manual_seed(0)
        b = breeder(child_jitter_scale=scale)
        scored(b, 64)
        return b.ask(64), b.bred_mask(torch.arange(64, 128))

    plain, bred_plain = second_generation(0.0)
    jittered, bred = second_generation(2.0)
    def rows(x: torch.Tensor) -> torch.Tensor:
        return x[torch.argsort(x[:, 0])]

    assert int(bred.sum()) == int(bred_plain.sum()) == 32
    assert bool(((jittered >= 0) & (jittered <= 1)).all())
    assert torch.equal(rows(plain[~bred_plain]), rows(jittered[~bred]))
    assert not torch.equal(rows(plain[bred_plain]), rows(jittered[bred]))
    with pytest.raises(ConfigError, match="child_jitter_scale"):
        breeder(child_jitter=0.1, child_jitter_scale=1.0)
    with pytest.raises(ConfigError, match="smoothing_neighbours"):
        breeder(data={"smoothing_neighbours": -1})


def test_leave_one_out_picks_few_neighbours_for_clean_scores_and_many_for_noise():
    gen = torch.Generator().manual_seed(4)
    x = torch.rand(256, 2, generator=gen)
    clean = torch.sin(6 * x[:, 0]) + x[:, 1]  # smooth: a few close neighbours predict it
    assert loo_neighbours(x, clean) <= 4
    noisy = clean + 2.0 * torch.randn(256, generator=gen)  # noise >> variation: average widely
    assert loo_neighbours(x, noisy) >= 16
    # pure noise: no neighbour mean beats the mean of the rest, so no smoothing (averaging would
    # only pull every score to the mean)
    assert loo_neighbours(x, torch.randn(256, generator=gen)) == 1
    assert loo_neighbours(x[:2], clean[:2]) == 1  # too few points to choose


def test_leave_one_out_keeps_each_score_where_neighbours_are_not_near():
    """A 16-D slab: Euclidean neighbours of a hard sim are not hard, every k-NN mean predicts
    worse than the global mean, and smoothing would erase which sims were hard."""
    from nearpole_exp.problems.landscape_set import SetLandscape

    problem = SetLandscape(dim=16)
    gen = torch.Generator().manual_seed(6)
    x = torch.rand(256, 16, generator=gen)
    scores = problem.difficulty(x.double()).float() + 0.05 * torch.randn(256, generator=gen)
    assert loo_neighbours(x, scores) == 1
    flat = SetLandscape(dim=2, hard_fraction=0.3)  # a wide slab in 2-D: neighbours are near
    x2 = torch.rand(256, 2, generator=gen)
    scores2 = flat.difficulty(x2.double()).float() + 0.3 * torch.randn(256, generator=gen)
    assert loo_neighbours(x2, scores2) > 1


def test_leave_one_out_averages_fewer_neighbours_in_more_dimensions():
    """The same noise over 4 dimensions: neighbours are farther, so fewer are worth averaging
    (mean over 6 draws; a single draw can tie)."""
    gen = torch.Generator().manual_seed(5)
    chosen = {2: [], 4: []}
    for _ in range(6):
        for d in chosen:
            x = torch.rand(256, d, generator=gen)
            score = torch.sin(4 * x).sum(1) + 0.5 * torch.randn(256, generator=gen)
            chosen[d].append(loo_neighbours(x, score))
    assert sum(chosen[4]) < 0.8 * sum(chosen[2])


def test_automatic_smoothing_in_the_breeder_follows_the_scores():
    torch.manual_seed(0)
    b = breeder(data={"smoothing_neighbours": 0})
    scored(b)  # corner scores are i.i.d. uniform: noisy
    b.ask(64)
    assert b.metrics()["breeder/smoothing_k"] >= 8
    torch.manual_seed(0)
    c = breeder(data={"smoothing_neighbours": 0})
    x = c.ask(400)
    c.tell(torch.arange(400), 0.2 + (x[:, 0] + x[:, 1]) ** 2)  # a clean, smooth score
    c.ask(64)
    assert c.metrics()["breeder/smoothing_k"] <= 4 < b.metrics()["breeder/smoothing_k"]
