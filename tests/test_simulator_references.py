"""The simulators against independent references: the exact Cole–Hopf solution for Burgers,
a scipy Radau method-of-lines solve for KS; and the resolution rule that picks their grids."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from nearpole_exp.errors import ConfigError
from nearpole_exp.problems import references, resolution
from nearpole_exp.problems.burgers import Burgers1D
from nearpole_exp.problems.kdv import KdV1D
from nearpole_exp.problems.ks import KuramotoSivashinsky1D

TOL = 1e-3


def worst_relative_l2(frames: np.ndarray, ref: np.ndarray) -> float:
    err = np.sqrt(((frames - ref) ** 2).mean(axis=1)) / np.sqrt((ref**2).mean(axis=1))
    return float(err.max())


# --- the references themselves -------------------------------------------------------------


def test_cole_hopf_is_the_heat_limit_and_converges_in_its_quadrature():
    x = 2 * np.pi * np.arange(16) / 16
    times = np.array([0.0, 0.5, 1.0])
    eps, nu = 1e-5, 0.2  # tiny amplitude: u_t = ν u_xx, so sin x decays as e^{−νt}
    small = references.cole_hopf(np.array([eps, 0.0]), nu, x, times)
    assert np.allclose(small, eps * np.exp(-nu * times)[:, None] * np.sin(x), atol=1e-9 * eps)
    coarse = references.cole_hopf(np.array([1.0, 0.5, 0.5]), 0.01, x, times, quad_points=8192)
    fine = references.cole_hopf(np.array([1.0, 0.5, 0.5]), 0.01, x, times, quad_points=16384)
    assert np.abs(coarse - fine).max() < 1e-10


def test_ks_reference_follows_the_linear_growth_rate():
    length, eps = 20.0, 1e-7
    x = length * np.arange(32) / 32
    k = 2 * np.pi * 2 / length  # mode 2: k² − k⁴ > 0, grows
    out = references.ks_method_of_lines(eps * np.cos(k * x), length, np.array([0.0, 2.0]))
    assert np.allclose(out[1], eps * np.exp(2 * (k**2 - k**4)) * np.cos(k * x), rtol=1e-5)


# --- Burgers against Cole–Hopf ------------------------------------------------------------


@pytest.mark.parametrize("row", [[0.01, 1.0, 1.0, 1.0],   # the box's hardest corner
                                 [0.01, 0.2, 1.0, 0.2],   # smallest ν, a lopsided shock
                                 [0.03, 0.6, 0.3, 0.9],
                                 [0.1, 0.2, 0.2, 0.2]])
def test_burgers_matches_cole_hopf_on_every_saved_frame(row):
    p = Burgers1D(n_steps=25)
    params = torch.tensor([row])
    frames = p.solve(params)[0].numpy()
    x = 2 * np.pi * np.arange(p.config.grid) / p.config.grid
    times = np.arange(26) * p.config.dt_save
    ref = references.cole_hopf(np.array(row[1:]), float(p.viscosity(params)[0]), x, times,
                               quad_points=8192)
    assert worst_relative_l2(frames, ref) < TOL


def test_the_old_64_point_solve_is_not_burgers_at_small_viscosity():
    row = [0.01, 1.0, 1.0, 1.0]
    old = Burgers1D(sim_grid=64, substeps=10, allow_under_resolved=True)
    x = 2 * np.pi * np.arange(64) / 64
    ref = references.cole_hopf(np.array(row[1:]), 0.01, x, np.arange(26) * 0.1, quad_points=8192)
    assert worst_relative_l2(old.solve(torch.tensor([row]))[0].numpy(), ref) > 0.1


def test_burgers_domain_and_wavenumbers_are_float64_exact():
    p = Burgers1D()
    length = p.domain_length(torch.zeros(2, 4))
    assert length.dtype == torch.float64 and float(length[0]) == 2 * math.pi


def test_burgers_invariants_on_the_fine_grid():
    p = Burgers1D()
    params = torch.tensor([[0.01, 1.0, 1.0, 1.0], [0.05, 0.3, 0.8, 0.5]])
    plan = p.plan(params)
    m, s = int(plan.multiple.max()), int(plan.substeps.max())
    u0 = p.initial_condition(params, m * 64) + torch.tensor([[0.25], [-0.4]], dtype=torch.float64)
    fine = p.evolve(u0, params, stride=1, substeps=s)
    means = fine.mean(dim=2)
    assert torch.allclose(means, means[:, :1].expand_as(means), atol=1e-12)
    energy = (fine - means[..., None]).pow(2).mean(dim=2)
    assert (energy[:, 1:] < energy[:, :-1]).all()


def test_many_initial_condition_terms_match_cole_hopf_at_the_hardest_corner():
    p = Burgers1D(ic_terms=15, ic_decay=1.0, amp_low=0.2, amp_high=1.0, n_steps=10)
    params = p.bounds[:, 1].clone()[None]  # every amplitude at its top, and the smallest ν
    params[0, 0] = 0.01
    frames = p.solve(params)[0].numpy()
    x = 2 * np.pi * np.arange(p.config.grid) / p.config.grid
    ref = references.cole_hopf(params[0, 1:].double().numpy(), 0.01, x,
                               np.arange(11) * p.config.dt_save, quad_points=8192)
    assert worst_relative_l2(frames, ref) < TOL


# --- KS against the method of lines ---------------------------------------------------------


@pytest.mark.parametrize("row", [[30.0, 1.0, -0.5, 0.7], [100.0, -0.6, 0.9, -0.3]])
def test_ks_matches_a_four_times_finer_method_of_lines_solve(row):
    """Three initial-condition terms, the default."""
    p = KuramotoSivashinsky1D(length_high=100.0, n_steps=25)
    params = torch.tensor([row])
    fine = 4 * p.config.grid
    u0 = p.initial_condition(params, fine)[0].numpy()
    ref = references.ks_method_of_lines(u0, row[0], np.arange(26) * p.config.dt_save)[:, ::4]
    assert worst_relative_l2(p.solve(params)[0].numpy(), ref) < TOL


def test_ks_with_fifteen_initial_condition_terms_matches_the_method_of_lines():
    p = KuramotoSivashinsky1D(length_high=100.0, ic_terms=15, ic_decay=0.5, n_steps=10)
    gen = torch.Generator().manual_seed(3)
    b = p.bounds
    params = b[:, 0] + torch.rand(1, len(b), generator=gen) * (b[:, 1] - b[:, 0])
    params[0, 0] = 80.0
    fine = 4 * p.config.grid
    u0 = p.initial_condition(params, fine)[0].numpy()
    ref = references.ks_method_of_lines(u0, 80.0, np.arange(11) * p.config.dt_save)[:, ::4]
    assert worst_relative_l2(p.solve(params)[0].numpy(), ref) < TOL


# --- the resolution rule --------------------------------------------------------------------


def test_five_smooth_rounding():
    got = resolution.five_smooth_at_least(torch.tensor([0.2, 1.0, 7.0, 7.5, 11.0, 14.0, 31.0, 97.0]))
    assert got.tolist() == [1, 1, 8, 8, 12, 15, 32, 100]


def test_sup_bound_is_the_maximum_over_the_amplitude_box():
    bound = resolution.sup_bound(torch.tensor([[0.2, 1.0]] * 3))
    corners = torch.tensor([[a, b, c] for a in (0.2, 1.0) for b in (0.2, 1.0) for c in (0.2, 1.0)],
                           dtype=torch.float64)
    basis = torch.stack([torch.sin(t := torch.linspace(0, 2 * math.pi, 4097, dtype=torch.float64)),
                         torch.cos(t), torch.sin(2 * t)])
    assert math.isclose(bound, float((corners @ basis).abs().max()), rel_tol=1e-4)


def test_burgers_needs_more_points_and_steps_as_viscosity_falls():
    p = Burgers1D()
    params = torch.tensor([[nu, 1.0, 1.0, 1.0] for nu in (0.1, 0.05, 0.02, 0.01)])
    plan = p.plan(params)
    assert plan.multiple.tolist() == sorted(plan.multiple.tolist())
    assert plan.substeps.tolist() == sorted(plan.substeps.tolist())
    assert int(plan.multiple[-1]) * 64 >= 3 * resolution.BURGERS_DECAY * 2.4 / (math.pi * 0.01)


def test_ks_grid_spacing_follows_the_domain_length():
    p = KuramotoSivashinsky1D(length_high=100.0)
    plan = p.plan(torch.tensor([[10.0, 0, 0, 0], [40.0, 0, 0, 0], [100.0, 0, 0, 0]]))
    spacing = torch.tensor([10.0, 40.0, 100.0]) / (plan.multiple * 64)
    assert (spacing <= resolution.KS_DX).all() and plan.multiple.tolist() == [1, 2, 3]


def test_a_rows_resolution_depends_on_that_row_alone():
    p = Burgers1D(n_steps=4)
    params = torch.tensor([[0.011, 0.9, 0.8, 0.7], [0.09, 0.3, 0.2, 0.4], [0.04, 0.5, 0.5, 0.5]])
    batched = p.simulate(params)
    single = torch.cat([p.simulate(params[i : i + 1]) for i in range(3)])
    assert torch.allclose(batched, single, atol=1e-6, rtol=0)


def test_rows_outside_the_box_get_at_most_the_box_resolution():
    p = Burgers1D(n_steps=2)
    params = torch.tensor([[0.0, 1.0, 1.0, 1.0], [1e-6, 1.0, 1.0, 1.0], [float("nan"), 1, 1, 1]])
    plan = p.plan(params)
    hardest = p.plan(torch.tensor([[0.01, 1.0, 1.0, 1.0]]))
    assert (plan.multiple <= hardest.multiple).all() and (plan.substeps <= hardest.substeps).all()
    s = p.label(params)
    assert s.targets.shape[0] == 6  # computed (NaN where invalid), never an unbounded grid


@pytest.mark.parametrize(("make", "kwargs", "key"), [
    (Burgers1D, {"sim_grid": 256}, "sim_grid"),
    (Burgers1D, {"substeps": 10}, "substeps"),
    (Burgers1D, {"sim_grid": 96}, "sim_grid"),  # not a multiple of grid
    (KuramotoSivashinsky1D, {"length_high": 100.0, "sim_grid": 64}, "sim_grid"),
    (KuramotoSivashinsky1D, {"substeps": 5}, "substeps"),
])
def test_a_fixed_grid_that_cannot_resolve_the_box_is_refused(make, kwargs, key):
    with pytest.raises(ConfigError) as err:
        make(**kwargs)
    assert err.value.key == key and ("allow_under_resolved" in str(err.value) or key == "sim_grid")


def test_an_explicit_opt_in_builds_and_says_so():
    p = Burgers1D(sim_grid=64, substeps=10, allow_under_resolved=True)
    assert p.summary_info()["problem/under_resolved"] is True
    resolved = Burgers1D(nu_low=0.05, sim_grid=384, substeps=20)
    assert resolved.summary_info() == {"problem/under_resolved": False,
                                       "problem/sim_grid_max": 384, "problem/substeps_max": 20}
    auto = Burgers1D().summary_info()
    assert auto["problem/under_resolved"] is False and auto["problem/sim_grid_max"] == 1536


@pytest.mark.parametrize(("make", "kwargs", "key"), [
    (Burgers1D, {"nu_low": 1e-5}, "nu_low"),            # the rule would ask for ~1.4e6 points
    (KuramotoSivashinsky1D, {"length_high": 1e5}, "length_high"),
    (Burgers1D, {"amp_high": float("inf")}, "amp_high"),
    (Burgers1D, {"nu_high": float("inf")}, "nu_high"),
    (KuramotoSivashinsky1D, {"amp_low": float("nan")}, "amp_low"),
])
def test_an_unaffordable_or_non_finite_box_is_refused_naming_its_key(make, kwargs, key):
    with pytest.raises(ConfigError) as err:
        make(**kwargs)
    assert err.value.key == key


def test_an_unaffordable_box_can_still_run_knowingly_under_resolved():
    p = Burgers1D(nu_low=1e-5, sim_grid=64, substeps=10, allow_under_resolved=True, n_steps=2)
    assert p.summary_info()["problem/under_resolved"] is True
    assert p.simulate(torch.tensor([[1e-5, 0.5, 0.5, 0.5]])).shape == (1, 3, 64)


# --- diffusive KdV ---------------------------------------------------------------------------


def test_kdv_matches_a_four_times_finer_method_of_lines_solve():
    p = KdV1D(n_steps=10, dispersion_low=2e-3, amp_low=0.2, amp_high=0.6)
    params = torch.tensor([[2e-3, 0.6, 0.6, 0.6]])
    u0 = p.initial_condition(params, 256)[0].numpy()
    ref = references.kdv_method_of_lines(u0, 2e-3, p.config.viscosity,
                                         np.arange(11) * p.config.dt_save)[:, ::4]
    assert worst_relative_l2(p.solve(params)[0].numpy(), ref) < TOL


def test_a_kdv_soliton_travels_at_a_third_of_its_amplitude_unchanged():
    delta, amp, t_end = 2e-3, 2.0, 1.0
    p = KdV1D(viscosity=0.0, dispersion_low=1e-3, n_steps=5, dt_save=t_end / 5)
    width = math.sqrt(12 * delta / amp)

    def soliton(t: float, n: int) -> torch.Tensor:
        x = 2 * math.pi * torch.arange(n, dtype=torch.float64) / n
        shift = (x - math.pi - amp / 3 * t + math.pi) % (2 * math.pi) - math.pi
        return amp / torch.cosh(shift / width) ** 2

    params = torch.tensor([[delta, 0.0, 0.0, 0.0]])
    plan = p.plan(torch.tensor([[delta, 1.0, 1.0, 1.0]]))
    n = int(plan.multiple[0]) * 64
    frames = p.evolve(soliton(0.0, n)[None], params, stride=1, substeps=int(plan.substeps[0]) * 2)
    assert float((frames[0, -1] - soliton(t_end, n)).abs().max()) < 1e-3 * amp
    energy = frames[0].pow(2).mean(dim=1)  # ν = 0: KdV conserves ∫u²
    assert float((energy / energy[0] - 1).abs().max()) < 1e-8


def test_kdv_needs_more_points_as_dispersion_falls():
    p = KdV1D()
    plan = p.plan(torch.tensor([[d, 1.0, 1.0, 1.0] for d in (5e-3, 2e-3, 1e-3, 5e-4)]))
    assert plan.multiple.tolist() == sorted(plan.multiple.tolist()) and plan.multiple[0] < plan.multiple[-1]
    assert p.summary_info()["problem/sim_grid_max"] == int(plan.multiple[-1]) * 64


@pytest.mark.parametrize(("kwargs", "key"), [({"dispersion_low": 0.0}, "dispersion_low"),
                                             ({"dispersion_low": 1e-8}, "dispersion_low"),
                                             ({"dispersion_high": 1e-4}, "dispersion_high"),
                                             ({"viscosity": -1.0}, "viscosity"),
                                             ({"sim_grid": 128}, "sim_grid")])
def test_kdv_boxes_that_cannot_be_resolved_or_make_no_sense_are_refused(kwargs, key):
    with pytest.raises(ConfigError) as err:
        KdV1D(**kwargs)
    assert err.value.key == key
