"""Tests of the multipole1d, curve2d and rr_ik reference problems against closed forms."""

from __future__ import annotations

import math

import pytest
import torch

from nearpole_exp import metrics
from nearpole_exp.errors import ConfigError
from nearpole_exp.problems.base import ModelQ
from nearpole_exp.problems.curve2d import (
    Curve2D,
    point_segment_distance,
    symmetric_chamfer,
    zero_set,
)
from nearpole_exp.problems.multipole1d import MultiPole1D, MultiPole1DConfig
from nearpole_exp.problems.rr_ik import RRIK, RRIKConfig, truncated_normal

BUCKETS = range(len(metrics.BUCKET_EDGES) - 1)
NAMES = ["eval/mse"] + [f"eval/{kind}/B{k}" for kind in ("relerr_median", "bucket_count",
                                                          "bucket_mse") for k in BUCKETS]


def bucket_counts(distance: torch.Tensor) -> list[int]:
    return torch.bincount(metrics.bucket_index(distance), minlength=len(BUCKETS)).tolist()


def exact_fn(problem):
    """The problem's own target in float64: a perfect predictor for float64 evaluation targets."""
    return lambda x: problem.target(x.double())


def zeros_like_target(out: int):
    return lambda x: torch.zeros(len(x), out)


def assert_perfect(metrics_out: dict[str, float]) -> None:
    for k in BUCKETS:
        assert metrics_out[f"eval/bucket_count/B{k}"] > 0
        assert metrics_out[f"eval/relerr_median/B{k}"] == pytest.approx(0.0, abs=1e-7)
        assert metrics_out[f"eval/bucket_mse/B{k}"] == pytest.approx(0.0, abs=1e-7)
    assert metrics_out["eval/mse"] == pytest.approx(0.0, abs=1e-7)


def assert_trivial(metrics_out: dict[str, float]) -> None:
    for name in NAMES:
        assert name in metrics_out and math.isfinite(metrics_out[name]), name
    for k in BUCKETS:
        assert metrics_out[f"eval/relerr_median/B{k}"] == pytest.approx(1.0)


# ---------------------------------------------------------------- multipole1d


def test_multipole_target_matches_closed_form():
    p = MultiPole1D()
    x = torch.tensor([[-0.9], [0.0], [0.35], [0.9]], dtype=torch.float64)
    v = x[:, 0]
    expected = 1.0 / (v + 0.55) - 0.5 / (v - 0.1) + 0.8 / (v - 0.62) + 0.5 * v + 0.1 * v**2
    torch.testing.assert_close(p.target(x)[:, 0], expected, rtol=1e-12, atol=0)
    assert p.out_features == 1 and p.param_dim == 1


def test_multipole_q_vanishes_and_changes_sign_at_each_pole():
    p = MultiPole1D()
    poles = p.poles().double()
    assert p.q(poles[:, None]).abs().max() < 1e-7
    left = p.q((poles - 1e-4)[:, None])
    right = p.q((poles + 1e-4)[:, None])
    assert bool((left * right < 0).all())
    grid = torch.linspace(-1, 1, 4001, dtype=torch.float64)[:, None]
    assert float(p.q(grid).abs().max()) == pytest.approx(1.0, abs=1e-6)
    raw = MultiPole1D(normalize_q=False).q(grid)
    torch.testing.assert_close(raw, (grid - poles).prod(dim=1))


def test_multipole_distance_is_nearest_pole():
    p = MultiPole1D(poles=[-0.3, 0.05, 0.8], residues=[1.0, -2.0, 0.5])
    x = torch.tensor([[-1.0], [-0.3], [-0.1], [0.4], [0.5], [0.99]], dtype=torch.float64)
    expected = torch.tensor([0.7, 0.0, 0.15, 0.35, 0.3, 0.19], dtype=torch.float64)
    torch.testing.assert_close(p.distance(x), expected, rtol=0, atol=1e-12)
    torch.testing.assert_close(p.poles(), torch.tensor([-0.3, 0.05, 0.8], dtype=torch.float64))


@pytest.mark.parametrize(("overrides", "key"), [
    ({"poles": (0.2, 1.5), "residues": (1.0, 1.0)}, "poles"),
    ({"poles": (0.2, 0.2), "residues": (1.0, 1.0)}, "poles"),
    ({"poles": (0.2, 0.205), "residues": (1.0, 1.0)}, "poles"),
    ({"residues": (1.0, 2.0)}, "residues"),
    ({"residues": (1.0, 0.0, 1.0)}, "residues"),
    ({"smooth": (1.0,)}, "smooth"),
    ({"low": 1.0, "high": -1.0}, "high"),
])
def test_multipole_config_validation(overrides, key):
    with pytest.raises(ConfigError) as err:
        MultiPole1D(MultiPole1DConfig(), **overrides)
    assert err.value.key == key


def test_multipole_evaluation_buckets_and_ple():
    p = MultiPole1D(n_eval=400)
    x, _, dist, _ = p.eval_set()
    assert min(bucket_counts(dist)) > 0
    assert bool(((x > -1) & (x < 1)).all())
    perfect = p.evaluate(exact_fn(p), ModelQ(p.q))
    assert_perfect(perfect)
    assert perfect["eval/ple"] < 1e-6
    assert p.evaluate(p.target)["eval/ple"] < 2e-4
    trivial = p.evaluate(zeros_like_target(1))
    assert_trivial(trivial)
    assert trivial["eval/ple"] == pytest.approx(2.0)


# -------------------------------------------------------------------- curve2d


@pytest.fixture(params=["ellipse", "sine"])
def curve(request) -> Curve2D:
    return Curve2D(shape=request.param, n_eval=400, ple_grid=129)


def test_curve2d_target_matches_closed_form():
    x = torch.tensor([[0.5, 0.5], [-0.8, 0.1]], dtype=torch.float64)
    smooth = 0.5 * x[:, 0] - 0.3 * x[:, 1] + 0.2 * x[:, 0] * x[:, 1]
    ellipse = ((x[:, 0] - 0.1) / 0.6) ** 2 + ((x[:, 1] + 0.05) / 0.35) ** 2 - 1
    torch.testing.assert_close(Curve2D().target(x)[:, 0], 1 / ellipse + smooth)
    sine = x[:, 1] - 0.4 * torch.sin(3.0 * x[:, 0])
    torch.testing.assert_close(Curve2D(shape="sine").target(x)[:, 0], 1 / sine + smooth)


def test_curve2d_q_vanishes_on_curve_and_changes_sign(curve):
    on, normal = curve.curve_points(64)
    assert curve.q(on).abs().max() < 1e-12
    assert bool((curve.q(on + 1e-4 * normal) > 0).all())
    assert bool((curve.q(on - 1e-4 * normal) < 0).all())
    torch.testing.assert_close(normal.norm(dim=1), torch.ones(64, dtype=torch.float64))


def test_curve2d_distance_matches_brute_force(curve):
    gen = torch.Generator().manual_seed(3)
    pts = curve.uniform(40, gen).double()
    if curve.config.shape == "ellipse":
        t = torch.linspace(0, 2 * math.pi, 200_001, dtype=torch.float64)
    else:
        t = torch.linspace(-2.5, 2.5, 200_001, dtype=torch.float64)
    dense = curve.curve.gamma(t)
    brute = torch.cat([torch.cdist(c, dense).min(dim=1).values for c in pts.split(8)])
    dist = curve.distance(pts)
    assert bool((dist <= brute + 1e-12).all())
    assert float((brute - dist).max()) < 1e-6
    on, normal = curve.curve_points(16)
    for offset in (1e-6, 1e-4, 1e-2):
        for side in (1.0, -1.0):
            got = curve.distance(on + side * offset * normal)
            torch.testing.assert_close(got, torch.full_like(got, offset), rtol=1e-6, atol=0)


def test_curve2d_eval_set_fills_every_bucket(curve):
    x, y, dist, is_uniform = curve.eval_set()
    counts = bucket_counts(dist)
    assert min(counts) >= 8, counts
    b = curve.bounds
    assert bool(((x >= b[:, 0]) & (x <= b[:, 1])).all())
    assert bool(torch.isfinite(y).all())
    assert int(is_uniform.sum()) == 400
    assert float(dist[~is_uniform].min()) < 1e-6


def test_curve2d_metrics_perfect_and_trivial(curve):
    perfect = curve.evaluate(exact_fn(curve), ModelQ(curve.q))
    assert_perfect(perfect)
    assert perfect["eval/ple"] < 1e-3
    shifted = curve.evaluate(exact_fn(curve), ModelQ(lambda x: curve.q(x) - 0.05))
    assert 1e-3 < shifted["eval/ple"] < 0.1
    flat = curve.evaluate(zeros_like_target(1), ModelQ(lambda x: torch.ones(len(x))))
    assert_trivial(flat)
    assert flat["eval/ple"] == pytest.approx(curve.diameter)
    assert "eval/ple" not in curve.evaluate(zeros_like_target(1))


def test_zero_set_of_a_line_and_segment_distance():
    g = torch.linspace(-1, 1, 41, dtype=torch.float64)
    values = (g[:, None] - 0.33).expand(-1, 41).clone()
    found, segments = zero_set(values, g, g)
    assert len(found) == 41 and len(segments) == 40
    torch.testing.assert_close(found[:, 0], torch.full((41,), 0.33, dtype=torch.float64))
    d = point_segment_distance(torch.tensor([[0.5, 0.0], [0.33, 2.0]], dtype=torch.float64),
                               segments)
    torch.testing.assert_close(d, torch.tensor([0.17, 1.0], dtype=torch.float64))
    assert symmetric_chamfer(torch.tensor([0.1]), torch.tensor([0.3, 5.0]), 2.0) == \
        pytest.approx(0.5 * (0.1 + 2.0))
    assert symmetric_chamfer(torch.empty(0), torch.tensor([0.3]), 2.0) == 2.0


@pytest.mark.parametrize(("overrides", "key"), [
    ({"shape": "circle"}, "shape"),
    ({"axes": (0.95, 0.3)}, "axes"),
    ({"shape": "sine", "amplitude": 1.2}, "amplitude"),
    ({"smooth": (1.0, 2.0)}, "smooth"),
])
def test_curve2d_config_validation(overrides, key):
    with pytest.raises(ConfigError) as err:
        Curve2D(**overrides)
    assert err.value.key == key


# ----------------------------------------------------------------------- rr_ik


def jacobian64(x: torch.Tensor, l1: float = 1.0, l2: float = 1.0) -> torch.Tensor:
    x = x.double()
    t1, t12 = x[:, 0], x[:, 0] + x[:, 1]
    return torch.stack([torch.stack([-l1 * torch.sin(t1) - l2 * torch.sin(t12),
                                     -l2 * torch.sin(t12)], dim=1),
                        torch.stack([l1 * torch.cos(t1) + l2 * torch.cos(t12),
                                     l2 * torch.cos(t12)], dim=1)], dim=1)


def test_rr_ik_exact_labels_invert_the_jacobian():
    p = RRIK(labels="exact", l1=0.7, l2=1.3)
    x = p.uniform(2000, torch.Generator().manual_seed(0))
    x = x[torch.sin(x[:, 1]).abs() > 0.1]
    dtheta = p.target(x)
    assert dtheta.shape == (len(x), 2) and dtheta.dtype == torch.float32
    moved = (jacobian64(x, 0.7, 1.3) @ dtheta.double()[:, :, None])[:, :, 0]
    assert float((moved - x[:, 2:].double()).abs().max()) < 1e-5


def test_rr_ik_dls_labels_match_formula_and_stay_bounded():
    p = RRIK(labels="dls")
    x = p.uniform(500, torch.Generator().manual_seed(1))
    jac = jacobian64(x)
    lam2 = 0.01**2
    a = jac @ jac.transpose(1, 2) + lam2 * torch.eye(2, dtype=torch.float64)
    expected = (jac.transpose(1, 2) @ torch.linalg.solve(a, x[:, 2:].double()[:, :, None]))
    torch.testing.assert_close(p.target(x).double(), expected[:, :, 0], rtol=1e-5, atol=1e-6)
    near = p.near_pole_points(100)
    bound = near[:, 2:].double().norm(dim=1) / (2 * 0.01)
    assert bool((p.target(near).double().norm(dim=1) <= bound * (1 + 1e-5)).all())
    exact = RRIK(labels="exact")
    far = x[torch.sin(x[:, 1]).abs() > 0.5]
    rel = metrics.relative_error(p.target(far).double(), exact.target(far).double())
    assert 0 < float(rel.max()) < 1e-2


def test_rr_ik_q_and_distance():
    p = RRIK(l1=0.7, l2=1.3)
    theta2 = torch.tensor([0.0, 1e-3, -1e-3, math.pi - 1e-3, -math.pi + 1e-3, math.pi / 2],
                          dtype=torch.float64)
    x = torch.stack([torch.zeros(6, dtype=torch.float64), theta2,
                     torch.full((6,), 0.1, dtype=torch.float64),
                     torch.zeros(6, dtype=torch.float64)], dim=1)
    q = p.q(x)
    torch.testing.assert_close(q, 0.91 * torch.sin(theta2))
    assert q[0] == 0 and q[1] > 0 > q[2] and q[3] > 0 > q[4]
    torch.testing.assert_close(p.distance(x), q.abs())
    assert p.param_dim == 4 and p.out_features == 2


def test_rr_ik_zeroproof_dataset_recipe():
    p = RRIK()
    pts = p.zeroproof_dataset(20000, generator=torch.Generator().manual_seed(123))
    assert pts.shape == (20000, 4) and pts.dtype == torch.float32
    det = p.distance(pts)
    assert float((det < 1e-3).double().mean()) == pytest.approx(0.35, abs=0.01)
    gap = (det >= 1e-3) & (det < 2e-3)
    assert int(gap.sum()) == 0
    assert min(bucket_counts(det)) > 0
    b = p.bounds
    assert bool(((pts >= b[:, 0]) & (pts <= b[:, 1])).all())
    assert float(pts[:, 2:].std()) == pytest.approx(0.1, abs=0.005)
    assert float(pts[:, 0].std()) == pytest.approx(math.pi / math.sqrt(3), abs=0.05)
    again = p.zeroproof_dataset(20000, generator=torch.Generator().manual_seed(123))
    torch.testing.assert_close(pts, again, rtol=0, atol=0)
    small = p.zeroproof_dataset(400, singular_share=0.1, generator=torch.Generator().manual_seed(5))
    assert float((p.distance(small) < 1e-3).double().mean()) == pytest.approx(0.1, abs=0.01)
    for n in (10, 40):
        tiny = p.zeroproof_dataset(n, generator=torch.Generator().manual_seed(n))
        assert min(bucket_counts(p.distance(tiny))) > 0


def test_truncated_normal_respects_bound():
    z = truncated_normal(50000, 0.1, 0.3, torch.Generator().manual_seed(0))
    assert float(z.abs().max()) < 0.3
    assert float(z.std()) == pytest.approx(0.0986, abs=0.002)


@pytest.mark.parametrize("bulk", ["zeroproof", "uniform"])
def test_rr_ik_eval_set_fills_every_bucket(bulk):
    p = RRIK(eval_bulk=bulk, n_eval=1000)
    _, y, det, is_bulk = p.eval_set()
    assert min(bucket_counts(det)) >= 30
    assert bool(torch.isfinite(y).all())
    share = float((det[is_bulk] < 1e-3).double().mean())
    assert share == pytest.approx(0.35 if bulk == "zeroproof" else 0.0, abs=0.01)


def test_rr_ik_metrics_perfect_and_trivial():
    exact = RRIK(labels="exact", n_eval=1000)
    perfect = exact.evaluate(exact_fn(exact), ModelQ(lambda x: torch.sin(x[:, 1])))
    assert_perfect(perfect)
    assert perfect["eval/ple"] < 1e-6
    shifted = exact.evaluate(exact_fn(exact), ModelQ(lambda x: torch.sin(x[:, 1] - 0.02)))
    assert shifted["eval/ple"] == pytest.approx(0.02, abs=1e-4)
    none = exact.evaluate(exact_fn(exact), ModelQ(lambda x: torch.ones(len(x))))
    assert none["eval/ple"] == pytest.approx(2 * math.pi)
    trivial = exact.evaluate(zeros_like_target(2))
    assert_trivial(trivial)
    assert trivial["eval/bucket_mse/B0"] > 1e6
    dls = RRIK(labels="dls", n_eval=1000)
    assert_perfect(dls.evaluate(exact_fn(dls), ModelQ(lambda x: torch.sin(x[:, 1]))))
    damped = dls.evaluate(zeros_like_target(2), ModelQ(lambda x: torch.sin(x[:, 1])))
    assert_trivial(damped)
    assert "eval/ple" not in damped
    assert damped["eval/bucket_mse/B0"] < 0.02


@pytest.mark.parametrize(("overrides", "key"), [
    ({"labels": "pinv"}, "labels"),
    ({"damping": 0.0}, "damping"),
    ({"singular_threshold": 0.6}, "singular_threshold"),
    ({"eval_bulk": "grid"}, "eval_bulk"),
    ({"l2": -1.0}, "l2"),
])
def test_rr_ik_config_validation(overrides, key):
    with pytest.raises(ConfigError) as err:
        RRIK(RRIKConfig(), **overrides)
    assert err.value.key == key


def test_plots_write_png(tmp_path):
    curve = Curve2D(n_eval=100)
    arm = RRIK(n_eval=200)
    paths = curve.plots(curve.target, str(tmp_path)) + arm.plots(zeros_like_target(2),
                                                                  str(tmp_path))
    assert len(paths) == 2
    for path in paths:
        with open(path, "rb") as fh:
            assert fh.read(8) == b"\x89PNG\r\n\x1a\n"


def test_zeroproof_generator_is_drawn_as_their_code_draws_it() -> None:
    """ZeroProofML's own RR-IK generator, clipping and all: about 9 % of the rows in B0 (half of
    the π-side singular rows clipped onto θ2 = π), one row on each singular line, untruncated
    displacements; the project's recipe puts 0.4 % there."""
    problem = RRIK()
    gen = torch.Generator().manual_seed(123)
    x = problem.zeroproof_generator_dataset(20000, generator=gen).double()
    share = torch.bincount(metrics.bucket_index(problem.distance(x)), minlength=5).double() / len(x)
    assert 0.08 < float(share[0]) < 0.10
    assert float(x[0, 1]) == 0.0 and abs(float(x[1, 1]) - math.pi) < 1e-6
    assert float(x[:, 2:].abs().max()) > problem.config.d_max  # N(0, 0.1²), not truncated
    recipe = problem.zeroproof_dataset(20000, generator=torch.Generator().manual_seed(123)).double()
    recipe_share = torch.bincount(metrics.bucket_index(problem.distance(recipe)), minlength=5)
    assert float(recipe_share[0]) / len(recipe) < 0.01
    metrics_ = RRIK(eval_bulk="zeroproof_generator", n_eval=400).evaluate(exact_fn(RRIK()))
    assert "eval/recipe_mse/B0" in metrics_ and metrics_["eval/recipe_count/B0"] > 20
