"""Our batch samplers inside a real ``torch.utils.data.DataLoader`` (0 and 2 workers)."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from nearpole_exp.sampling.base import UniformSampler
from nearpole_exp.sampling.curriculum import BandCurriculum
from nearpole_exp.sampling.hybrid import HybridSampler
from nearpole_exp.sampling.importance import ImportanceSampler
from nearpole_exp.sampling.torch_data import DrawBatchSampler, DrawSampler, WithWeights

N = 2000
X = torch.linspace(-1, 1, N)[:, None]
Q = X[:, 0] - 0.3  # one pole at 0.3
DATA = TensorDataset(X, 1.0 / Q[:, None])


@pytest.mark.parametrize("workers", [0, 2])
def test_importance_batches_and_their_weights_reach_the_loop(workers: int) -> None:
    """Batches lean towards the pole; the weights that arrive with each batch are that batch's
    correction ratios (so the weighted loss stays unbiased): Σ w·f / Σ w estimates the uniform
    mean of f over the dataset."""
    sampler = ImportanceSampler()
    batches = DrawBatchSampler(sampler, N, batch_size=256, steps=60, q=Q)
    near, estimate, seen = 0, [], 0
    loader = DataLoader(WithWeights(DATA), batch_sampler=batches, num_workers=workers)
    for x, y, w in loader:
        assert x.shape == (256, 1) and y.shape == (256, 1) and w.shape == (256,)
        near += int(((x[:, 0] - 0.3).abs() < 0.05).sum())
        f = x[:, 0] ** 2
        estimate.append(float((w * f).sum() / w.sum()))
        seen += len(x)
    assert seen == 60 * 256
    uniform_share = 0.1 / 2  # the ±0.05 band covers 5 % of [-1, 1]
    assert near / seen > 4 * uniform_share
    truth = float((X[:, 0] ** 2).mean())
    assert abs(sum(estimate) / len(estimate) - truth) < 0.03
    assert batches.draw_counts.total == seen  # counted in the main process, once per draw


def test_q_refresh_cadence_curriculum_and_plain_index_samplers() -> None:
    calls = []

    def q_fn() -> torch.Tensor:
        calls.append(1)
        return Q

    batches = DrawBatchSampler(HybridSampler(), N, batch_size=32, steps=10, q_fn=q_fn,
                               refresh_every=4, weights=False)
    out = list(DataLoader(DATA, batch_sampler=batches))
    assert len(out) == 10 and len(calls) == 3  # steps 0, 4, 8
    distance = (X[:, 0] - 0.3).abs()
    curriculum = BandCurriculum()
    prior = curriculum.prior(distance)
    batches = DrawBatchSampler(UniformSampler(), N, batch_size=512, steps=4,
                               curriculum=curriculum, curriculum_values=distance, weights=False)
    drawn = torch.tensor([i for batch in batches for i in batch])
    locked = prior < 1e-3  # the first stage keeps the inner rings out (10 % of the items)
    assert float(locked.float().mean()) == pytest.approx(0.1, abs=0.01)
    assert float(locked[drawn].float().mean()) < 0.01
    flat = DrawSampler(ImportanceSampler(), N, num_samples=1000, chunk=300, q=Q)
    xs = torch.cat([x for x, _ in DataLoader(DATA, sampler=flat, batch_size=100)])
    assert xs.shape == (1000, 1)
    with pytest.raises(ValueError, match="draws by"):
        DrawBatchSampler(ImportanceSampler(), N, batch_size=8, steps=1)


def test_a_curriculum_on_q_bands_by_the_q_it_is_given() -> None:
    """``variable=q_abs`` bands by |Q| itself (no distances needed): stage 0 draws only the
    far ring, |Q| ≥ the last edge."""
    curriculum = BandCurriculum(variable="q_abs", edges=[1e-2, 1e-1])
    batches = DrawBatchSampler(UniformSampler(), N, batch_size=64, steps=5, q=Q,
                               curriculum=curriculum, weights=False)
    drawn = torch.tensor([i for batch in batches for i in batch])
    assert bool((Q[drawn].abs() >= 1e-1).all())


def test_an_all_nan_q_is_said_once_not_silently_uniform(caplog) -> None:
    sampler = ImportanceSampler()
    batches = DrawBatchSampler(sampler, N, batch_size=64, steps=3,
                               q=torch.full((N,), float("nan")))
    drawn = [list(b) for b in batches]
    assert len(drawn) == 3 and sampler.n_fallbacks == 3  # uniform batches, counted
    warned = [r for r in caplog.records if "finite positive weight" in r.getMessage()]
    assert len(warned) == 1
