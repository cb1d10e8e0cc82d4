"""Draw counts (one record, the sampler's ``draws``): exact per-index counts with repeats, kept
across pool growth and shifted with FIFO eviction; the pool's own bookkeeping under eviction."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from nearpole_exp.pool import DrawCounts, Pool
from nearpole_exp.problems.base import Samples
from nearpole_exp.runner import Runner

from .conftest import TINY


def pool_of(n: int, start: float = 0.0, capacity: int = 0) -> Pool:
    pool = Pool(capacity)
    x = torch.arange(n, dtype=torch.float64)[:, None] + start
    pool.add(Samples(x, 2 * x, torch.arange(n)))
    return pool


def test_counts_every_repeat_and_match_bincount() -> None:
    draws = DrawCounts()
    draws.add(torch.tensor([3, 3, 3, 0, 9]), n_pool=10)
    draws.add(torch.tensor([3, 9]))
    expected = torch.zeros(10, dtype=torch.long)
    expected[[0, 3, 9]] = torch.tensor([1, 4, 2])
    assert torch.equal(draws.counts(10), expected) and draws.total == 7
    gen = torch.Generator().manual_seed(0)
    batches = [torch.randint(0, 500, (256,), generator=gen) for _ in range(20)]
    counts = DrawCounts()
    for idx in batches:
        counts.add(idx, n_pool=500)
    assert torch.equal(counts.counts(500), torch.bincount(torch.cat(batches), minlength=500))
    with pytest.raises(IndexError):
        counts.add(torch.tensor([-1]))


def test_counts_grow_with_the_pool_and_shift_with_eviction() -> None:
    draws = DrawCounts()
    draws.add(torch.tensor([0, 999, 999]), n_pool=1000)
    draws.add(torch.tensor([2999]), n_pool=3000)  # the pool grew: new rows start at zero
    c = draws.counts(3000)
    assert c[0] == 1 and c[999] == 2 and c[2999] == 1 and int(c[1000:2999].sum()) == 0
    draws.drop_oldest(999)  # rows 0..998 evicted: old row 999 is now row 0
    c = draws.counts(2001)
    assert c[0] == 2 and c[2000] == 1 and int(c.sum()) == 3
    restored = DrawCounts()
    restored.load_state_dict(draws.state_dict())
    assert torch.equal(restored.counts(2001), c) and restored.total == draws.total


def test_fifo_eviction_keeps_the_newest_samples_and_their_ids() -> None:
    pool = pool_of(10, capacity=12)
    pool.add(Samples(torch.full((5, 1), 50.0, dtype=torch.float64),
                     torch.zeros(5, 1, dtype=torch.float64), torch.arange(5)))
    assert len(pool) == 12 and pool.n_evicted == 3
    assert pool.inputs[0, 0] == 3.0 and bool((pool.inputs[-5:] == 50.0).all())


def test_a_run_with_eviction_counts_each_live_sample_once_per_draw(composer) -> None:
    """With pool_capacity the pool evicts every round; its draw counts follow the rows: their
    total is every draw since the last eviction of the rows still live, and the samples of the
    newest round were drawn only in that round."""
    cfg = composer([*TINY, "logger=none", "trainer.rounds=3", "trainer.steps_per_round=10",
                    "trainer.batch_size=32", "trainer.initial_points=200",
                    "trainer.points_per_round=100", "trainer.pool_capacity=250"])
    runner = Runner(cfg, Path(cfg.hydra.runtime.output_dir))
    seen: list[torch.Tensor] = []
    record = runner.pool.record_draws

    def keep(idx):
        seen.append(idx.clone())
        record(idx)

    runner.pool.record_draws = keep
    runner.run()
    assert runner.pool.n_evicted == 200 + 2 * 100 - 250
    counts = runner.pool.draws.counts(len(runner.pool))
    # the last round's 10 batches drew from the final pool: its rows hold exactly those draws
    # plus earlier draws of rows that were live then (shifted by the last eviction, 50 rows)
    last = torch.bincount(torch.cat(seen[-10:]), minlength=len(runner.pool))
    assert torch.equal(counts[-100:], last[-100:])
    assert bool((counts >= last).all())
    assert int(counts.sum()) <= runner.pool.draws.total


def test_indices_past_the_pool_raise_without_counting() -> None:
    draws = DrawCounts()
    draws.add(torch.tensor([1, 2]), n_pool=10)
    with pytest.raises(IndexError):
        draws.add(torch.tensor([10]), n_pool=10)  # storage may be larger: the pool is not
    assert draws.total == 2
