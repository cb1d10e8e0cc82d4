"""Band curriculum: ring priors, easy/hard mixing, gating with min/max dwell, regression."""

from __future__ import annotations

import io
import math

import pytest
import torch

from nearpole_exp.errors import ConfigError
from nearpole_exp.sampling.curriculum import BandCurriculum, CurriculumConfig, NoCurriculum
from nearpole_exp.sampling.importance import ImportanceSampler
from nearpole_exp.sampling.importance_law import ImportanceSamplerConfig

# Two samples per ring for edges (1e-2, 1e-1): near [0, 1e-2), mid [1e-2, 1e-1), far [1e-1, inf).
VALUES = torch.tensor([1e-4, 5e-3, 2e-2, 5e-2, 0.3, 1.0, 1e-1, float("nan")])
NEAR, MID, FAR = [0, 1], [2, 3], [4, 5, 6, 7]  # exactly 1e-1 is far; NaN counts as far


def test_stage0_is_far_only_and_stages_move_inwards():
    cur = BandCurriculum(CurriculumConfig(gate_key="", min_dwell=1, max_dwell=1))
    p = cur.prior(VALUES)
    assert p[FAR].tolist() == [1.0] * 4 and p[NEAR + MID].tolist() == [0.0] * 4
    assert cur.metrics()["curriculum/band_low"] == pytest.approx(0.1)
    cur.update(0, {})
    p = cur.prior(VALUES)
    assert cur.stage == 1 and p[NEAR].tolist() == [0.0, 0.0] and float(p[MID].min()) == 1.0
    # Soft mixing: the easy (far) ring holds easy_share_initial of the mass of easy + focus.
    assert float(p[FAR].sum() / p[FAR + MID].sum()) == pytest.approx(0.5)
    cur.update(1, {})
    p = cur.prior(VALUES)
    assert cur.stage == 2 and float(p[NEAR].min()) == 1.0
    assert float(p[FAR + MID].sum() / p.sum()) == pytest.approx(0.2)
    assert cur.metrics()["curriculum/band_high"] == pytest.approx(1e-2)
    cur.update(2, {})
    assert cur.complete and cur.prior(VALUES) is None
    assert cur.metrics()["curriculum/complete"] == 1.0


def test_gate_with_min_dwell():
    cur = BandCurriculum(gate_key="train/loss", gate_threshold=0.5, min_dwell=3, max_dwell=100)
    cur.update(0, {"train/loss": 0.1})
    cur.update(1, {"train/loss": 0.1})
    assert cur.stage == 0
    cur.update(2, {"train/loss": 0.1})
    assert cur.stage == 1 and cur.dwell == 0
    for r in range(3, 10):
        cur.update(r, {"train/loss": 0.9})
    assert cur.stage == 1 and cur.dwell == 7


def test_max_dwell_forces_progress_when_the_gate_never_passes():
    cur = BandCurriculum(gate_key="eval/relerr_median/B{stage}", gate_threshold=1e-9,
                         min_dwell=2, max_dwell=5)
    stages = []
    for r in range(16):
        cur.update(r, {"eval/relerr_median/B0": 1.0})  # missing for later stages: NaN, not passed
        stages.append(cur.stage)
    assert stages[:5] == [0, 0, 0, 0, 1]
    assert stages[9] == 2 and stages[14] == 3 and cur.complete
    assert cur.metrics()["curriculum/forced_advances"] == 3


def test_warmup_holds_stage0():
    cur = BandCurriculum(gate_key="", min_dwell=1, warmup_rounds=4)
    for r in range(3):
        cur.update(r, {})
    assert cur.stage == 0
    cur.update(3, {})
    assert cur.stage == 1


def test_regression_is_bounded():
    cur = BandCurriculum(gate_key="loss", gate_threshold=1.0, regress_threshold=5.0,
                         max_regressions=1, min_dwell=1, max_dwell=3)
    cur.update(0, {"loss": 0.5})
    assert cur.stage == 1
    cur.update(1, {"loss": 10.0})
    assert cur.stage == 0 and cur.regressions == 1
    cur.update(2, {"loss": 0.5})
    cur.update(3, {"loss": 10.0})  # no regressions left: held, then advanced by max dwell
    assert cur.stage == 1
    for r in range(4, 7):
        cur.update(r, {"loss": 10.0})
    assert cur.stage == 2


def test_prior_drives_sampler_and_keeps_weights_on_the_band():
    torch.manual_seed(0)
    dist = torch.logspace(-6, 0, 3000)
    cur = BandCurriculum(gate_key="", min_dwell=1)
    sampler = ImportanceSampler(ImportanceSamplerConfig(self_normalize=False))
    sel = sampler.select(3000, 256, values=dist, prior=cur.prior(dist))
    assert float(dist[sel.idx].min()) >= 0.1
    assert bool(torch.isfinite(sel.weights).all())


def test_state_roundtrip_and_validation():
    cur = BandCurriculum(gate_key="", min_dwell=1, edges=[1e-3, 1e-2, 1e-1])
    cur.update(0, {})
    buf = io.BytesIO()
    torch.save(cur.state_dict(), buf)
    buf.seek(0)
    other = BandCurriculum(edges=[1e-3, 1e-2, 1e-1])
    other.load_state_dict(torch.load(buf, weights_only=True))
    assert other.stage == 1
    torch.testing.assert_close(other.prior(VALUES), cur.prior(VALUES))
    with pytest.raises(ConfigError) as err:
        CurriculumConfig(edges=[1e-1, 1e-2])
    assert err.value.key == "edges"
    with pytest.raises(ConfigError):
        CurriculumConfig(min_dwell=5, max_dwell=2)
    none = NoCurriculum()
    assert none.prior(VALUES) is None and none.metrics() == {}
    assert math.isnan(BandCurriculum().metrics()["curriculum/gate"])
