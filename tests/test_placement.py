"""The placement diagnostic, the adaptive breed ratio and the multi-region landscape: each
checked on a case whose answer is known."""

from __future__ import annotations

import math

import pytest
import torch

from nearpole_exp.acquisition.ogas import DataConfig, DDPMConfig, OGASBreeder
from nearpole_exp.acquisition.placement import PlacementDiagnostic, PlacementLog
from nearpole_exp.acquisition.schedule import AdaptiveBreedRatio
from nearpole_exp.errors import ConfigError
from nearpole_exp.problems.landscape import Landscape
from nearpole_exp.problems.landscape_multi import MultiRegionLandscape


def draw_ideal(problem: Landscape, n: int, seed: int) -> torch.Tensor:
    """``n`` exact draws from the problem's ideal density p* (rejection sampling)."""
    gen = torch.Generator().manual_seed(seed)
    kept: list[torch.Tensor] = []
    top = float(problem.ideal_density(torch.ones(1, problem.config.dim, dtype=torch.float64))[0])
    top = max(top, float(problem.ideal_density(
        (problem.ideal_placement().lows[:1] + problem.ideal_placement().highs[:1]).double() / 2)[0]))
    while sum(len(k) for k in kept) < n:
        x = torch.rand(200_000, problem.config.dim, generator=gen, dtype=torch.float64)
        keep = torch.rand(len(x), generator=gen, dtype=torch.float64) * top * 1.01 < \
            problem.ideal_density(x).double()
        kept.append(x[keep])
    return torch.cat(kept)[:n].float()


# --- the diagnostic -----------------------------------------------------------------------


@pytest.mark.parametrize("make", [lambda: Landscape(), lambda: MultiRegionLandscape()])
def test_ideal_draws_sit_at_the_noise_floor_and_uniform_far_from_it(make):
    problem = make()
    diag = PlacementDiagnostic(problem.ideal_placement())
    ideal = diag.metrics(draw_ideal(problem, 2048, seed=0))
    assert ideal["placement/tv"] < 1.5 * ideal["placement/tv_floor"]
    assert ideal["placement/hard_tv"] < 1.5 * ideal["placement/hard_tv_floor"]
    assert abs(ideal["placement/hard_mass"] - ideal["placement/ideal_hard_mass"]) < 0.05
    assert ideal["placement/regions_found"] == 1.0
    uniform = diag.metrics(torch.rand(512, problem.config.dim, generator=torch.Generator().manual_seed(1)))
    assert uniform["placement/tv"] > 0.8 and uniform["placement/regions_found"] == 0.0
    assert abs(uniform["placement/hard_mass"] - problem.hard_fraction) < 0.03


def test_a_breeder_piled_on_one_face_of_the_corner_is_told_apart():
    problem = Landscape()
    diag = PlacementDiagnostic(problem.ideal_placement())
    gen = torch.Generator().manual_seed(2)
    x0 = problem.corner
    piled = torch.stack([1 - 0.01 * torch.rand(512, generator=gen),
                         x0 + (1 - x0) * torch.rand(512, generator=gen)], dim=1)
    m = diag.metrics(piled)
    assert m["placement/hard_mass"] == 1.0 and m["placement/regions_found"] == 1.0
    assert m["placement/hard_tv"] > 0.6  # right region, wrong spread inside it


def test_collapse_onto_one_region_shows_in_the_region_masses():
    problem = MultiRegionLandscape()
    diag = PlacementDiagnostic(problem.ideal_placement())
    gen = torch.Generator().manual_seed(3)
    lo, hi = problem.lows[0], problem.highs[0]
    only_corner = lo + (hi - lo) * torch.rand(400, 2, generator=gen, dtype=torch.float64)
    m = diag.metrics(only_corner.float())
    assert m["placement/region_mass/0"] == 1.0 and m["placement/region_mass/1"] == 0.0
    assert math.isclose(m["placement/regions_found"], 1 / 3)


def test_placement_log_records_generations_and_round_trips():
    problem = Landscape()
    log = PlacementLog(problem.ideal_placement(), problem.bounds)
    gen = torch.Generator().manual_seed(4)
    log.record(torch.rand(64, 2, generator=gen), None)
    bred = torch.zeros(64, dtype=torch.bool)
    bred[:32] = True
    log.record(draw_ideal(problem, 64, seed=5), bred)
    summary = log.summary()
    assert summary["placement/hard_mass"] == log.history[1]["placement/hard_mass"]
    assert "placement_bred/tv" in summary
    other = PlacementLog(problem.ideal_placement(), problem.bounds)
    other.load_state_dict(log.state_dict())
    assert other.summary() == summary and len(other.generations) == 2


# --- the adaptive breed ratio --------------------------------------------------------------


def mixture_ess(ratio: float, volume: float) -> float:
    """Kish ESS fraction of p_design/p_mix weights when bred points are uniform on a sub-box of
    ``volume`` and the design is uniform: 1 / E_mix[w²]."""
    inside = volume / ((1 - ratio) + ratio / volume)
    outside = (1 - volume) / (1 - ratio)
    return 1.0 / (inside + outside)


def test_adaptive_ratio_converges_to_the_ratio_whose_ess_is_the_target():
    volume, target = 0.05, 0.5
    lo, hi = 0.0, 0.95
    for _ in range(60):  # R* by bisection: ESS falls as R rises
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if mixture_ess(mid, volume) > target else (lo, mid)
    controller = AdaptiveBreedRatio(initial=0.0, ceiling=0.95, target=target, gain=0.5)
    for _ in range(80):
        controller.update(mixture_ess(controller.value, volume))
    assert abs(controller.value - lo) < 1e-3
    capped = AdaptiveBreedRatio(initial=0.0, ceiling=0.3, target=0.05, gain=0.5)
    for _ in range(40):
        capped.update(mixture_ess(capped.value, volume))
    assert capped.value == 0.3  # ESS never falls to 0.05 below the ceiling
    assert capped.update(float("nan")) == 0.3


def tiny_breeder(**breeder) -> OGASBreeder:
    model = DDPMConfig(sampler="ddim", model_dim=32, depth=2, timesteps=30, sample_steps=5)
    opts = {"synchronous": True, "train_steps_per_ask": 150, "min_train_steps": 30,
            "adaptive_ratio": "off", "proposal_mix": "generator", "child_jitter": 0.0,
            "loss_sampling_alpha": 1.0, "non_breed_design": "uniform", **breeder}
    return OGASBreeder(torch.tensor([[0.0, 1.0], [0.0, 1.0]]), model=model,
                       data=DataConfig(batch_size=64, buffer_size=2000, smoothing_neighbours=1),
                       **opts)


# corner points bred: a trained classifier's ESS sits near 0.7–0.85, so a target of 0.05 is
# never reached (R climbs to the ceiling) and 0.9 always overshot (R falls)
@pytest.mark.parametrize(("target", "rises", "generations"), [(0.05, True, 4), (0.9, False, 6)])
def test_adaptive_breeder_follows_its_ess(target, rises, generations):
    torch.manual_seed(0)
    b = tiny_breeder(adaptive_ratio=True, adaptive_ess_target=target, start_breed_ratio=0.4,
                     end_breed_ratio=0.8)
    gen = torch.Generator().manual_seed(0)
    for _ in range(generations):
        x = b.ask(64)
        hard = ((x[:, 0] > 0.8) & (x[:, 1] > 0.8)).float()
        ids = torch.arange(b.n_asked - 64, b.n_asked)
        b.tell(ids, 0.1 + hard + 0.01 * torch.rand(64, generator=gen))
    ratios = b.records["ratio_target"]
    assert ratios[0] == 0.0 and ratios[1] == pytest.approx(0.4)
    assert (ratios[-1] > 0.6) if rises else (ratios[-1] < 0.3)
    assert "breeder/adaptive_ess" in b.metrics()
    state = b.state_dict()
    c = tiny_breeder(adaptive_ratio=True, adaptive_ess_target=target, start_breed_ratio=0.4,
                     end_breed_ratio=0.8)
    c.load_state_dict(state)
    assert c.ratio_control.value == b.ratio_control.value


def test_adaptive_ratio_needs_the_ratio_classifier():
    with pytest.raises(ConfigError, match="learn_sampling_ratio"):
        tiny_breeder(adaptive_ratio=True, learn_sampling_ratio=False)
    with pytest.raises(ConfigError) as err:
        tiny_breeder(adaptive_ess_target=1.5)
    assert err.value.key == "breeder.adaptive_ess_target"
    for settings, key in (({"adaptive_gain": 0.3}, "adaptive_gain"),  # ignored without adaptive_ratio
                          ({"adaptive_ratio": True, "breakpoint": 2}, "breakpoint"),  # ramp replaced
                          ({"adaptive_ratio": True, "schedule_on": "budget", "total_budget": 100},
                           "breakpoint")):
        with pytest.raises(ConfigError) as err:
            tiny_breeder(**settings)
        assert err.value.key == f"breeder.{key}"


# --- the multi-region landscape -------------------------------------------------------------


def test_multi_region_masses_volumes_and_target():
    p = MultiRegionLandscape()
    x = torch.rand(1_000_000, 2, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    dens, region = p.ideal_density(x).double(), p.region_of(x)
    assert abs(float(dens.mean()) - 1.0) < 0.01
    for r, volume in enumerate(p.config.volumes):
        assert abs(float((region == r).double().mean()) - volume) < 0.1 * volume
        assert abs(float((dens * (region == r)).mean()) - float(p.ideal_region_masses[r])) < 0.01
    f = p.target(x[:1000].float(), torch.zeros(1000))
    assert float(f.min()) > 0.4 and float(f.max()) < 3.6


def test_multi_region_bad_layout_is_refused():
    with pytest.raises(ConfigError) as err:
        MultiRegionLandscape(centers=[[1.0], [0.95, 0.95], [0.7, 0.12]])
    assert err.value.key == "centers"
    with pytest.raises(ConfigError) as err:
        MultiRegionLandscape(amplitudes=[1.0, 0.5])
    assert err.value.key == "amplitudes"


def test_region_errors_are_reported():
    p = MultiRegionLandscape(n_eval=256)
    metrics = p.evaluate(lambda x: torch.full((len(x), 1), 2.0))
    assert {f"eval/region_error/{r}" for r in range(3)} <= set(metrics)
    assert metrics["eval/region_error/0"] > metrics["eval/easy_region_error"]


# --- child jitter -----------------------------------------------------------------------------


def test_jitter_is_gaussian_inside_and_mirrored_at_a_face():
    from nearpole_exp.acquisition.children import jitter

    gen = torch.Generator().manual_seed(7)
    centre = jitter(torch.full((200_000, 2), 0.5), 0.05, gen)
    assert abs(float(centre.mean()) - 0.5) < 1e-3 and abs(float(centre.std()) - 0.05) < 1e-3
    face = jitter(torch.full((200_000, 1), 1.0), 0.05, gen)
    assert float(face.max()) <= 1.0 and float(face.min()) >= 0.0
    # reflected at 1: the law of 1 − |z|·σ, a half-normal with mean 1 − σ·√(2/π)
    assert abs(float(face.mean()) - (1 - 0.05 * math.sqrt(2 / math.pi))) < 1e-3


def test_ogas_child_jitter_moves_only_bred_points():
    def generation(sigma: float) -> tuple[torch.Tensor, torch.Tensor]:
        torch.manual_seed(0)
        b = tiny_breeder(child_jitter=sigma, end_breed_ratio=0.5, breakpoint=2)
        gen = torch.Generator().manual_seed(0)
        x = b.ask(64)
        b.tell(torch.arange(64), 0.1 + ((x[:, 0] > 0.8) & (x[:, 1] > 0.8)).float()
               + 0.01 * torch.rand(64, generator=gen))
        x = b.ask(64)
        return x, b.bred_mask(torch.arange(64, 128))

    plain, bred_plain = generation(0.0)
    jittered, bred = generation(0.05)
    assert int(bred.sum()) == int(bred_plain.sum()) == 32
    assert bool(((jittered >= 0) & (jittered <= 1)).all())
    assert not torch.equal(plain[bred_plain].sort(dim=0).values, jittered[bred].sort(dim=0).values)
    with pytest.raises(ConfigError):
        tiny_breeder(child_jitter=0.9)
