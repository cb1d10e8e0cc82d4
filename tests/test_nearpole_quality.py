"""Near-pole quality checks: hybrid-gradient direction, root refinement for PLE, exact and noisy
labels, and that active sampling really trains on points near the pole (small, real runs)."""

from __future__ import annotations

import pytest
import torch

from nearpole_exp.errors import ConfigError
from nearpole_exp.models.rational import RationalModel, hybrid_divide
from nearpole_exp.problems.base import ModelQ
from nearpole_exp.problems.poles import hashed_normal, refine_roots
from nearpole_exp.problems.rational1d import Rational1D
from nearpole_exp.runner import Runner


def test_hybrid_divide_keeps_the_exact_direction_and_bounds_it():
    p = torch.tensor([2.0, -1.5, 0.7, 3.0], dtype=torch.float64, requires_grad=True)
    q = torch.tensor([1e-3, -4e-3, 0.5, 2e-8], dtype=torch.float64, requires_grad=True)
    delta = 1e-2
    hybrid_divide(p, q, delta).sum().backward()
    exact_p, exact_q = 1.0 / q.detach(), -p.detach() / q.detach() ** 2
    inside = q.detach().abs() < delta
    scale = torch.where(inside, q.detach() ** 2 / (q.detach() ** 2 + delta**2), torch.ones(4))
    torch.testing.assert_close(p.grad, exact_p * scale)
    torch.testing.assert_close(q.grad, exact_q * scale)
    assert bool((torch.sign(q.grad) == torch.sign(exact_q)).all())  # never pushed away from a pole
    assert float(q.grad[inside].abs().max()) <= float(p.detach()[inside].abs().max()) / delta**2
    assert float(p.grad[inside].abs().max()) <= 1 / (2 * delta)


def _fit_root(delta: float, b0: float, steps: int = 600) -> float:
    """Fit y = 1/(x − 0.3) + 0.5x with (c0 + c1·x + c2·x²)/(x − b) by the relative quotient loss."""
    x = torch.linspace(-1, 1, 401, dtype=torch.float64)
    x = x[(x - 0.3).abs() > 1e-3]
    y = 1.0 / (x - 0.3) + 0.5 * x
    b = torch.tensor(b0, dtype=torch.float64, requires_grad=True)
    c = torch.tensor([0.1, 0.0, 0.0], dtype=torch.float64, requires_grad=True)
    opt = torch.optim.Adam([b, c], lr=1e-2)
    for _ in range(steps):
        opt.zero_grad()
        pred = hybrid_divide(c[0] + c[1] * x + c[2] * x * x, x - b, delta)
        ((pred - y) ** 2 / (1 + y**2)).mean().backward()
        opt.step()
    return float(b.detach())


def test_a_wide_band_pulls_an_outside_root_into_the_domain_and_exact_pushes_it_out():
    """From a pole-free start (root at 1.5), the exact quotient gradient drives the root away;
    δ above every |Q| moves it towards the pole at 0.3 (the old in-band derivative of
    P·Q/(Q² + δ²) sent it to ~9)."""
    assert _fit_root(0.0, 1.5) > 1.5
    assert _fit_root(10.0, 1.5) < 1.0


def test_refine_roots_reaches_round_off_below_the_grid_step():
    root = 0.3 + 1.234e-9
    q_fn = lambda x: (x[:, 0] - root) * (1 + x[:, 0] ** 2)  # noqa: E731
    coarse = torch.tensor([0.3001, 0.7], dtype=torch.float64)  # 2nd has no root in its bracket
    out = refine_roots(q_fn, coarse, 1e-3, torch.float64)
    assert abs(float(out[0]) - root) < 1e-15
    assert float(out[1]) == 0.7


def test_ple_resolves_a_pole_far_below_the_evaluation_grid():
    problem = Rational1D()
    model = RationalModel(1, 1, p_degree=3, q_degree=1, input_bounds=[[-1.0, 1.0]]).double()
    with torch.no_grad():
        model.q_coef.copy_(torch.tensor([-0.3 - 2e-10, 1.0], dtype=torch.float64))  # Q ∝ x − (0.3 + 2e-10)
    found = problem.found_poles(lambda x: model(x.double()), ModelQ(model.q_values, torch.float64))
    assert len(found) == 1 and abs(float(found[0]) - 0.3 - 2e-10) < 1e-14


def test_labels_are_exact_float64_and_noise_is_a_fixed_function_of_x():
    exact = Rational1D()
    x = torch.tensor([[0.3 + 1e-6], [-0.5], [0.9]])
    s = exact.label(x)
    assert s.inputs.dtype == torch.float32 and s.targets.dtype == torch.float64
    torch.testing.assert_close(s.targets, exact.target(x.double()), rtol=0, atol=0)
    noisy = Rational1D(label_noise=1e-3)
    rel = noisy.label(x).targets / s.targets - 1
    torch.testing.assert_close(rel, noisy.label(x).targets / s.targets - 1, rtol=0, atol=0)
    assert 0 < float(rel.abs().max()) < 6e-3
    z = hashed_normal(torch.linspace(-1, 1, 100_001)[:, None], 2, seed=0)
    assert abs(float(z.mean())) < 0.02 and abs(float(z.std()) - 1) < 0.02
    assert abs(float(torch.corrcoef(z.T)[0, 1])) < 0.02
    assert not torch.equal(z, hashed_normal(torch.linspace(-1, 1, 100_001)[:, None], 2, seed=1))
    assert exact.poles().dtype == torch.float64


def _near_draws(composer, sampler: str) -> tuple[int, int]:
    cfg = composer(["debug=default", "trainer.progress=false", f"sampler={sampler}",
                    "trainer.rounds=2", "trainer.steps_per_round=25", "trainer.initial_points=256",
                    "trainer.batch_size=64", "trainer.num_threads=1", "seed=3"], sampler)
    runner = Runner(cfg, cfg.hydra.runtime.output_dir)
    runner.run()
    draws = runner.pool.draws.counts(len(runner.pool)).cpu()
    dist = runner.pool.field("distance").cpu()
    near = dist < 1e-3
    return int(draws[near].sum()), int(draws.sum())


def test_active_trains_on_points_near_the_pole_and_uniform_hardly_does(composer):
    active, total_a = _near_draws(composer, "active")
    uniform, total_u = _near_draws(composer, "uniform")
    assert total_a == total_u == 2 * 25 * 64  # equal gradient steps and batch size
    # 256 uniform points on [-1, 1] put ~0.26 points within 1e-3 of the pole; the active
    # ladders add 18 there (distances 1e-7 … 1e-3 on both sides), drawn with the rest.
    assert uniform <= 20
    assert active >= 10 * max(uniform, 1) and active / total_a > 0.01


def test_negative_label_noise_is_rejected():
    with pytest.raises(ConfigError) as err:
        Rational1D(label_noise=-1e-3)
    assert err.value.key == "label_noise"


def _matched_fit(composer, sampler: str) -> dict:
    """rational1d with a rational model of the truth's degrees (P 3, Q 1), equal AdamW steps and
    no polish (which would take both to the same optimum)."""
    cfg = composer(["experiment=nearpole_rational1d", "logger=none", "trainer.progress=false",
                    "trainer.plots=false", "trainer.num_threads=1", "trainer.rounds=2",
                    "trainer.steps_per_round=600", "trainer.initial_points=2048",
                    "trainer.eval_every=2", "problem.n_eval=400", "model.p_degree=3",
                    "model.q_degree=1", "polish=none", f"sampler={sampler}", "seed=0"], sampler)
    return Runner(cfg, cfg.hydra.runtime.output_dir).run()


def test_tilted_importance_locates_the_pole_far_faster_than_uniform(composer):
    """The objective tilted towards |Q| → 0 (no corrections) pins the pole in the same number of
    steps in which the uniform objective has barely moved it (benchmarks/nearpole.md, ×30+)."""
    uniform = _matched_fit(composer, "uniform")
    tilted = _matched_fit(composer, "importance_tilted")
    # measured at 1200 steps, seed 0: PLE 9.3e-3 vs 1.0e-4, B4 7.7e-3 vs 7.3e-4
    assert tilted["eval/ple"] < uniform["eval/ple"] / 10
    assert tilted["eval/relerr_median/B4"] < uniform["eval/relerr_median/B4"] / 3


def test_linear_rational_model_is_linear_in_d_with_a_positive_denominator():
    from nearpole_exp.models.linear_rational import LinearRationalModel

    torch.manual_seed(0)
    model = LinearRationalModel(4, 2, context_dims=[0, 1]).double()
    x = torch.randn(64, 4, dtype=torch.float64)
    x2 = x.clone()
    x2[:, 2:] *= -3.0
    torch.testing.assert_close(model(x2), -3.0 * model(x))  # linear in (dx, dy)
    assert bool((model.q_values(x) > 0).all())
    # periodic context: θ and θ + 2π give the same output
    x3 = x.clone()
    x3[:, :2] += 2 * torch.pi
    torch.testing.assert_close(model(x3), model(x), rtol=1e-9, atol=1e-12)
    # q can vanish exactly where a feature does: one square term on sin θ2, floor → 0 limit
    with torch.no_grad():
        model.square_terms.weight.zero_()
        model.square_terms.weight[0, 3] = 1.0  # features: cos θ1, cos θ2, sin θ1, sin θ2
    with torch.no_grad():
        q = model.q_values(torch.tensor([[0.3, 0.0, 0.1, 0.1]], dtype=torch.float64))
    assert 0 < float(q) < 1e-2
    with torch.no_grad():  # softplus underflowing to 0 exactly on the singular line: still finite
        model.floor_head.bias.fill_(-1e4)
        model.floor_head.weight.zero_()
        on_line = torch.tensor([[0.3, 0.0, 0.1, 0.1]], dtype=torch.float64)
        assert float(model.q_values(on_line)) > 0 and bool(torch.isfinite(model(on_line)).all())
    with pytest.raises(ConfigError) as err:
        LinearRationalModel(4, 2, context_dims=[0, 1, 2, 3])
    assert err.value.key == "context_dims"


def test_linear_rational_learns_rr_ik_near_the_singularity(composer):
    """The structured model fits the damped RR-IK target near det J = 0 far better than the
    generic rational model at the same small budget (benchmarks/nearpole.md: 10× and more)."""
    def fit(model: str) -> dict:
        cfg = composer(["experiment=nearpole_rr_ik", "logger=none", "trainer.progress=false",
                        "trainer.plots=false", "trainer.num_threads=1", "trainer.rounds=2",
                        "trainer.steps_per_round=1000",
                        "trainer.eval_every=2", "problem.n_eval=500", f"model={model}", "seed=0"],
                       model)
        return Runner(cfg, cfg.hydra.runtime.output_dir).run()

    generic, structured = fit("rational"), fit("linear_rational")
    # measured (seed 0, 2000 steps): eval/mse 0.19 vs 0.016, recipe B4 0.25 vs 0.020
    assert structured["eval/mse"] < generic["eval/mse"] / 5
    assert structured["eval/recipe_mse/B4"] < generic["eval/recipe_mse/B4"] / 5


def test_near_pole_verdict_against_trivial_predictors() -> None:
    from nearpole_exp.metrics import near_pole_failure, near_pole_relerr

    x = torch.linspace(-1, 1, 2000, dtype=torch.float64)[:, None]  # never exactly on the pole
    y = 1.0 / (x - 0.3)
    dist = (x[:, 0] - 0.3).abs()
    assert near_pole_relerr(torch.zeros_like(y), y, dist) == 1.0  # the zero predictor
    assert near_pole_relerr(y * 1.01, y, dist) == pytest.approx(0.01)
    assert near_pole_failure(0.01, 1e-4, 2.0) is None
    assert "relative error" in near_pole_failure(1.0, 1e-4, 2.0)
    assert "PLE" in near_pole_failure(0.01, 0.32, 2.0)
    assert near_pole_failure(float("nan"), None, 2.0) is not None


def test_a_run_that_misses_the_pole_says_so(composer, caplog) -> None:
    """A run that cannot have learnt the pole (a learning rate too small to move, no polish)
    completes with ``fit/near_pole_failed`` and a warning; a normal run does not."""
    base = ["trainer.progress=false", "logger=none", "trainer.plots=false"]
    cfg = composer([*base, "debug=default", "trainer.lr=1e-12", "polish=none"], "stuck")
    with caplog.at_level("WARNING"):
        summary = Runner(cfg, cfg.hydra.runtime.output_dir).run()
    assert summary["status"] == "completed" and summary["fit/near_pole_failed"] is True
    assert any("failed near the poles" in r.getMessage() for r in caplog.records)
    cfg = composer([*base, "trainer.eval_every=10"], "fit")  # the default run
    summary = Runner(cfg, cfg.hydra.runtime.output_dir).run()
    assert summary["fit/near_pole_failed"] is False, summary["fit/near_pole_reason"]
