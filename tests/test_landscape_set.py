"""The high-dimensional set landscapes (tube, shell, slab): the hard region's volume, the ideal
density's mass and the placement diagnostic, checked against independent Monte Carlo."""

from __future__ import annotations

import pytest
import torch

from nearpole_exp.acquisition.placement import PlacementDiagnostic
from nearpole_exp.errors import ConfigError
from nearpole_exp.problems.landscape_set import SetLandscape


def uniform(n: int, d: int, seed: int) -> torch.Tensor:
    return torch.rand(n, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def ideal_draws(problem: SetLandscape, n: int, seed: int) -> torch.Tensor:
    """Draws from p* by rejection (g ≤ 1 bounds p*·Z), independent of the Sobol rule."""
    gen = torch.Generator().manual_seed(seed)
    kept = []
    while sum(len(k) for k in kept) < n:
        x = torch.rand(50_000, problem.config.dim, generator=gen, dtype=torch.float64)
        kept.append(x[torch.rand(len(x), generator=gen, dtype=torch.float64) < problem.difficulty(x)])
    return torch.cat(kept)[:n]


@pytest.mark.parametrize("kind", ["tube", "shell", "slab"])
@pytest.mark.parametrize("dim", [4, 64])
def test_the_hard_region_holds_its_share_and_the_ideal_mass_is_right(kind, dim):
    problem = SetLandscape(dim=dim, hard_set=kind, hard_fraction=0.05)
    x = uniform(40_000, dim, seed=1)
    inside = problem.hard_region_mask(x).double()
    assert abs(float(inside.mean()) - 0.05) < 0.006  # 5σ of 40 000 draws
    g = problem.difficulty(x).double()
    assert abs(float((g * inside).sum() / g.sum()) - problem.ideal_hard_mass) < 0.03
    assert problem.ideal_hard_mass > 0.5  # p* leans into H (uniform: 0.05)
    dens = problem.ideal_density(x).double()  # p* integrates to 1, within 5 standard errors
    assert abs(float(dens.mean()) - 1.0) < 5 * float(dens.std()) / len(dens) ** 0.5


@pytest.mark.parametrize("kind", ["tube", "shell", "slab"])
def test_the_hard_set_is_not_a_corner_nor_a_box_of_axes(kind):
    problem = SetLandscape(dim=16, hard_set=kind)
    x = uniform(20_000, 16, seed=2)
    hard = problem.hard_region_mask(x)
    # no single axis separates H: every coordinate's range inside H covers most of [0, 1]
    spread = x[hard].amax(dim=0) - x[hard].amin(dim=0)
    assert float(spread.min()) > 0.6
    # and the difficulty depends on many axes: moving one axis alone rarely leaves H
    corr = torch.stack([torch.corrcoef(torch.stack([x[:, i], problem.distance(x)]))[0, 1]
                        for i in range(16)]).abs()
    assert float(corr.max()) < 0.6


@pytest.mark.parametrize("kind", ["tube", "slab"])
def test_placement_scores_ideal_draws_at_the_floor_and_uniform_far_from_it(kind):
    problem = SetLandscape(dim=32, hard_set=kind)
    diag = PlacementDiagnostic(problem.ideal_placement())
    ideal = diag.metrics(ideal_draws(problem, 1024, seed=3).float())
    assert ideal["placement/tv"] < 1.5 * ideal["placement/tv_floor"]
    assert abs(ideal["placement/hard_mass"] - problem.ideal_hard_mass) < 0.05
    assert ideal["placement/regions_found"] == 1.0
    flat = diag.metrics(uniform(1024, 32, seed=4).float())
    assert flat["placement/tv"] > 0.7 and abs(flat["placement/hard_mass"] - 0.05) < 0.02


def test_the_target_oscillates_inside_the_hard_region_only():
    problem = SetLandscape(dim=16, hard_set="tube")
    x = uniform(4000, 16, seed=5).float()
    phases = torch.rand(4000, generator=torch.Generator().manual_seed(6))
    smooth = SetLandscape(dim=16, hard_set="tube", amplitude=0.0).target(x, phases)
    wave = (problem.target(x, phases) - smooth).abs()
    hard = problem.hard_region_mask(x)
    assert float(wave[hard].mean()) > 0.3 and float(wave[~hard].mean()) < 0.1


def test_the_geometry_is_fixed_by_its_seed():
    a, b = SetLandscape(dim=8, geometry_seed=3), SetLandscape(dim=8, geometry_seed=3)
    x = uniform(100, 8, seed=7)
    assert torch.equal(a.distance(x), b.distance(x))
    assert not torch.equal(a.distance(x), SetLandscape(dim=8, geometry_seed=4).distance(x))


@pytest.mark.parametrize(("kwargs", "key"), [({"hard_set": "torus"}, "hard_set"),
                                             ({"dim": 300}, "dim"),
                                             ({"hard_fraction": 0.0}, "hard_fraction"),
                                             ({"integration_points": 10}, "integration_points")])
def test_bad_settings_are_refused_naming_their_key(kwargs, key):
    with pytest.raises(ConfigError) as err:
        SetLandscape(**kwargs)
    assert err.value.key == key


def test_a_run_on_a_64_dimensional_slab_scores_and_draws_its_placement(tmp_path):
    from nearpole_exp.acquisition.placement import PlacementLog

    problem = SetLandscape(dim=64)
    log = PlacementLog(problem.ideal_placement(), problem.bounds)
    hard = ideal_draws(problem, 64, seed=8).float()
    first = log.record(uniform(64, 64, seed=9).float(), None)
    second = log.record(hard, torch.ones(64, dtype=torch.bool))
    assert second["placement/hard_mass"] > first["placement/hard_mass"] + 0.4
    assert second["placement_bred/tv"] < first["placement/tv"]
    (path,) = log.plot(str(tmp_path))
    assert path.endswith("placement.png") and (tmp_path / "placement.png").stat().st_size > 5000
