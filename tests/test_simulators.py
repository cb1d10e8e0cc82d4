"""Simulator problems (Burgers, KS, landscape), the shared spectral solver and the 1D CNN."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from nearpole_exp.errors import ConfigError
from nearpole_exp.models.cnn import CNN1D
from nearpole_exp.pool import Pool
from nearpole_exp.problems import spectral
from nearpole_exp.problems.burgers import Burgers1D
from nearpole_exp.problems.kdv import KdV1D
from nearpole_exp.problems.ks import KuramotoSivashinsky1D
from nearpole_exp.problems.landscape import Landscape
from nearpole_exp.problems.simulator import nrmse

TRAJ_KEYS = {"eval/nrmse_mean", "eval/nrmse_std", "eval/nrmse_p50", "eval/nrmse_p95",
             "eval/nrmse_p99", "eval/nrmse_max", "eval/mse"}


def grid_x(n: int, length: float = 2 * math.pi) -> torch.Tensor:
    return torch.arange(n, dtype=torch.float64) * length / n


def small_burgers(**kw) -> Burgers1D:
    return Burgers1D(**{"grid": 32, "n_steps": 6, "n_eval": 8, **kw})


def small_ks(**kw) -> KuramotoSivashinsky1D:
    return KuramotoSivashinsky1D(**{"grid": 32, "n_steps": 5, "n_eval": 8, "length_high": 30.0,
                                    **kw})


def small_kdv(**kw) -> KdV1D:
    return KdV1D(**{"grid": 32, "n_steps": 5, "n_eval": 8, "dispersion_low": 2e-3, **kw})


# --- spectral helpers ---------------------------------------------------------------------


def test_dealias_mask_keeps_exactly_the_two_thirds_band():
    mask = spectral.dealias_mask(64)
    assert mask.sum() == 22 and mask[21] and not mask[22]
    assert int(spectral.dealias_mask(32).sum()) == 11


def test_etdrk4_coefficients_match_closed_forms_away_from_zero():
    lin = torch.tensor([-3.0, -0.5, 0.7])
    h = 0.4
    c = spectral.ETDRK4.build(lin, h)
    z = (h * lin).double()
    q_exact = h * (torch.exp(z / 2) - 1) / z
    f1_exact = h * (-4 - z + torch.exp(z) * (4 - 3 * z + z * z)) / z**3
    assert torch.allclose(c.q, q_exact, rtol=1e-10)
    assert torch.allclose(c.f1, f1_exact, rtol=1e-8)
    zero = spectral.ETDRK4.build(torch.zeros(1), h)  # L = 0 limits: classic RK4 weights
    expected = torch.tensor([h / 2, h / 6, 2 * h / 6, h / 6], dtype=torch.float64)  # f2 doubled
    got = torch.cat([zero.q, zero.f1, zero.f2, zero.f3])
    assert torch.allclose(got, expected, rtol=1e-12)


def test_etdrk4_coefficients_of_a_complex_operator_match_closed_forms():
    """A dispersive term makes L complex (i·k³): the contour then runs round the whole circle."""
    lin = torch.tensor([-3.0 + 2.0j, 0.5j, -0.2 - 4.0j], dtype=torch.complex128)
    h = 0.4
    c = spectral.ETDRK4.build(lin, h)
    z = h * lin
    assert torch.allclose(c.q, h * (torch.exp(z / 2) - 1) / z, rtol=1e-10)
    assert torch.allclose(c.f3, h * (-4 - 3 * z - z * z + torch.exp(z) * (4 - z)) / z**3, rtol=1e-8)
    tiny = spectral.ETDRK4.build(torch.tensor([1e-9j], dtype=torch.complex128), h)
    assert torch.allclose(tiny.f1, torch.tensor([h / 6], dtype=torch.complex128), rtol=1e-8)


# --- Burgers -------------------------------------------------------------------------------


def nu_rows(*nus: float) -> torch.Tensor:
    """Burgers parameter rows with these viscosities (amplitudes unused by ``evolve``)."""
    return torch.tensor([[nu, 0.5, 0.5, 0.5] for nu in nus])


def test_burgers_conserves_the_mean():
    p = Burgers1D(grid=64, n_steps=10)
    x = grid_x(1280)
    u0 = torch.stack([0.3 + torch.sin(x) + 0.5 * torch.cos(2 * x), -0.7 + 0.8 * torch.sin(3 * x)])
    frames = p.evolve(u0, nu_rows(0.01, 0.05), stride=1, substeps=40)  # the fine field
    means = frames.mean(dim=2)
    assert torch.allclose(means, means[:, :1].expand_as(means), rtol=1e-5, atol=0)
    assert abs(float(means[0, -1]) - 0.3) < 1e-10


def test_burgers_energy_decays_in_time_and_with_viscosity():
    p = Burgers1D(grid=64)
    nus = torch.tensor([0.01, 0.03, 0.1])
    params = torch.cat([nus[:, None], torch.ones(3, 3)], dim=1)
    energy = p.simulate(params).double().pow(2).mean(dim=2)
    assert (energy[:, 1:] < energy[:, :-1]).all()
    final = energy[:, -1]
    assert final[0] > final[1] > final[2]
    assert float(final[2]) < 0.5 * float(energy[2, 0])


def test_burgers_heat_limit_matches_exact_mode_decay():
    p = Burgers1D(grid=64, n_steps=10, dt_save=0.2)
    eps, nu = 1e-4, 0.05
    x = grid_x(64)
    modes = torch.tensor([1.0, 2.0, 4.0])
    u0 = eps * torch.sin(modes[:, None] * x)
    frames = p.evolve(u0, nu_rows(nu, nu, nu), stride=1, substeps=10)
    t = torch.arange(11, dtype=torch.float64) * 0.2
    exact = eps * torch.exp(-nu * modes[:, None, None] ** 2 * t[None, :, None]) * u0[:, None] / eps
    assert float((frames - exact).abs().max()) < 1e-3 * eps
    assert float(frames[2, -1].abs().max()) < 0.5 * eps  # mode 4 decays by e^{-1.6}


def test_burgers_etdrk4_is_fourth_order_and_consistent_under_halving_dt():
    params = torch.tensor([[0.05, 1.0, 0.5, 0.5]])

    def run(substeps: int) -> torch.Tensor:
        p = Burgers1D(grid=64, sim_grid=256, n_steps=5, substeps=substeps, allow_under_resolved=True)
        return p.solve(params)

    ref = run(64)
    errors = [float((run(s) - ref).abs().max()) for s in (4, 8, 16)]
    assert errors[0] / errors[1] > 10 and errors[1] / errors[2] > 10
    default = Burgers1D(grid=64, n_steps=5)
    assert float((default.simulate(params) - run(64).float()).abs().max()) < 1e-4


def test_burgers_log_viscosity_box_and_mapping():
    p = Burgers1D(log_viscosity=True, nu_low=0.01, nu_high=0.1)
    assert torch.allclose(p.bounds[0], torch.tensor([-2.0, -1.0]))
    nu = p.viscosity(torch.tensor([[-1.5, 0.5, 0.5, 0.5]]))
    assert math.isclose(float(nu[0]), 10**-1.5, rel_tol=1e-12)


# --- Kuramoto–Sivashinsky ----------------------------------------------------------------


def test_ks_single_mode_follows_linear_growth_rate():
    length, eps = 20.0, 1e-6
    p = KuramotoSivashinsky1D(grid=64, n_steps=4, dt_save=1.0)
    x = grid_x(64, length)
    j = torch.tensor([2.0, 4.0], dtype=torch.float64)  # k = 0.63 grows, k = 1.26 decays
    k = 2 * math.pi * j / length
    u0 = eps * torch.cos(k[:, None] * x)
    frames = p.evolve(u0, torch.tensor([[length, 0.0, 0.0, 0.0]] * 2), stride=1, substeps=10)
    amp = (frames * torch.cos(k[:, None, None] * x)).mean(dim=2) * 2
    t = torch.arange(5, dtype=torch.float64)
    exact = eps * torch.exp((k**2 - k**4)[:, None] * t)
    assert torch.allclose(amp, exact, rtol=1e-4)
    assert amp[0, -1] > 2 * eps and amp[1, -1] < 0.1 * eps


def test_ks_conserves_the_mean_and_stays_bounded_over_its_range():
    p = KuramotoSivashinsky1D(grid=64, n_steps=30)
    x = grid_x(64, 60.0)
    u0 = 0.4 + torch.sin(2 * math.pi * x / 60) - torch.cos(4 * math.pi * x / 60)
    frames = p.evolve(u0[None], torch.tensor([[60.0, 0.0, 0.0, 0.0]]), stride=1, substeps=20)
    assert torch.allclose(frames.mean(dim=2), torch.full((1, 31), 0.4, dtype=torch.float64),
                          rtol=1e-5)
    corners = torch.tensor([[lx, *signs] for lx in (10.0, 35.0, 60.0)
                            for signs in ((1.0, 1.0, 1.0), (-1.0, 1.0, -1.0))])
    out = p.simulate(corners)
    assert bool(torch.isfinite(out).all()) and float(out.abs().max()) < 10.0
    late_rms = out[:, -10:].pow(2).mean(dim=(1, 2)).sqrt()
    assert (late_rms > 0.3).all()  # unstable modes keep every domain in [10, 60] alive


def test_ks_consistent_under_halving_dt():
    params = torch.tensor([[40.0, 1.0, -0.5, 0.5]])
    coarse = KuramotoSivashinsky1D(grid=64, n_steps=5).simulate(params)
    fine = KuramotoSivashinsky1D(grid=64, n_steps=5, substeps=80).simulate(params)
    assert float((coarse - fine).abs().max()) < 1e-3 * float(fine.abs().max())


@pytest.mark.parametrize("make", [small_burgers, small_ks, small_kdv])
def test_batching_matches_one_by_one_and_is_deterministic(make):
    p = make()
    params = p.uniform(3, torch.Generator().manual_seed(1))
    batched = p.simulate(params)
    single = torch.cat([p.simulate(params[i : i + 1]) for i in range(3)])
    assert batched.dtype == torch.float32 and batched.shape == (3, p.config.n_steps + 1, 32)
    assert torch.allclose(batched, single, atol=1e-6, rtol=0)
    assert torch.equal(batched, p.simulate(params))


# --- the simulator protocol ----------------------------------------------------------------


@pytest.mark.parametrize("make", [small_burgers, small_ks, small_kdv])
def test_label_shapes_channels_and_sources(make):
    p = make()
    params = p.uniform(3, torch.Generator().manual_seed(2))
    frames = p.simulate(params)
    s = p.label(params)
    t = frames.shape[1] - 1
    assert s.inputs.shape == (3 * t, 5, 32) and s.targets.shape == (3 * t, 1, 32)
    assert s.source.tolist() == [i for i in range(3) for _ in range(t)]
    assert torch.equal(s.inputs[:, 0].reshape(3, t, 32), frames[:, :-1])
    assert torch.equal(s.targets[:, 0].reshape(3, t, 32), frames[:, 1:])
    coeff = s.inputs[:, 1:]
    assert torch.equal(coeff, coeff[..., :1].expand_as(coeff))
    expected = 2 * (params - p.bounds[:, 0]) / (p.bounds[:, 1] - p.bounds[:, 0]) - 1
    assert torch.allclose(coeff[::t, :, 0], expected, atol=1e-6)
    assert p.model_dims() == {"in_channels": 5, "out_channels": 1, "length": 32}
    empty = p.label(torch.empty(0, 4))
    assert empty.inputs.shape == (0, 5, 32) and len(empty.source) == 0


def test_blown_up_simulation_is_dropped_by_the_pool():
    p = small_burgers()
    params = torch.tensor([[0.05, 0.5, 0.5, 0.5], [-0.5, 0.5, 0.5, 0.5]])  # ν < 0: anti-diffusion
    s = p.label(params)
    finite = torch.isfinite(s.targets.reshape(len(s), -1)).all(dim=1)
    assert finite.tolist() == [True] * 6 + [False] * 6
    pool = Pool()
    ids = pool.add(s)
    assert ids.tolist() == [0, 1] and len(pool) == 6 and pool.n_rejected == 6
    assert pool.source.unique().tolist() == [0]
    capped = small_burgers(blowup=0.1).label(params[:1])  # |u| > blowup counts as blown up
    assert not bool(torch.isfinite(capped.targets).any())


def test_per_sample_signal_is_relative_rmse():
    p = small_burgers()
    target = torch.randn(4, 1, 32, generator=torch.Generator().manual_seed(3))
    signal = p.per_sample_signal(1.1 * target, target)
    assert signal.shape == (4,) and torch.allclose(signal, torch.full((4,), 0.1), atol=1e-6)
    zero = torch.zeros(2, 1, 8)
    assert nrmse(zero, zero).tolist() == [0.0, 0.0]
    assert math.isclose(float(nrmse(zero + 1e-3, zero)[0]), 1e3, rel_tol=1e-6)


@pytest.mark.parametrize("make", [small_burgers, small_ks, small_kdv])
def test_evaluate_persistence_and_perfect_predictor(make):
    p = make()
    persistence = p.evaluate(lambda x: x[:, :1])
    assert set(persistence) == TRAJ_KEYS
    assert all(math.isfinite(v) for v in persistence.values())
    _, inputs, targets = p.eval_set()
    u_t, u_next = inputs[:, :, 0].double(), targets[:, :, 0].double()
    manual = ((u_t - u_next).pow(2).mean(-1).sqrt() / u_next.pow(2).mean(-1).sqrt()).mean(1)
    assert math.isclose(persistence["eval/nrmse_mean"], float(manual.mean()), rel_tol=1e-9)
    assert math.isclose(persistence["eval/nrmse_max"], float(manual.max()), rel_tol=1e-9)
    assert persistence["eval/nrmse_p50"] <= persistence["eval/nrmse_p95"] <= \
        persistence["eval/nrmse_max"]
    assert persistence["eval/nrmse_mean"] > 1e-3
    assert math.isclose(persistence["eval/mse"], float((u_t - u_next).pow(2).mean()),
                        rel_tol=1e-9)

    flat_targets = targets.reshape(-1, *targets.shape[2:])
    exact = p.evaluate(lambda x: flat_targets[: len(x)])  # one chunk: eval_batch > n·S
    assert exact["eval/nrmse_max"] < 1e-4 and exact["eval/mse"] < 1e-10


def test_eval_set_is_a_fixed_halton_design_cached_once():
    p = small_burgers(n_eval=16)
    params = p.eval_params()
    assert torch.equal(params, small_burgers(n_eval=16).eval_params())
    unit = (params - p.bounds[:, 0]) / (p.bounds[:, 1] - p.bounds[:, 0])
    assert bool(((unit >= 0) & (unit <= 1)).all())
    counts = torch.histc(unit[:, 0], bins=4, min=0, max=1)  # low discrepancy: 4 ± 1 per quarter
    assert counts.sum() == 16 and float((counts - 4).abs().max()) <= 1
    assert p.eval_set() is p.eval_set()


def test_plots_write_a_png(tmp_path: Path):
    p = small_burgers()
    paths = p.plots(lambda x: x[:, :1], str(tmp_path))
    assert len(paths) == 1 and Path(paths[0]).stat().st_size > 1000


def test_bad_config_values_name_their_field():
    with pytest.raises(ConfigError) as err:
        Burgers1D(nu_high=0.005)
    assert err.value.key == "nu_high"
    with pytest.raises(ConfigError) as err:
        KuramotoSivashinsky1D(grid=7)
    assert err.value.key == "grid"
    with pytest.raises(ConfigError) as err:
        Burgers1D(grid=16, ic_terms=12)  # wave 6 is above the 2/3 cutoff (5)
    assert err.value.key == "ic_terms"


# --- landscape -----------------------------------------------------------------------------


@pytest.mark.parametrize(("dim", "active"), [(2, 2), (6, 3)])
def test_landscape_hard_region_volume_and_ideal_density(dim, active):
    p = Landscape(dim=dim, active_dims=active, hard_fraction=0.05)
    lam = torch.rand(200_000, dim, generator=torch.Generator().manual_seed(4))
    inside = p.hard_region_mask(lam)
    frac = float(inside.float().mean())
    assert math.isclose(p.hard_fraction, 0.05, rel_tol=1e-9)
    assert abs(frac - 0.05) < 4 * math.sqrt(0.05 * 0.95 / len(lam))
    dens = p.ideal_density(lam).double()
    assert abs(float(dens.mean()) - 1.0) < 0.03  # p* integrates to one
    mc_mass = float((dens * inside).mean())
    assert abs(mc_mass - p.ideal_hard_mass) < 0.03 and p.ideal_hard_mass > 0.8
    diff = p.difficulty(lam)
    assert float(diff[inside].median()) > 0.9
    assert float(torch.quantile(diff[~inside], 0.95)) < 0.05
    assert float(p.difficulty(torch.ones(1, dim))[0]) >= float(diff.max())  # peak at the corner


def test_landscape_label_and_evaluate():
    p = Landscape(dim=3, samples_per_point=4, n_eval=256)
    s = p.label(p.uniform(5, torch.Generator().manual_seed(5)))
    assert s.inputs.shape == (20, 4) and s.targets.shape == (20, 1)
    assert s.source.tolist() == [i for i in range(5) for _ in range(4)]
    assert s.inputs[:4, 3].tolist() == [0.0, 0.25, 0.5, 0.75]
    assert bool((s.targets > 0.4).all())
    dims = p.model_dims()
    assert dims["in_features"] == 4 and dims["out_features"] == 1
    assert len(dims["input_bounds"]) == 4

    def perfect(x: torch.Tensor) -> torch.Tensor:
        return p.target(x[:, :3], x[:, 3])[:, None]

    exact = p.evaluate(perfect)
    assert set(exact) >= TRAJ_KEYS | {"eval/hard_region_error", "eval/easy_region_error"}
    assert exact["eval/nrmse_max"] < 1e-6

    def smooth_only(x: torch.Tensor) -> torch.Tensor:
        t = x[:, 3]
        return (2 + 0.5 * torch.cos(math.pi * x[:, :3].mean(1)) * torch.cos(math.pi * t))[:, None]

    rough = p.evaluate(smooth_only)
    assert rough["eval/hard_region_error"] > 20 * rough["eval/easy_region_error"]
    assert rough["eval/nrmse_max"] > rough["eval/nrmse_p50"]


# --- CNN surrogate -------------------------------------------------------------------------


def test_cnn_shapes_persistence_at_init_and_periodic_equivariance():
    torch.manual_seed(0)
    model = CNN1D(in_channels=5, out_channels=1, length=32, width=8, depth=2, kernel_size=3,
                  hidden=None, input_bounds=None)
    x = torch.randn(6, 5, 32)
    out = model(x, delta=0.1)
    assert out.shape == (6, 1, 32) and torch.equal(out, x[:, :1])
    torch.nn.init.normal_(model.head[1].weight)
    out = model(x)
    assert not torch.allclose(out, x[:, :1])
    shifted = model(torch.roll(x, 7, dims=-1))
    assert torch.allclose(shifted, torch.roll(out, 7, dims=-1), atol=1e-5)


def test_cnn_learns_a_shift_and_rejects_bad_arguments():
    torch.manual_seed(0)
    model = CNN1D(2, 1, 16, width=8, depth=1, kernel_size=3)
    x = torch.randn(64, 2, 16)
    y = torch.roll(x[:, :1], 1, dims=-1)
    opt = torch.optim.Adam(model.parameters(), 1e-2)
    losses = []
    for _ in range(80):
        loss = (model(x) - y).pow(2).mean()
        losses.append(float(loss.detach()))
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert losses[-1] < 0.05 * losses[0]
    with pytest.raises(ConfigError) as err:
        CNN1D(2, 1, 16, kernel_size=4)
    assert err.value.key == "kernel_size"
    with pytest.raises(TypeError):
        CNN1D(2, 1, 16, hidden=64)


# --- many initial-condition terms -------------------------------------------------------------


@pytest.mark.parametrize("make", [Burgers1D, KuramotoSivashinsky1D, KdV1D])
def test_ic_terms_set_the_dimension_and_ic_decay_shrinks_each_terms_range(make):
    p = make(ic_terms=15, ic_decay=1.0, amp_low=0.2, amp_high=1.0)
    assert p.param_dim == 16
    wave = torch.arange(15) // 2 + 1
    assert torch.allclose(p.bounds[1:, 0], 0.2 / wave) and torch.allclose(p.bounds[1:, 1], 1.0 / wave)
    assert torch.equal(make().bounds[1:], torch.tensor([[make().config.amp_low,
                                                        make().config.amp_high]] * 3))


def test_sixty_four_parameters_batched_equal_one_at_a_time():
    p = Burgers1D(ic_terms=63, ic_decay=1.5, amp_low=0.2, amp_high=1.0, grid=128, n_steps=2)
    gen = torch.Generator().manual_seed(0)
    b = p.bounds
    params = b[:, 0] + torch.rand(3, 64, generator=gen) * (b[:, 1] - b[:, 0])
    batched = p.simulate(params)
    single = torch.cat([p.simulate(params[i : i + 1]) for i in range(3)])
    assert batched.shape == (3, 3, 128) and torch.isfinite(batched).all()
    assert torch.allclose(batched, single, atol=1e-6, rtol=0)


@pytest.mark.parametrize(("kwargs", "key"), [({"ic_terms": 0}, "ic_terms"),
                                             ({"ic_terms": 63}, "ic_terms"),  # grid 64: wave 21 at most
                                             ({"ic_decay": -1.0}, "ic_decay"),
                                             ({"ic_decay": float("nan")}, "ic_decay")])
def test_initial_condition_settings_that_cannot_hold_are_refused_naming_their_key(kwargs, key):
    with pytest.raises(ConfigError) as err:
        Burgers1D(**kwargs)
    assert err.value.key == key
