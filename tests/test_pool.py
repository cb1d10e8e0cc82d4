"""Pool draw counts: exact per-index counts with repeats, bounds checked, kept across growth."""

from __future__ import annotations

import pytest
import torch

from nearpole_exp.pool import Pool
from nearpole_exp.problems.base import Samples


def pool_of(n: int, start: float = 0.0) -> Pool:
    pool = Pool()
    x = torch.arange(n, dtype=torch.float64)[:, None] + start
    pool.add(Samples(x, 2 * x, torch.arange(n)))
    return pool


def test_record_draws_counts_every_repeat() -> None:
    pool = pool_of(10)
    pool.record_draws(torch.tensor([3, 3, 3, 0, 9]))
    pool.record_draws(torch.tensor([3, 9]))
    expected = torch.zeros(10, dtype=torch.long)
    expected[[0, 3, 9]] = torch.tensor([1, 4, 2])
    assert torch.equal(pool.field("draws"), expected)


def test_record_draws_matches_bincount_on_random_batches() -> None:
    gen = torch.Generator().manual_seed(0)
    pool = pool_of(500)
    batches = [torch.randint(0, 500, (256,), generator=gen) for _ in range(20)]
    for idx in batches:
        pool.record_draws(idx)
    assert torch.equal(pool.field("draws"), torch.bincount(torch.cat(batches), minlength=500))
    assert int(pool.field("draws").sum()) == 20 * 256


def test_record_draws_rejects_indices_past_the_live_rows() -> None:
    pool = pool_of(10)  # storage holds 1024 rows, only 10 are live
    with pytest.raises(IndexError):
        pool.record_draws(torch.tensor([10]))
    assert int(pool.field("draws").sum()) == 0


def test_counts_survive_growth_and_start_at_zero_for_new_samples() -> None:
    pool = pool_of(1000)
    pool.record_draws(torch.tensor([0, 999, 999]))
    pool.add(Samples(torch.zeros(2000, 1, dtype=torch.float64), torch.zeros(2000, 1,
                     dtype=torch.float64), torch.arange(2000)))  # outgrows the 1024-row storage
    draws = pool.field("draws")
    assert len(draws) == 3000
    assert draws[0] == 1 and draws[999] == 2 and int(draws[1000:].sum()) == 0
    pool.record_draws(torch.tensor([2999]))
    assert pool.field("draws")[2999] == 1
