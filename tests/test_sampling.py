"""Importance, hybrid and active samplers: formulas, statistics, caps, devices, persistence."""

from __future__ import annotations

import dataclasses
import io
import math

import hydra
import numpy as np
import pytest
import torch

from nearpole_exp import metrics
from nearpole_exp.errors import ConfigError
from nearpole_exp.pool import DrawCounts, Pool
from nearpole_exp.problems.poles import PoleProblem
from nearpole_exp.problems.rational1d import Rational1D
from nearpole_exp.sampling.active import ActiveSampler, ActiveSamplerConfig, first_new, row_groups
from nearpole_exp.sampling.distances import newton_distance
from nearpole_exp.sampling.hybrid import HybridSampler, HybridSamplerConfig
from nearpole_exp.sampling.importance import ImportanceSampler
from nearpole_exp.sampling.importance_law import ImportanceSamplerConfig, importance_weights
from nearpole_exp.sampling.zeroproof import ZeroProofSampler

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def roundtrip(state: dict) -> dict:
    """Save and reload a state dict the way checkpoints do (weights_only)."""
    buf = io.BytesIO()
    torch.save(state, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=True)


def pool_1d(n: int = 4000, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 1, generator=gen) * 2 - 1
    return x, x[:, 0] - 0.3


# -- importance weights ------------------------------------------------------------------------


def test_weight_formula_absolute_reference():
    cfg = ImportanceSamplerConfig(cap_reference="absolute", uniform_mix=0.0)
    q = torch.tensor([0.5, -1.0, 2.0])
    expected = 1.0 / (torch.tensor([0.25, 1.0, 4.0]) + 0.01)
    torch.testing.assert_close(importance_weights(q, cfg), expected)
    probs = ImportanceSampler(cfg).compute_weights(q)
    torch.testing.assert_close(probs, (expected / expected.sum()).double())


def test_weights_are_smooth_and_capped_relative_to_median():
    cfg = ImportanceSamplerConfig(uniform_mix=0.0, min_q_abs=1e-12)
    q = torch.logspace(-6, 0, 401)
    u = importance_weights(q, cfg)
    # Strictly decreasing in |Q| everywhere: no two-level plateau below the cap.
    assert bool((u[1:] < u[:-1]).all())
    # The median sample has u = 1/(1 + 1/cap); no weight exceeds cap.
    assert float(u.median()) == pytest.approx(1 / 1.01)
    assert 0.99 * cfg.max_weight < float(u.max()) <= cfg.max_weight
    # The original's defaults gave one constant weight to every |Q| < 0.1.
    assert len(torch.unique(u[q < 0.1])) == int((q < 0.1).sum())


def test_weights_invariant_to_rescaling_q():
    cfg = ImportanceSamplerConfig(min_q_abs=1e-12)
    q = torch.rand(1000, generator=torch.Generator().manual_seed(1)) - 0.5
    torch.testing.assert_close(importance_weights(q, cfg), importance_weights(37.0 * q, cfg))


def test_temperature_is_applied_before_the_cap():
    q = torch.logspace(-3, 0, 51)
    hot = importance_weights(q, ImportanceSamplerConfig(weight_power=2.0, temperature=2.0))
    p1 = importance_weights(q, ImportanceSamplerConfig(weight_power=1.0, temperature=1.0))
    torch.testing.assert_close(hot, p1)
    cold = importance_weights(q, ImportanceSamplerConfig(weight_power=2.0, temperature=0.5))
    assert float(hot.max() / hot.min()) < float(cold.max() / cold.min())
    assert float(cold.max()) <= 100.0 and float(cold.median()) == pytest.approx(1 / 1.01)


def test_nan_inf_and_zero_q():
    sampler = ImportanceSampler(ImportanceSamplerConfig(uniform_mix=0.2))
    q = torch.tensor([float("nan"), float("inf"), 0.0, 1.0])
    probs = sampler.compute_weights(q)
    assert float(probs[0]) == pytest.approx(0.2 / 4)
    assert float(probs[1]) == pytest.approx(0.2 / 4)
    assert float(probs[2]) > float(probs[3]) > float(probs[1])
    assert float(probs.sum()) == pytest.approx(1.0)
    assert sampler.n_fallbacks == 0
    sel = sampler.select(4, 64, values=torch.full((4,), float("nan")))
    assert sampler.n_fallbacks == 1
    assert bool(torch.isfinite(sel.weights).all())
    assert set(sel.idx.tolist()) <= {0, 1, 2, 3}
    assert float(sampler.compute_weights(torch.full((3,), float("nan")))[0]) == pytest.approx(1 / 3)


def test_empty_pool_and_batch_larger_than_pool():
    sampler = ImportanceSampler()
    with pytest.raises(ValueError, match="empty pool"):
        sampler.select(0, 8, values=torch.zeros(0))
    with pytest.raises(ValueError, match="empty pool"):
        ZeroProofSampler().sample_batch(torch.zeros(0, 1), torch.zeros(0), batch_size=4)
    with pytest.raises(ValueError, match="needs the pool"):
        sampler.select(5, 8)
    sel = sampler.select(5, 50, values=torch.tensor([1e-3, 0.1, 0.2, 0.5, 1.0]))
    assert sel.idx.shape == (50,)
    assert int(sel.idx.min()) >= 0 and int(sel.idx.max()) <= 4


def test_seed_usage_prefers_small_q():
    torch.manual_seed(0)
    x_pool, q_pool = pool_1d()
    sampler = ZeroProofSampler(ImportanceSamplerConfig(weight_power=2.0, max_weight=100.0))
    batch_x, idx = sampler.sample_batch(x_pool, q_pool, batch_size=128)
    assert batch_x.shape == (128, 1) and idx.shape == (128,)
    torch.testing.assert_close(batch_x, x_pool[idx])
    near_pool = float((q_pool.abs() < 0.05).float().mean())
    near_batch = float((q_pool[idx].abs() < 0.05).float().mean())
    assert near_batch > 3 * near_pool
    stats = sampler.get_statistics()
    assert stats["total_samples"] == 128
    assert 0 < stats["sample_diversity"] <= 1
    assert stats["mean_q_abs"] == pytest.approx(float(q_pool[idx].abs().mean()), rel=1e-5)
    assert stats["min_q_abs"] >= 0


def test_draw_frequencies_match_compute_weights():
    torch.manual_seed(1)
    q = torch.logspace(-3, 0, 20)
    sampler = ImportanceSampler(ImportanceSamplerConfig(uniform_mix=0.0))
    probs = sampler.compute_weights(q)
    n = 200_000
    idx = torch.cat([sampler.select(20, 20_000, values=q).idx for _ in range(n // 20_000)])
    freq = torch.bincount(idx, minlength=20).double() / n
    se = (probs * (1 - probs) / n).sqrt()
    assert float(((freq - probs).abs() / se).max()) < 5.0


@pytest.mark.parametrize("normalize", [False, True])
def test_correction_weights_give_unbiased_pool_mean(normalize):
    torch.manual_seed(2)
    x, q = pool_1d(3000)
    f = 1.0 / (q.abs() + 0.01)  # large near the pole, like the loss of a pole target
    target = float(f.double().mean())
    sampler = ImportanceSampler(ImportanceSamplerConfig(self_normalize=normalize))
    estimates = []
    for _ in range(400):
        sel = sampler.select(len(x), 128, values=q.abs())
        w = sel.weights.double()
        est = (w * f[sel.idx]).sum() / (w.sum() if normalize else len(w))
        estimates.append(float(est))
    est = torch.tensor(estimates, dtype=torch.float64)
    se = float(est.std() / math.sqrt(len(est)))
    assert abs(float(est.mean()) - target) < 4 * se + (0.01 * target if normalize else 0.0)


def test_max_correction_clips_weights():
    q = torch.tensor([1e-6] + [1.0] * 999)
    cfg = ImportanceSamplerConfig(uniform_mix=0.05, self_normalize=False, max_correction=2.0,
                                  cap_reference="absolute", max_weight=1e12)
    sel = ImportanceSampler(cfg).select(1000, 256, values=q)
    assert float(sel.weights.max()) == pytest.approx(2.0)
    assert float(sel.weights.min()) < 0.01


def test_hybrid_batch_ratio_and_mixture_weights():
    torch.manual_seed(3)
    q = torch.tensor([1e-6] + [1.0] * 999)  # importance draws (almost) only ever pick index 0
    cfg = ImportanceSamplerConfig(importance_batch_ratio=0.7, uniform_mix=0.0,
                                  cap_reference="absolute", max_weight=1e12, self_normalize=False)
    sampler = ZeroProofSampler(cfg)
    x = torch.arange(1000.0)[:, None]
    counts = []
    for _ in range(20):
        _, idx = sampler.hybrid_sample(x, q, batch_size=128)
        counts.append(int((idx == 0).sum()))
        sel = sampler.last_selection
        n, s = 1000, 0.3  # draws from π = 0.7·importance + 0.3·uniform
        pi0 = 0.7 * 1.0 + s / n  # importance puts (almost) all its mass on index 0
        w0 = sel.weights[sel.idx == 0]
        torch.testing.assert_close(w0, torch.full_like(w0, 1.0 / (n * pi0)), rtol=1e-4, atol=0)
        w_other = sel.weights[sel.idx != 0]
        torch.testing.assert_close(w_other, torch.full_like(w_other, 1.0 / s), rtol=1e-4, atol=0)
    # index 0 ~ Binomial(128, 0.7003): mean 89.6, sd 5.2 per batch, 1.2 over 20 batches
    assert abs(sum(counts) / 20 - 128 * 0.7003) < 4
    assert sampler.get_statistics()["total_samples"] == 20 * 128


def test_prior_restricts_draws_and_weights_target_prior():
    q = torch.ones(100)
    prior = torch.zeros(100)
    prior[:30] = 1.0
    sampler = ImportanceSampler(ImportanceSamplerConfig(weight_power=0.0, self_normalize=False))
    sel = sampler.select(100, 500, values=q, prior=prior)
    assert int(sel.idx.max()) < 30
    torch.testing.assert_close(sel.weights, torch.ones(500))
    undo = ImportanceSampler(ImportanceSamplerConfig(weight_power=0.0, self_normalize=False,
                                                     weights_target="uniform"))
    sel = undo.select(100, 500, values=q, prior=prior)
    torch.testing.assert_close(sel.weights, torch.full((500,), 0.3))


@pytest.mark.parametrize("device", DEVICES)
def test_device_argument(device):
    x, q = pool_1d(500)
    sampler = ImportanceSampler()
    sel = sampler.select(500, 32, values=q, device=device)
    assert sel.idx.device.type == device and sel.weights.device.type == device
    sel = sampler.select(500, 32, values=q, device=torch.device(device))
    assert sel.idx.device.type == device
    bx, idx = ZeroProofSampler().hybrid_sample(x.to(device), q.to(device), 16)
    assert bx.device.type == device and idx.device.type == device
    other = ImportanceSampler()
    other.load_state_dict(roundtrip(sampler.state_dict()))
    assert torch.equal(sampler.select(500, 32, values=q, device=device).idx,
                       other.select(500, 32, values=q, device=device).idx)


def test_state_dict_roundtrip_gives_same_next_draw():
    torch.manual_seed(4)
    _, q = pool_1d(1000)
    a = ImportanceSampler()
    a.select(1000, 64, values=q)
    state = roundtrip(a.state_dict())
    b = ImportanceSampler()
    b.load_state_dict(state)
    sa, sb = a.select(1000, 64, values=q), b.select(1000, 64, values=q)
    assert torch.equal(sa.idx, sb.idx)
    torch.testing.assert_close(sa.weights, sb.weights)
    assert a.metrics(DrawCounts()) == b.metrics(DrawCounts())


def test_newton_distance_is_gauge_invariant():
    x = torch.tensor([[0.1], [0.3], [0.8]], dtype=torch.float64)
    d = newton_distance(lambda t: 5.0 * (t[:, 0] - 0.3), x)
    torch.testing.assert_close(d, torch.tensor([0.2, 0.0, 0.5], dtype=torch.float64))
    pts = torch.tensor([[0.6, 0.0], [0.0, 0.45]], dtype=torch.float64)
    d2 = newton_distance(lambda t: (t * t).sum(dim=1) - 0.25, pts)
    r = pts.norm(dim=1)
    torch.testing.assert_close(d2, (r * r - 0.25).abs() / (2 * r))
    sampler = ImportanceSampler(distance="newton")
    torch.testing.assert_close(sampler.distance_values(x, q_fn=lambda t: 3.0 * (t[:, 0] - 0.3)),
                               torch.tensor([0.2, 0.0, 0.5], dtype=torch.float64))


def test_config_validation_and_overrides():
    with pytest.raises(ConfigError) as err:
        ImportanceSamplerConfig(temperature=0.0)
    assert err.value.key == "temperature"
    with pytest.raises(ConfigError) as err:
        ImportanceSampler(distance="euclid")
    assert err.value.key == "distance"
    assert ImportanceSampler(weight_power=1.0).config.weight_power == 1.0


@pytest.mark.slow
def test_pool_above_multinomial_limit():
    q = torch.rand(2**24 + 7, generator=torch.Generator().manual_seed(0))
    sel = ImportanceSampler().select(len(q), 64, values=q)
    assert int(sel.idx.max()) < len(q)


# -- active ------------------------------------------------------------------------------------


def run_active(sampler: ActiveSampler, problem: PoleProblem, rounds: int) -> tuple[Pool, list]:
    pool = Pool()
    proposals = []
    for r in range(rounds):
        pts = sampler.propose(problem, pool, r)
        proposals.append(pts)
        if pts is not None and len(pts):
            pool.add(problem.label(pts))
    return pool, proposals


def test_active_populates_every_bucket_on_rational1d():
    problem = Rational1D()
    pool, _ = run_active(ActiveSampler(), problem, 3)
    counts = torch.bincount(metrics.bucket_index(pool.field("distance")), minlength=5)
    assert bool((counts >= 2).all()), counts
    sampler_roots = ActiveSampler()
    run_active(sampler_roots, problem, 1)
    assert sampler_roots.roots.shape == (1, 1)
    assert float(sampler_roots.roots[0, 0]) == pytest.approx(0.3, abs=1e-12)


def test_active_refines_where_q_is_small():
    problem = Rational1D()
    sampler = ActiveSampler(ActiveSamplerConfig(near_root_points=0))
    _, props = run_active(sampler, problem, 4)
    h0 = 2.0 / 63
    for pts in props[1:]:
        assert len(pts) > 0
        assert float(problem.q(pts.double()).abs().max()) < 0.1 + h0
    assert int(sampler.level.max()) == 4
    assert sampler.metrics(DrawCounts())["sampler/active/refined"] > 0
    # Parents are refined once: a later round never re-adds points (no duplicates).
    keys = torch.round(sampler.points / 1e-9).long()
    assert len(torch.unique(keys, dim=0)) == len(sampler.points)


def test_active_hard_caps_are_exact():
    problem = Rational1D()
    cfg = ActiveSamplerConfig(initial_grid_size=16, max_grid_points=60, points_per_round=7)
    sampler = ActiveSampler(cfg)
    _, props = run_active(sampler, problem, 12)
    sizes = [len(p) for p in props]
    assert sizes[0] == 16 + 7
    assert all(s <= 7 for s in sizes[1:])
    assert sum(sizes) == len(sampler.points) == 60
    assert len(sampler.history) == 12


def test_active_points_inside_box_and_bounds_from_constructor():
    problem = Rational1D(pole=0.99)
    sampler = ActiveSampler(bounds=torch.tensor([[-1.0, 1.0]]))
    pool, _ = run_active(sampler, problem, 3)
    x = pool.inputs[:, 0]
    assert float(x.min()) >= -1.0 and float(x.max()) <= 1.0


class Circle2D(PoleProblem):
    """y = 1/Q with Q = x² + y² − 0.25 (a circle of poles, radius 0.5)."""

    def __init__(self) -> None:
        super().__init__([-1.0, -1.0], [1.0, 1.0], n_eval=10)

    def target(self, x):
        return (1.0 / self.q(x))[:, None]

    def q(self, inputs):
        return (inputs * inputs).sum(dim=1) - 0.25

    def distance(self, inputs):
        return (inputs.double().norm(dim=1) - 0.5).abs().to(inputs.dtype)


def test_active_nd_projects_onto_q_zero_and_offsets_along_normal():
    problem = Circle2D()
    sampler = ActiveSampler(ActiveSamplerConfig(initial_grid_size=100, max_grid_points=3000))
    pool, _ = run_active(sampler, problem, 2)
    roots = sampler.roots
    assert len(roots) >= 4
    torch.testing.assert_close(roots.norm(dim=1), torch.full((len(roots),), 0.5,
                                                             dtype=torch.float64))
    ladder = sampler.points[sampler.kind == 1]
    dist = (ladder.norm(dim=1) - 0.5).abs()
    counts = torch.bincount(metrics.bucket_index(dist), minlength=5)
    assert bool((counts >= len(roots)).all()), counts
    pool_counts = torch.bincount(metrics.bucket_index(pool.field("distance")), minlength=5)
    assert bool((pool_counts > 0).all()), pool_counts


def test_active_select_uniform_and_state_roundtrip():
    problem = Rational1D()
    a = ActiveSampler()
    pool, _ = run_active(a, problem, 2)
    sel = a.select(len(pool), 64)
    torch.testing.assert_close(sel.weights, torch.ones(64))
    assert sel.ess == pytest.approx(64)
    b = ActiveSampler()
    b.load_state_dict(roundtrip(a.state_dict()))
    pa, pb = a.propose(problem, pool, 2), b.propose(problem, pool, 2)
    assert torch.equal(pa, pb)
    assert torch.equal(a.select(len(pool), 8).idx, b.select(len(pool), 8).idx)
    mixed = ActiveSampler(importance_mix=0.5)
    assert mixed.capabilities.needs_q and not ActiveSampler().capabilities.needs_q
    with pytest.raises(ValueError, match="needs the pool"):
        mixed.select(10, 4)


def test_active_adapt_frequency():
    sampler = ActiveSampler(adapt_frequency=3)
    _, props = run_active(sampler, Rational1D(), 7)
    assert [p is None for p in props] == [False, True, True, False, True, True, False]


# -- hybrid ------------------------------------------------------------------------------------


def test_hybrid_sampler_batches_and_active_cadence():
    torch.manual_seed(5)
    q = torch.tensor([1e-6] + [1.0] * 499)
    cfg = HybridSamplerConfig(active_every=2, cap_reference="absolute", max_weight=1e12,
                              importance_batch_ratio=0.5)
    sampler = HybridSampler(cfg)
    sel = sampler.select(500, 100, values=q)
    assert 50 <= int((sel.idx == 0).sum()) <= 53
    assert float(sel.weights.mean()) == pytest.approx(1.0)
    _, props = run_active(sampler, Rational1D(), 5)
    assert [p is None for p in props] == [False, True, False, True, False]
    assert sampler.metrics(DrawCounts())["sampler/hybrid/active_rounds"] == 3
    other = HybridSampler(cfg)
    other.load_state_dict(roundtrip(sampler.state_dict()))
    assert torch.equal(sampler.select(500, 64, values=q).idx, other.select(500, 64, values=q).idx)
    assert torch.equal(other.active.points, sampler.active.points)


def _near(sel, q: torch.Tensor) -> float:
    return float((q[sel.idx] < 1.01).float().mean())


@pytest.mark.parametrize("change", ["add_", "data", "numpy", "assign_data"])
def test_draws_follow_every_way_of_changing_q(change: str) -> None:
    """A |Q| tensor passed to ``select`` is read afresh at every call, so no way of changing it
    (in place, through ``.data``, through a NumPy view, by assigning ``.data``) can leave stale
    weights; a prepared table is a snapshot and says so."""
    sampler = ImportanceSampler(ImportanceSamplerConfig(weight_power=2.0, uniform_mix=0.0))
    q = torch.linspace(-1.0, 1.0, 1001).abs()
    table = sampler.prepare(q)
    first = sampler.select(len(q), 512, values=q)
    assert _near(first, q) > 0.1
    flat = torch.linspace(-1.0, 1.0, 1001).abs() + 1.0  # |Q| >= 1 everywhere: flat weights
    if change == "add_":
        q.add_(1.0)
    elif change == "data":
        q.data.add_(1.0)
    elif change == "numpy":
        q.numpy()[:] += 1.0
    else:
        q.data = flat.clone()
    assert torch.equal(q, flat)
    assert _near(sampler.select(len(q), 512, values=q), q) < 0.1
    snapshot = sampler.select(len(q), 512, values=table)  # the law of |Q| as it was when prepared
    assert _near(snapshot, flat) > 0.1


def test_inference_mode_q_and_weight_cap() -> None:
    with torch.inference_mode():
        q = torch.linspace(-1.0, 1.0, 1001).abs()
    sampler = ImportanceSampler(ImportanceSamplerConfig(uniform_mix=0.0))
    assert len(sampler.select(len(q), 64, values=q).idx) == 64
    assert len(sampler.select(len(q), 64, values=sampler.prepare(q)).idx) == 64
    other = torch.full((1001,), 1.0)
    other[7] = 1e-4
    sel = sampler.select(len(other), 512, values=other)
    assert float((sel.idx == 7).float().mean()) > 0.05  # capped weight 100 vs 1000 others: ~9%


def test_weights_target_none_tilts_the_objective() -> None:
    """Without corrections every weight is 1 and the weighted batch mean estimates the mean under
    the sampling density (here ∝ 1/(|x|² + 1/max_weight·a_ref²)), not the uniform pool mean."""
    x = torch.linspace(-1.0, 1.0, 2001, dtype=torch.float64)
    q = x.abs()
    cfg = ImportanceSamplerConfig(weight_power=2.0, max_weight=1e4, uniform_mix=0.2,
                                  weights_target="none")
    sampler = ImportanceSampler(cfg)
    sel = sampler.select(len(q), 200_000, values=q)
    assert torch.equal(sel.weights, torch.ones(200_000))
    assert sel.ess == pytest.approx(200_000)
    pi = sampler.compute_weights(q)  # the density the batch follows (uniform_mix 0.2)
    f = q  # estimate E[|x|]
    expected_tilted = float((pi * f).sum())
    estimate = float((sel.weights.double() * f[sel.idx]).mean())
    assert estimate == pytest.approx(expected_tilted, rel=0.03)
    assert estimate < 0.5 * float(f.mean())  # far below the uniform mean 0.5
    corrected = ImportanceSampler(dataclasses.replace(cfg, weights_target="prior"))
    sel_c = corrected.select(len(q), 200_000, values=q)
    unbiased = float((sel_c.weights.double() * f[sel_c.idx]).mean())
    assert unbiased == pytest.approx(float(f.mean()), rel=0.03)


def test_row_groups_and_first_new_match_torch_unique() -> None:
    """The sort-based grouping is exact: same partition as torch.unique(dim=0), first copies kept."""
    gen = torch.Generator().manual_seed(0)
    existing = torch.randint(0, 6, (500, 3), generator=gen)
    candidates = torch.cat([existing[:50], torch.randint(0, 6, (400, 3), generator=gen)])
    both = torch.cat([existing, candidates])
    groups = row_groups(both)
    _, inverse = torch.unique(both, dim=0, return_inverse=True)
    same = groups[:, None] == groups[None, :]
    assert torch.equal(same, inverse[:, None] == inverse[None, :])
    mask = first_new(existing, candidates)
    seen = {tuple(r) for r in existing.tolist()}
    expected = []
    for row in candidates.tolist():
        expected.append(tuple(row) not in seen)
        seen.add(tuple(row))
    assert mask.tolist() == expected


def _tv(counts: torch.Tensor, p: torch.Tensor) -> float:
    return 0.5 * float((counts.double() / counts.sum() - p).abs().sum())


def test_zeroproof_law_is_drawn_exactly_at_the_sampling_noise_floor() -> None:
    """cap=hard, cap_reference=absolute, uniform_mix=0 draws ZeroProofML's
    π ∝ min(max(|Q|, min_q_abs)^(−p), max_weight)^(1/T): total variation from that law at the
    level of exact multinomial draws of the same size, on a three-pole pool (T = 1 and 2)."""
    x = torch.linspace(-1, 1, 3001, dtype=torch.float64)[:, None]
    q = (x[:, 0] + 0.61) * (x[:, 0] - 0.07) * (x[:, 0] - 0.83)
    n = 300_000
    for temperature in (1.0, 2.0):
        a = np.maximum(np.abs(q.numpy()), 1e-6)
        w = np.minimum(a ** -2.0, 100.0) ** (1.0 / temperature)
        law = torch.from_numpy(w / w.sum())
        sampler = ZeroProofSampler(ImportanceSamplerConfig(
            weight_power=2.0, max_weight=100.0, temperature=temperature, cap="hard",
            cap_reference="absolute", uniform_mix=0.0))
        _, idx = sampler.sample_batch(x, q, n)
        ours = _tv(torch.bincount(idx, minlength=len(x)), law)
        gen = torch.Generator().manual_seed(7)
        floor = np.mean([_tv(torch.bincount(torch.multinomial(law, n, True, generator=gen),
                                            minlength=len(x)), law) for _ in range(3)])
        assert ours < 1.25 * floor, (temperature, ours, floor)
        default = ZeroProofSampler(ImportanceSamplerConfig(weight_power=2.0, max_weight=100.0))
        _, idx = default.sample_batch(x, q, n)
        assert _tv(torch.bincount(idx, minlength=len(x)), law) > 10 * floor  # another law


def test_importance_zeroproof_preset_builds_that_law(composer) -> None:
    cfg = composer(["sampler=importance_zeroproof"])
    sampler = hydra.utils.instantiate(cfg.sampler, _convert_="all")
    c = sampler.config
    assert (c.cap, c.cap_reference, c.uniform_mix, c.weights_target) == ("hard", "absolute", 0.0, "none")


@pytest.mark.parametrize("cfg", [
    ImportanceSamplerConfig(),
    ImportanceSamplerConfig(temperature=2.0, weight_power=1.5, uniform_mix=0.3),
    ImportanceSamplerConfig(cap="hard", cap_reference="median", temperature=3.0),
])
def test_the_fast_draw_follows_compute_weights(cfg) -> None:
    """The hot path (prepared tables, folded formula) draws from the law that ``compute_weights``
    states term by term, and its self-normalised weights are ∝ 1/(N·π_i)."""
    x = torch.linspace(-1, 1, 2001, dtype=torch.float64)
    q = (x + 0.4) * (x - 0.55)
    sampler = ImportanceSampler(cfg)
    law = sampler.compute_weights(q)
    n = 200_000
    sel = sampler.select(len(q), n, values=sampler.prepare(q))
    ours = _tv(torch.bincount(sel.idx, minlength=len(q)), law)
    gen = torch.Generator().manual_seed(3)
    floor = _tv(torch.bincount(torch.multinomial(law, n, True, generator=gen), minlength=len(q)), law)
    assert ours < 1.3 * floor, (ours, floor)
    ratio = 1.0 / (len(q) * law[sel.idx])
    torch.testing.assert_close(sel.weights.double(), ratio / ratio.mean(), rtol=1e-4, atol=0)
