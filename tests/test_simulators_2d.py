"""The 2-D simulators against independent references (the exact linear solution, an
integrating-factor RK4 solve written here on a finer grid), their resolution rule and refusals,
and the 2-D surrogates."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from nearpole_exp.errors import ConfigError
from nearpole_exp.models.fno2d import FNO2D
from nearpole_exp.models.unet2d import UNet2D
from nearpole_exp.problems import spectral2d
from nearpole_exp.problems.gray_scott2d import GrayScott2D, GrayScott2DConfig
from nearpole_exp.problems.ks2d import KS2DConfig, KuramotoSivashinsky2D

pytestmark = pytest.mark.usefixtures("one_thread")


def relative_l2(a: torch.Tensor, b: torch.Tensor) -> float:
    """Worst relative L2 error over rows and frames (fields flattened)."""
    err = (a - b).flatten(2).pow(2).mean(-1).sqrt() / b.flatten(2).pow(2).mean(-1).sqrt()
    return float(err.max())


def ifrk4_ks2d(u0: torch.Tensor, length: float, dt: float, steps: int, every: int) -> torch.Tensor:
    """A separately written solver of the mean-free 2-D KS: integrating-factor RK4 on the
    un-dealiased full FFT (a different scheme and a different truncation), frames every ``every``."""
    n = u0.shape[-1]
    k = 2 * math.pi / length * torch.fft.fftfreq(n, d=1.0 / n).double()
    kx, ky = torch.meshgrid(k, k, indexing="ij")
    lin = (kx**2 + ky**2) - (kx**2 + ky**2) ** 2

    def rhs(v: torch.Tensor) -> torch.Tensor:
        ux = torch.fft.ifft2(1j * kx * v).real
        uy = torch.fft.ifft2(1j * ky * v).real
        out = torch.fft.fft2(-0.5 * (ux**2 + uy**2))
        out[..., 0, 0] = 0
        return out

    v = torch.fft.fft2(u0.double())
    e, e2 = torch.exp(lin * dt), torch.exp(lin * dt / 2)
    frames = [torch.fft.ifft2(v).real]
    for i in range(1, steps + 1):
        k1 = rhs(v)
        k2 = rhs(e2 * (v + dt / 2 * k1))
        k3 = rhs(e2 * v + dt / 2 * k2)
        k4 = rhs(e * v + dt * e2 * k3)
        v = e * v + dt / 6 * (e * k1 + 2 * e2 * (k2 + k3) + k4)
        if i % every == 0:
            frames.append(torch.fft.ifft2(v).real)
    return torch.stack(frames, dim=1)


def test_without_the_nonlinear_term_the_solver_is_the_exact_linear_solution():
    n, length = 24, torch.tensor([11.0, 17.0])
    kx, ky = spectral2d.wavenumbers2d(n, length)
    k2 = kx**2 + ky**2
    lin = (k2 - k2**2).expand(2, 1, n, n // 2 + 1)
    u0 = spectral2d.fourier_basis2d(6, n)[None, None, 2:4].sum(2).expand(2, 1, n, n).clone()
    frames = spectral2d.integrate2d(u0, lin, lambda v: torch.zeros_like(v), 0.25, 3, 4)
    exact = torch.stack([spectral2d.to_grid(spectral2d.to_spectrum(u0) * torch.exp(lin * 0.75 * i), n)
                         for i in range(5)], dim=1)
    assert relative_l2(frames, exact) < 1e-12


def test_ks2d_matches_an_integrating_factor_rk4_solve_on_a_twice_finer_grid():
    problem = KuramotoSivashinsky2D(n_steps=6, dt_save=0.5)
    lo, hi = problem.bounds[:, 0], problem.bounds[:, 1]
    params = torch.stack([lo + 0.9 * (hi - lo), lo + 0.2 * (hi - lo)])  # long (chaotic), short
    frames = problem.solve(params)
    for row in range(2):
        fine = 2 * problem.plan(params[row:row + 1]).multiple.item() * problem.config.grid
        u0 = problem.initial_condition(params[row:row + 1], fine)
        ref = ifrk4_ks2d(u0[:, 0], float(params[row, 0]), 0.01, 300, 50)
        stride = fine // problem.config.grid
        assert relative_l2(frames[row:row + 1, :, 0], ref[..., ::stride, ::stride]) < 2e-3, row
    assert float(frames[0, -1].abs().max()) > float(frames[0, 0].abs().max())  # it grew


def test_ks2d_resolution_follows_the_side_and_rows_are_independent():
    problem = KuramotoSivashinsky2D(n_steps=2)
    sides = torch.tensor([8.0, 17.0, 24.0])
    params = torch.cat([sides[:, None], torch.zeros(3, problem.param_dim - 1)], 1)
    plan = problem.plan(params)
    assert plan.multiple.tolist() == [1, 1, 2]  # 32 points resolve L ≤ 17.6 at spacing 0.55
    assert problem.summary_info()["problem/sim_grid_max"] == 64
    g = torch.Generator().manual_seed(1)
    params = problem.bounds[:, 0] + torch.rand(5, problem.param_dim, generator=g) * (
        problem.bounds[:, 1] - problem.bounds[:, 0])
    together = problem.solve(params)
    alone = torch.cat([problem.solve(params[i:i + 1]) for i in range(5)])
    assert torch.allclose(together, alone, rtol=0, atol=1e-12)
    stray = torch.cat([torch.tensor([[1e6]]), params[:1, 1:]], 1)  # out of the box: bounded grid
    assert problem.plan(stray).multiple.item() == plan.multiple.max().item()


@pytest.mark.parametrize(("kwargs", "key"), [
    ({"ic_terms": 1000}, "ic_terms"),
    ({"sim_grid": 32, "substeps": 10}, "sim_grid"),
    ({"length_high": 1e4}, "length_high"),
    ({"length_low": 30.0}, "length_high"),
])
def test_ks2d_refuses_what_it_cannot_resolve_naming_the_key(kwargs, key):
    with pytest.raises(ConfigError) as err:
        KS2DConfig(**kwargs)
    assert err.value.key == key


def test_ks2d_samples_are_flat_fields_with_their_parameters():
    problem = KuramotoSivashinsky2D(n_steps=3, ic_terms=20, n_eval=4)
    assert problem.param_dim == 21
    params = problem.eval_params()[:2]
    inputs, targets = problem.pairs(params)
    assert inputs.shape == (2, 3, 32 * 32 + 21) and targets.shape == (2, 3, 1, 32, 32)
    assert torch.equal(inputs[:, 1:, :1024].reshape(2, 2, 1, 32, 32), targets[:, :-1])
    assert torch.allclose(inputs[:, 0, 1024:], problem.normalized(params))
    assert problem.model_dims() == {"channels": 1, "grid": 32, "n_params": 21}


def test_gray_scott_without_a_perturbation_is_its_reaction_ode():
    """Uniform fields obey u' = −uv² + F(1 − u), v' = uv² − (F + κ)v: scipy's Radau solve of
    that ODE is the independent reference of the reaction part and the feed term."""
    from scipy.integrate import solve_ivp

    problem = GrayScott2D(n_steps=6, ic_terms=2, v_mean=0.3)
    params = torch.tensor([[0.03, 0.0, 0.0], [0.055, 0.0, 0.0]])
    frames = problem.solve(params)
    assert float((frames - frames.mean(dim=(-1, -2), keepdim=True)).abs().max()) < 1e-12
    for row, feed in enumerate((0.03, 0.055)):
        def rhs(_t, y, f=feed):
            u, v = y
            return [-u * v * v + f * (1 - u), u * v * v - (f + problem.config.kill) * v]
        times = problem.config.dt_save * torch.arange(7).numpy()
        ode = solve_ivp(rhs, (0, times[-1]), [0.7, 0.3], method="Radau", t_eval=times,
                        rtol=1e-11, atol=1e-13)
        got = frames[row, :, :, 0, 0].numpy().T
        assert abs(got - ode.y).max() < 2e-5, row  # the rule's dt leaves 7e-6 in the transient


def test_gray_scott_is_resolved_by_its_rule_and_its_regimes_differ():
    problem = GrayScott2D(n_steps=12)
    lo, hi = problem.bounds[:, 0], problem.bounds[:, 1]
    g = torch.Generator().manual_seed(3)
    params = lo + torch.rand(3, problem.param_dim, generator=g) * (hi - lo)
    params[:, 0] = torch.tensor([0.02, 0.04, 0.06])
    frames = problem.solve(params)
    plan = problem.plan(params)
    fine = torch.cat([problem.evolve(params[i:i + 1], 2 * int(plan.multiple[i]),
                                     2 * int(plan.substeps[i])) for i in range(3)])
    assert relative_l2(frames, fine) < 1e-3
    v_spread = frames[:, -1, 1].flatten(1).std(dim=1)
    assert v_spread[1] > 10 * v_spread[0]  # the perturbation dies at F = 0.02, patterns grow at 0.04
    together = problem.solve(params)
    alone = torch.cat([problem.solve(params[i:i + 1]) for i in range(3)])
    assert torch.allclose(together, alone, rtol=0, atol=1e-12)
    assert problem.model_dims()["channels"] == 2


@pytest.mark.parametrize(("kwargs", "key"), [({"diff_v": 1e-12}, "diff_v"),
                                             ({"feed_high": 0.01}, "feed_high"),
                                             ({"sim_grid": 32, "substeps": 1}, "sim_grid")])
def test_gray_scott_refuses_what_it_cannot_resolve_naming_the_key(kwargs, key):
    with pytest.raises(ConfigError) as err:
        GrayScott2DConfig(**kwargs)
    assert err.value.key == key


@pytest.mark.parametrize("make", [lambda: FNO2D(channels=2, grid=16, n_params=5, width=8, modes=4),
                                  lambda: UNet2D(channels=2, grid=16, n_params=5, width=8)],
                         ids=["fno2d", "unet2d"])
def test_2d_surrogates_start_as_persistence_and_learn_a_parameter_dependence(make):
    torch.manual_seed(0)
    model = make()
    x = torch.randn(64, 2 * 16 * 16 + 5)
    u = x[:, :512].reshape(64, 2, 16, 16)
    assert torch.equal(model(x), u)
    target = u * (1 + 0.5 * x[:, -1:, None, None])  # the next state depends on λ
    opt = torch.optim.Adam(model.parameters(), 3e-3)
    first = None
    for _ in range(150):
        loss = (model(x) - target).pow(2).mean()
        first = first if first is not None else float(loss.detach())
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float(loss.detach()) < 0.3 * first  # persistence would stay at 1
    model.double()  # a cast keeps the spectral weights' imaginary parts
    assert model(x.double()).dtype == torch.float64
    with pytest.raises(ValueError, match="expects samples"):
        model(torch.randn(2, 10))


def test_the_rollout_of_persistence_is_the_distance_from_the_first_frame():
    problem = KuramotoSivashinsky2D(n_steps=4, n_eval=6, grid=16)
    persistence = lambda x: x[:, :256].reshape(-1, 1, 16, 16)  # noqa: E731
    scores = problem.rollout_scores(persistence)
    _, inputs, targets = problem.eval_set()
    first = inputs[:, 0, :256].reshape(-1, 1, 16, 16)
    for t in range(4):
        expected = (targets[:, t] - first).flatten(1).double().pow(2).mean(1).sqrt() / \
            targets[:, t].flatten(1).double().pow(2).mean(1).sqrt()
        assert torch.allclose(scores[:, t], expected, rtol=1e-6)
    assert bool((scores[:, -1] > scores[:, 0]).all())  # the error of standing still grows
    out = problem.evaluate(persistence)
    assert out["eval/rollout_nrmse_final_max"] == pytest.approx(float(scores[:, -1].max()))


def test_the_two_step_loss_feeds_the_first_prediction_back_and_scores_stay_one_step(composer):
    from nearpole_exp.runner import Runner

    problem = KuramotoSivashinsky2D(grid=16, n_steps=3, unroll=2, n_eval=4)
    samples = problem.label(problem.eval_params()[:2])
    assert samples.inputs.shape == (4, 256 + 9) and samples.targets.shape == (4, 2, 1, 16, 16)
    targets = problem.pairs(problem.eval_params()[:2])[1]
    assert torch.equal(samples.targets[1, 1], targets[0, 2])  # sample t = 1: u_2 and u_3
    torch.manual_seed(0)
    model = FNO2D(channels=1, grid=16, n_params=9, width=8, modes=4, depth=1)
    with torch.no_grad():
        model.head[-1].weight.normal_()  # not persistence, so the two steps differ
    x, y = samples.inputs, samples.targets
    out = model.compute_loss(x, y, "mse")
    first = model(x)
    second = model(torch.cat([first.flatten(1), x[:, 256:]], dim=1))
    expected = 0.5 * ((first - y[:, 0]).flatten(1).pow(2).mean(1)
                      + (second - y[:, 1]).flatten(1).pow(2).mean(1))
    assert torch.allclose(out.losses, expected) and torch.equal(out.prediction, first)
    assert torch.allclose(problem.per_sample_signal(first, y), problem.per_sample_signal(first, y[:, 0]))
    with pytest.raises(ConfigError) as err:
        KS2DConfig(unroll=3)
    assert err.value.key == "unroll"
    cfg = composer(["experiment=ks2d", "problem.unroll=2", "problem.grid=16", "problem.n_steps=3",
                    "problem.n_eval=4", "logger=none", "trainer.progress=false",
                    "trainer.plots=false", "trainer.rounds=1", "trainer.steps_per_round=3",
                    "trainer.initial_points=6", "trainer.batch_size=4", "model.width=8",
                    "model.modes=4", "model.depth=1"], "two_step")
    summary = Runner(cfg, Path(cfg.hydra.runtime.output_dir)).run()
    assert summary["status"] == "completed" and summary["pool/size"] == 6 * 2


def test_2d_model_sizes_the_grid_cannot_hold_are_refused_naming_the_key():
    with pytest.raises(ConfigError) as err:
        UNet2D(channels=1, grid=20, n_params=3, levels=3)
    assert err.value.key == "levels"
    with pytest.raises(ConfigError) as err:
        FNO2D(channels=1, grid=16, n_params=3, modes=9)
    assert err.value.key == "modes"


@pytest.mark.parametrize("experiment", ["ks2d", "gray_scott2d"])
def test_a_2d_run_with_ogas_trains_evaluates_and_reports(composer, experiment):
    """The whole loop on a 2-D problem: flat samples into the FNO, the breeder told per-sample
    nRMSE, the held-out tails; a U-Net on request."""
    from nearpole_exp.runner import Runner

    overrides = [f"experiment={experiment}", "ogas/breeder=ogas", "logger=none",
                 "trainer.progress=false", "trainer.plots=false", "trainer.rounds=2",
                 "trainer.steps_per_round=4", "trainer.initial_points=16",
                 "trainer.points_per_round=8", "trainer.batch_size=8", "trainer.eval_every=2",
                 "problem.grid=16", "problem.n_steps=2", "problem.n_eval=6",
                 "ogas.breeder.synchronous=true", "ogas.breeder.min_train_steps=10",
                 "ogas.breeder.train_steps_per_ask=5", "ogas.breeder.min_reservoir_size=8",
                 "model.width=8", "model.modes=4", "model.depth=2"]
    cfg = composer(overrides, experiment)
    summary = Runner(cfg, Path(cfg.hydra.runtime.output_dir)).run()
    assert summary["status"] == "completed"
    assert summary["breeder/simulations"] == 24 and summary["breeder/train_steps"] >= 10
    assert 0 < summary["eval/nrmse_mean"] <= summary["eval/nrmse_max"] < 1
