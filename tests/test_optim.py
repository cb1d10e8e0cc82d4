"""The optimiser as a choice and the polish: every optimizer and schedule composes, saves and resumes
exactly; the exact solve reaches the optimum of a rational least-squares problem and keeps the
denominator's degree as low as the data allow; schedules and objective weights are what they say."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from nearpole_exp.config.validate import validate_overrides
from nearpole_exp.errors import ConfigError
from nearpole_exp.models import rational_solve
from nearpole_exp.models.rational import RationalModel
from nearpole_exp.optim.schedules import Constant, Cosine
from nearpole_exp.runner import Runner
from nearpole_exp.sampling.importance import ImportanceSampler
from nearpole_exp.sampling.rad import RADSampler, rad_density

from .conftest import TINY, run_interrupted_then_resumed

pytestmark = pytest.mark.usefixtures("one_thread")


def rational_data(n: int = 600, noise: float = 0.0, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """y = (1 + 2x − x³)/((x − 0.4)(x + 0.7)) on [-1, 1], relative noise ``noise``."""
    gen = torch.Generator().manual_seed(seed)
    x = (torch.rand(n, 1, generator=gen, dtype=torch.float64) * 2 - 1)
    t = x[:, 0]
    y = ((1 + 2 * t - t**3) / ((t - 0.4) * (t + 0.7)))[:, None]
    return x, y * (1 + noise * torch.randn(n, 1, generator=gen, dtype=torch.float64))


def test_the_exact_solve_recovers_a_rational_function_at_its_own_degree() -> None:
    """Exact data of degrees (3, 2) fitted by a model allowing (9, 8): the held-out choice keeps
    Q at degree 2 (no pole–zero doublet) and the poles sit at round-off."""
    x, y = rational_data()
    model = RationalModel(1, 1, p_degree=9, q_degree=8).double()
    out = model.solve_linearised(x, y)
    assert out["model/q_degree"] == 2 and out["polish/objective"] < 1e-28
    q = model.q_coef.detach()[:3]  # Chebyshev coefficients of Q: c0·T0 + c1·x + c2·(2x² − 1)
    roots = torch.tensor(sorted(np.roots([2 * float(q[2]), float(q[1]), float(q[0] - q[2])])),
                         dtype=torch.float64)
    assert torch.allclose(roots, torch.tensor([-0.7, 0.4], dtype=torch.float64), atol=1e-12)
    grid = torch.linspace(-0.69, 0.39, 101, dtype=torch.float64)[:, None]
    truth = ((1 + 2 * grid - grid**3) / ((grid - 0.4) * (grid + 0.7)))
    assert torch.allclose(model(grid), truth, rtol=1e-10)


def test_the_exact_solve_is_the_optimum_of_the_weighted_objective() -> None:
    """Noisy data, sample weights, a fixed degree: no perturbation of the solution on the unit
    sphere of Q lowers the objective, and L-BFGS started there does not either."""
    x, y = rational_data(noise=1e-2, seed=1)
    w = torch.rand(len(x), generator=torch.Generator().manual_seed(2), dtype=torch.float64) + 0.1
    model = RationalModel(1, 1, p_degree=4, q_degree=3).double()
    best = model.solve_linearised(x, y, w, select_degree=False)["polish/objective"]
    a, b = model.linear_bases(x)
    p, q = model.p_coef.detach().clone(), model.q_coef.detach().clone()
    gen = torch.Generator().manual_seed(3)
    for scale in (1e-6, 1e-3, 1e-1):
        for _ in range(20):
            dq = q + scale * torch.randn(q.shape, generator=gen, dtype=torch.float64)
            dp = p + scale * torch.randn(p.shape, generator=gen, dtype=torch.float64)
            assert rational_solve.objective(a, b, y, dp, dq / dq.norm(), w) >= best * (1 - 1e-9)

    def objective() -> torch.Tensor:
        pq_p, pq_q = model.pq(x)
        r = (pq_p - y * pq_q[:, None]).pow(2)[:, 0] / (1 + y[:, 0] ** 2)
        return (w * r).sum() / w.sum()

    assert float(objective().detach()) == pytest.approx(best, rel=1e-9)
    opt = torch.optim.LBFGS(model.parameters(), max_iter=200, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        value = objective()
        value.backward()
        return value

    opt.step(closure)
    assert float(objective().detach()) >= best * (1 - 1e-6)


def test_noise_keeps_the_degree_the_held_out_rows_support() -> None:
    """With 1 % noise the spare degrees fit the noise on the training rows, not the held-out ones."""
    x, y = rational_data(n=2000, noise=1e-2, seed=4)
    model = RationalModel(1, 1, p_degree=12, q_degree=11).double()
    assert model.solve_linearised(x, y)["model/q_degree"] <= 4


def test_two_dimensional_polynomial_basis_finds_an_ellipse_of_poles() -> None:
    gen = torch.Generator().manual_seed(5)
    x = torch.rand(1500, 2, generator=gen, dtype=torch.float64) * 2 - 1
    qx = (x[:, 0] / 0.6) ** 2 + ((x[:, 1] - 0.1) / 0.4) ** 2 - 1
    y = (1 / qx + x[:, 0] * x[:, 1])[:, None]
    model = RationalModel(2, 1, p_degree=6, q_degree=4,
                          input_bounds=[[-1.0, 1.0], [-1.0, 1.0]]).double()
    assert model.basis == "chebyshev"
    assert model.solve_linearised(x, y)["model/q_degree"] == 2
    on_curve = torch.stack([0.6 * torch.cos(torch.linspace(0, 6, 50, dtype=torch.float64)),
                            0.1 + 0.4 * torch.sin(torch.linspace(0, 6, 50, dtype=torch.float64))], 1)
    assert float(model.q_values(on_curve).detach().abs().max()) < 1e-10


def test_a_three_pole_target_fits_near_every_pole_with_the_defaults(composer) -> None:
    """The defaults (AdamW steps, the exact polish) on multipole1d, at a small budget."""
    cfg = composer([*TINY, "problem=multipole1d", "logger=none"])
    summary = Runner(cfg, Path(cfg.hydra.runtime.output_dir)).run()
    for bucket in range(3):
        assert summary[f"eval/relerr_median/B{bucket}"] < 1e-6, bucket
    assert summary["eval/ple"] < 1e-10 and not summary["fit/near_pole_failed"]


@pytest.mark.parametrize("overrides", [
    ["optimizer=adamw", "scheduler=cosine", "polish=auto"],
    ["optimizer=sgd", "trainer.lr=1e-3", "scheduler=constant", "scheduler.warmup_steps=10",
     "polish=none"],
    ["optimizer=lbfgs", "polish=none"],
    ["optimizer=lbfgs", "trainer.batch_size=0", "polish=exact"],
    ["optimizer=adamw", "polish=lbfgs", "polish.lbfgs_iterations=20", "model=mlp"],
])
def test_every_optimizer_schedule_and_polish_resumes_to_the_same_numbers(composer, monkeypatch,
                                                                        overrides) -> None:
    base = [*TINY, "problem=multipole1d", "logger=none", "trainer.rounds=3",
            "trainer.steps_per_round=12", "trainer.eval_every=1", *overrides]
    cfg = composer(base, "full")
    reference = Runner(cfg, Path(cfg.hydra.runtime.output_dir)).run()
    resumed = run_interrupted_then_resumed(composer, monkeypatch, base, stop_after=2 * 12 + 3)
    assert resumed["status"] == reference["status"] == "completed"
    for key in ("eval/mse", "eval/relerr_median/B0", "eval/relerr_median/B4", "eval/ple"):
        assert resumed[key] == reference[key], key


def test_schedules_warm_up_then_decay_to_their_floor() -> None:
    cosine = Cosine(floor=0.1, warmup_steps=4)
    assert [cosine.factor(s, 104) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert cosine.factor(4, 104) == pytest.approx(1.0)
    assert cosine.factor(54, 104) == pytest.approx(0.55)
    assert cosine.factor(104, 104) == pytest.approx(0.1)
    assert Constant().factor(0, 10) == Constant().factor(9, 10) == 1.0
    with pytest.raises(ConfigError):
        Cosine(floor=1.5)


def test_a_full_batch_optimizer_refuses_a_learning_rate_from_the_command_line(composer) -> None:
    cfg = composer([*TINY, "optimizer=lbfgs"])
    with pytest.raises(ConfigError) as err:
        validate_overrides(cfg, ["optimizer=lbfgs", "trainer.lr=0.1"])
    assert err.value.key == "trainer.lr"
    with pytest.raises(ConfigError):
        validate_overrides(cfg, ["scheduler=constant"])
    validate_overrides(cfg, ["trainer.rounds=3"])
    validate_overrides(composer([*TINY]), ["trainer.lr=0.1"])  # AdamW takes it


def test_the_objective_weights_are_what_the_batches_estimate() -> None:
    """The mean of Σ w·ℓ / Σ w over many batches equals Σ ω·ℓ / Σ ω with ω the sampler's
    objective weights: corrected importance batches estimate the pool mean, tilted ones π."""
    gen = torch.Generator().manual_seed(6)
    q = torch.rand(400, generator=gen, dtype=torch.float64) + 1e-3
    loss = torch.rand(400, generator=gen, dtype=torch.float64)
    for target in ("prior", "none"):
        sampler = ImportanceSampler(weights_target=target)
        omega = sampler.objective_weights(400, q)
        expected = float(loss.mean()) if omega is None else float((omega * loss).sum() / omega.sum())
        estimates = []
        for _ in range(200):
            sel = sampler.select(400, 256, values=q)
            w = sel.weights.double()
            estimates.append(float((w * loss[sel.idx]).sum() / w.sum()))
        assert sum(estimates) / len(estimates) == pytest.approx(expected, rel=0.02), target
    assert ImportanceSampler(weights_target="none").objective_weights(400, q) is not None


def test_rad_draws_by_the_loss_law() -> None:
    losses = torch.tensor([0.0, 1.0, 3.0, float("nan")], dtype=torch.float64)
    density = rad_density(losses, k=1.0, c=0.5)
    assert torch.allclose(density, torch.tensor([0.5, 1.5, 3.5, 0.5], dtype=torch.float64))
    sampler = RADSampler(k=2.0, c=0.0)
    values = sampler.prepare(torch.tensor([1.0, 2.0, 0.0, 1.0]))
    idx = torch.cat([sampler.select(4, 5000, values=values).idx for _ in range(4)])
    freq = torch.bincount(idx, minlength=4).double() / len(idx)
    assert torch.allclose(freq, torch.tensor([1 / 6, 4 / 6, 0.0, 1 / 6], dtype=torch.float64), atol=0.01)
    omega = sampler.objective_weights(4, values)
    assert torch.allclose(omega / omega.sum(), torch.tensor([1 / 6, 4 / 6, 0.0, 1 / 6],
                                                             dtype=torch.float64))
    assert RADSampler(weights_target="uniform").objective_weights(4, values) is None
    assert math.isclose(float(RADSampler().select(4, 8, values=values).weights.mean()), 1.0)
