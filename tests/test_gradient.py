"""Hybrid-gradient δ schedule: shapes, warm-up, adaptive widening, and use with hybrid_divide."""

from __future__ import annotations

import io
import math

import pytest
import torch

from nearpole_exp.errors import ConfigError
from nearpole_exp.models.delta_schedule import DeltaSchedule, DeltaScheduleConfig, ExactGradient
from nearpole_exp.models.rational import hybrid_divide


def fixed(schedule: str, **kw) -> DeltaSchedule:
    return DeltaSchedule(DeltaScheduleConfig(transition_steps=20, schedule=schedule,
                                             adaptive_delta=False, **kw))


def test_exponential_values():
    s = fixed("exponential")
    got = [s.delta(k) for k in (0, 5, 10, 15, 20, 100)]
    assert got == pytest.approx([1e-2, 1e-3, 1e-4, 1e-5, 1e-6, 1e-6], rel=1e-9)


def test_linear_and_cosine_values():
    lin, cos = fixed("linear"), fixed("cosine")
    assert lin.delta(10) == pytest.approx((1e-2 + 1e-6) / 2)
    assert lin.delta(5) == pytest.approx(1e-2 + 0.25 * (1e-6 - 1e-2))
    assert cos.delta(10) == pytest.approx((1e-2 + 1e-6) / 2)
    assert cos.delta(5) == pytest.approx(1e-6 + 0.5 * (1e-2 - 1e-6) * (1 + math.cos(math.pi / 4)))
    assert cos.delta(0) == pytest.approx(1e-2) and cos.delta(20) == pytest.approx(1e-6)


def test_warmup_uses_the_widest_band_then_decays():
    s = fixed("exponential", warmup_steps=10)
    assert [s.phase(k) for k in (0, 9, 10, 29, 30)] == ["warmup", "warmup", "transition",
                                                        "transition", "final"]
    assert s.delta(3) == pytest.approx(1e-2)
    assert s.delta(10) == pytest.approx(1e-2)
    assert s.delta(20) == pytest.approx(1e-4)


def test_adaptive_delta_widens_from_the_batch_low_quantile():
    s = DeltaSchedule(transition_steps=20)
    q_mid = torch.logspace(-4, 0, 101)  # P10 = 10^-3.6
    d = s.delta(20, q_mid)
    assert d == pytest.approx(10**-3.6, rel=1e-6) and d > s.scheduled(20)
    assert s.metrics()["gradient/saturated_fraction"] == pytest.approx(10 / 101)
    assert s.delta(20, torch.full((64,), 5.0)) == pytest.approx(2e-2)  # capped at 2·delta_init
    assert s.delta(20, torch.full((64,), 1e-9)) == pytest.approx(1e-6)  # never below schedule
    assert s.delta(20, torch.tensor([float("nan"), 1e-3])) == pytest.approx(1e-3, rel=0.2)
    assert s.delta(20, None) == pytest.approx(1e-6)
    assert math.isnan(s.metrics()["gradient/saturated_fraction"])


def test_disabled_and_floor():
    assert DeltaSchedule(enable=False).delta(0, torch.ones(4)) == 0.0
    assert ExactGradient().delta(5, torch.full((4,), 1e-3)) == 0.0
    s = DeltaSchedule(delta_init=1e-6, delta_final=1e-12, transition_steps=1, min_delta=1e-8,
                      adaptive_delta=False)
    assert s.delta(5) == pytest.approx(1e-8)
    with pytest.raises(ConfigError) as err:
        DeltaScheduleConfig(schedule="step")
    assert err.value.key == "schedule"
    with pytest.raises(ConfigError):
        DeltaScheduleConfig(delta_final=1.0)


def test_delta_bounds_hybrid_divide_gradient_on_a_pole():
    s = DeltaSchedule(transition_steps=20)
    q = torch.tensor([0.0, 1e-7, 0.5], requires_grad=True)
    p = torch.ones(3, requires_grad=True)
    delta = s.delta(20, q.detach())
    hybrid_divide(p, q, delta).sum().backward()
    assert bool(torch.isfinite(q.grad).all()) and bool(torch.isfinite(p.grad).all())
    assert float(p.grad.abs().max()) <= 1 / (2 * delta) + 1e-6


def test_state_roundtrip():
    s = DeltaSchedule()
    s.delta(7, torch.logspace(-5, 0, 50))
    buf = io.BytesIO()
    torch.save(s.state_dict(), buf)
    buf.seek(0)
    other = DeltaSchedule()
    other.load_state_dict(torch.load(buf, weights_only=True))
    assert other.metrics() == s.metrics()


@pytest.mark.parametrize("foreach", [False, True])
def test_adamw_matches_torch_bit_for_bit(foreach: bool) -> None:
    """The project's AdamW is torch's AdamW op for op (its single-tensor path, or its multi-tensor
    path with ``foreach``), with an interchangeable state_dict."""
    import copy

    from nearpole_exp.optim.adamw import AdamW

    torch.manual_seed(0)
    ours = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1)).double()
    theirs = copy.deepcopy(ours)
    x, y = torch.randn(32, 3, dtype=torch.float64), torch.randn(32, 1, dtype=torch.float64)
    opts = [AdamW(ours.parameters(), lr=1e-2, weight_decay=0.05, foreach=foreach),
            torch.optim.AdamW(theirs.parameters(), lr=1e-2, weight_decay=0.05, foreach=foreach)]
    for model, opt in zip((ours, theirs), opts, strict=True):
        for _ in range(15):
            opt.zero_grad(set_to_none=True)
            ((model(x) - y) ** 2).mean().backward()
            opt.step()
    assert all(torch.equal(a, b) for a, b in zip(ours.parameters(), theirs.parameters(), strict=True))
    opts[1].load_state_dict(opts[0].state_dict())
    opts[0].load_state_dict(opts[1].state_dict())


def test_adamw_never_imports_dynamo_and_leaves_torch_as_it_was() -> None:
    """A child that trains with the project's AdamW (the runner's, the DDPM's and the ratio
    classifier's) never loads torch._dynamo, and torch's own optimizers keep their
    dynamo-disabled methods: the class binds the undecorated functions for itself instead of
    writing into torch's caches. Fails when torch wraps another base-class method (the list in
    adamw.py must follow)."""
    import subprocess
    import sys

    from nearpole_exp.optim.adamw import DYNAMO_WRAPPED

    wrapper = torch._disable_dynamo(lambda: None).__code__
    wrapped = sorted(name for name, attr in vars(torch.optim.Optimizer).items()
                     if getattr(attr, "__code__", None) is wrapper)
    assert wrapped == sorted(DYNAMO_WRAPPED)
    code = ("import sys, torch; from nearpole_exp.optim.adamw import AdamW, DYNAMO_WRAPPED\n"
            "from nearpole_exp.acquisition.ogas.config import DDPMConfig\n"
            "from nearpole_exp.acquisition.ogas.ddpm import ConditionalDDPM\n"
            "m = torch.nn.Linear(2, 1)\n"
            "for foreach in (False, True):\n"
            "    o = AdamW(m.parameters(), foreach=foreach); m(torch.ones(1, 2)).sum().backward()\n"
            "    o.step(); o.load_state_dict(o.state_dict()); o.zero_grad()\n"
            "    o.add_param_group({'params': [torch.nn.Parameter(torch.ones(1))]})\n"
            "from nearpole_exp.acquisition.ogas.ratio import RatioEstimator\n"
            "RatioEstimator(3).step(torch.rand(8, 3), torch.rand(8) > 0.5)\n"
            "ddpm = ConditionalDDPM(3, DDPMConfig()); ddpm.optimizer.zero_grad()\n"
            "ddpm.optimizer.load_state_dict(ddpm.optimizer.state_dict())\n"
            "touched = [n for n in DYNAMO_WRAPPED\n"
            "           if hasattr(getattr(torch.optim.Optimizer, n).__wrapped__, '__dynamo_disable')]\n"
            "print('torch._dynamo' in sys.modules, touched)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False []"


def test_division_keeps_tiny_denominators_of_close_poles() -> None:
    """Two poles 0.03 apart: the unit-norm Q is ~3e-9 at 1e-7 from a pole, and P/Q must still be
    the quotient there (a fixed 1e-8 floor returned a tenth of it)."""
    from nearpole_exp.models.rational import RationalModel

    model = RationalModel(1, 1, p_degree=0, q_degree=2).double()
    coef = torch.tensor([0.599, -0.63, 0.5], dtype=torch.float64)  # ∝ (x − 0.3)(x − 0.33)
    with torch.no_grad():
        model.q_coef.copy_(coef)
        model.p_coef.fill_(1.0)
    x = torch.tensor([0.3 - 1e-7, 0.3 + 1e-6, 0.33 - 1e-5], dtype=torch.float64)[:, None]
    truth = coef.norm() / (2 * 0.5 * (x - 0.3) * (x - 0.33))
    assert torch.allclose(model(x), truth, rtol=1e-6)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_division_by_an_exact_zero_stays_finite(dtype) -> None:
    q = torch.zeros(2, dtype=dtype, requires_grad=True)
    p = torch.ones(2, 1, dtype=dtype, requires_grad=True)
    out = hybrid_divide(p, q[:, None], 0.0)
    out.sum().backward()
    assert bool(torch.isfinite(out).all()) and bool(torch.isfinite(q.grad).all())
    assert bool(torch.isfinite(p.grad).all())
