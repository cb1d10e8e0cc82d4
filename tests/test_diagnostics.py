"""Diagnostic monitor: round records, aligned NaNs, JSONL append, ring buffers, snapshots."""

from __future__ import annotations

import io
import json
import math

import numpy as np
import pytest
import torch

from nearpole_exp.sampling.diagnostics import RECORD_KEYS, SCHEMA_VERSION, DiagnosticMonitor


def test_round_record_values():
    mon = DiagnosticMonitor(near_pole_threshold=1e-2)
    mon.update_batch(0, torch.tensor([0, 1, 2, 2]), torch.tensor([1e-6, 1e-3, 0.5, 0.5]),
                     torch.tensor([5e-6, 2e-3, 0.4, 0.4]), torch.tensor([1.0, 1.0, 1.0, 1.0]),
                     torch.tensor([1.0, 3.0, 2.0, 2.0]))
    mon.update_batch(1, torch.tensor([3, 4]), torch.tensor([0.2, 0.1]), torch.tensor([5e-5, 0.02]),
                     torch.tensor([1.0, 3.0]), 4.0)
    mon.update_gradients(10.0, 2.0)
    mon.update_gradients(30.0, None)
    rec = mon.end_round(0)
    assert set(rec) == set(RECORD_KEYS)
    assert rec["sampler/q_min"] == pytest.approx(1e-6)
    assert rec["sampler/q_min_batch"] == pytest.approx(0.1)
    assert rec["sampler/q_min_batch_mean"] == pytest.approx((1e-6 + 0.1) / 2)
    assert rec["sampler/q_mean_abs"] == pytest.approx((1e-6 + 1e-3 + 1.0 + 0.3) / 6)
    assert rec["sampler/near_pole_ratio"] == pytest.approx(3 / 6)
    assert rec["sampler/diversity"] == pytest.approx(5 / 6)
    assert rec["sampler/ess"] == pytest.approx((4.0 + 16 / 10) / 2)
    assert rec["sampler/ess_fraction"] == pytest.approx((1.0 + 0.8) / 2)
    assert rec["sampler/weight_max"] == 3.0
    assert rec["sampler/loss"] == pytest.approx((2.0 + 4.0) / 2)
    assert [rec[f"sampler/bucket_count/B{b}"] for b in range(5)] == [1.0, 1.0, 0.0, 1.0, 3.0]
    assert rec["sampler/grad_norm_near"] == 20.0 and rec["sampler/grad_ratio"] == 10.0


def test_unknown_values_are_nan_not_forward_filled():
    mon = DiagnosticMonitor()
    mon.update_batch(0, torch.tensor([0]), torch.tensor([0.3]))
    first = mon.end_round(0)
    assert first["sampler/q_min"] == pytest.approx(0.3)
    assert math.isnan(first["sampler/ess"]) and math.isnan(first["sampler/grad_ratio"])
    mon.update_batch(1, torch.tensor([1]))
    second = mon.end_round(1)
    assert set(second) == set(RECORD_KEYS)
    assert math.isnan(second["sampler/q_min"]) and math.isnan(second["sampler/bucket_count/B0"])
    assert second["sampler/diversity"] == 1.0
    assert [r["round"] for r in mon.history] == [0, 1]


def test_jsonl_is_appended_with_schema_and_null_for_nan(tmp_path):
    path = tmp_path / "sub" / "diagnostics.jsonl"
    mon = DiagnosticMonitor(export_path=str(path))
    assert not path.exists()
    mon.update_batch(0, torch.tensor([0, 1]), torch.tensor([0.1, 0.2]))
    mon.end_round(0)
    first_line = path.read_text().splitlines()[0]
    mon.end_round(1)
    lines = path.read_text().splitlines()
    assert len(lines) == 2 and lines[0] == first_line
    records = [json.loads(line) for line in lines]
    assert all(r["schema_version"] == SCHEMA_VERSION for r in records)
    assert records[0]["sampler/q_min"] == pytest.approx(0.1) and records[1]["sampler/q_min"] is None
    assert set(RECORD_KEYS) <= set(records[1])
    DiagnosticMonitor(export_path=str(path)).end_round(2)
    assert len(path.read_text().splitlines()) == 3


def test_ring_buffers_and_histogram():
    mon = DiagnosticMonitor(max_history=3, histogram_size=5)
    for r in range(6):
        mon.update_batch(r, None, torch.tensor([float(r), r + 0.5]))
        mon.end_round(r)
    assert [rec["round"] for rec in mon.history] == [3, 4, 5]
    torch.testing.assert_close(mon.histogram_values(),
                               torch.tensor([3.0, 3.5, 4.0, 4.5, 5.0, 5.5], dtype=torch.float64)[1:])
    assert mon.summary()["sampler/q_min_global"] == 0.0


def test_npz_snapshots(tmp_path):
    mon = DiagnosticMonitor(snapshot_every=2, export_path=str(tmp_path / "d.jsonl"))
    for r in range(3):
        mon.update_batch(r, None, torch.tensor([1e-3 * (r + 1), 0.5]))
        mon.end_round(r)
    files = sorted(p.name for p in (tmp_path / "diagnostics_snapshots").iterdir())
    assert files == ["sampled_q_round000000.npz", "sampled_q_round000002.npz"]
    data = np.load(tmp_path / "diagnostics_snapshots" / files[1])
    np.testing.assert_allclose(data["q_abs"], [3e-3, 0.5])


def test_state_roundtrip():
    mon = DiagnosticMonitor(histogram_size=4)
    mon.update_batch(0, torch.tensor([1]), torch.tensor([0.25, 0.5]))
    mon.end_round(0)
    buf = io.BytesIO()
    torch.save(mon.state_dict(), buf)
    buf.seek(0)
    other = DiagnosticMonitor(histogram_size=4)
    other.load_state_dict(torch.load(buf, weights_only=True))
    assert json.dumps(list(other.history)) == json.dumps(list(mon.history))
    torch.testing.assert_close(other.histogram_values(), mon.histogram_values())


def test_a_round_flushed_in_pieces_gives_the_record_of_one_flush(monkeypatch) -> None:
    """The monitor computes noted batches when the round ends, or earlier once they hold
    FLUSH_ELEMENTS elements (bounded memory): the record is the same either way."""
    import nearpole_exp.sampling.diagnostics as diagnostics

    gen = torch.Generator().manual_seed(0)
    batches = [(torch.randint(0, 500, (64,), generator=gen), torch.rand(64, generator=gen) * 0.1,
                None, torch.rand(64, generator=gen) + 0.5, torch.rand(64, generator=gen))
               for _ in range(30)]

    def record() -> dict:
        mon = DiagnosticMonitor(histogram_size=100)
        for step, (idx, q, dist, w, loss) in enumerate(batches):
            mon.update_batch(step, idx, q, dist, w, loss)
        out = mon.end_round(0)
        return {**out, "hist": mon.histogram_values().tolist()}

    whole = record()
    monkeypatch.setattr(diagnostics, "FLUSH_ELEMENTS", 200)  # a flush every batch or so
    pieces = record()
    for key, value in whole.items():
        assert pieces[key] == pytest.approx(value, rel=1e-12, nan_ok=True), key
    per_batch = [float((w.sum() ** 2 / (w * w).sum()).double()) for *_, w, _ in batches]
    assert whole["sampler/ess"] == pytest.approx(sum(per_batch) / len(per_batch), rel=1e-6)
    assert whole["sampler/q_min_batch_mean"] == pytest.approx(
        sum(float(q.min()) for _, q, *_ in batches) / len(batches), rel=1e-6)
