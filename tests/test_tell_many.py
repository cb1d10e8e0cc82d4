"""A round's signals told at once (``tell_many``) leave every breeder exactly as one ``tell`` per
training step would: the runner tells once per round on this guarantee."""

from __future__ import annotations

import pytest
import torch

from nearpole_exp.acquisition.base import Breeder
from nearpole_exp.acquisition.breed import BreedBreeder
from nearpole_exp.acquisition.history import SimHistory
from nearpole_exp.acquisition.ogas import DataConfig, DDPMConfig, OGASBreeder
from nearpole_exp.acquisition.ogas.conditions import MinMaxQueues

pytestmark = pytest.mark.usefixtures("one_thread")


def steps(n_sims: int, n_calls: int, batch: int, seed: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per-step (sim ids, values) as a training loop reports them: repeated ids within a step,
    ids that skip steps, a few non-finite values."""
    gen = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n_calls):
        ids = torch.randint(0, n_sims, (batch,), generator=gen)
        vals = torch.rand(batch, generator=gen) * (1 + ids.float() / n_sims)
        vals[torch.rand(batch, generator=gen) < 0.02] = float("nan")
        out.append((ids, vals))
    return out


def batched(calls: list[tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, ...]:
    ids = torch.cat([c[0] for c in calls])
    vals = torch.cat([c[1] for c in calls])
    numbers = torch.repeat_interleave(torch.arange(len(calls)),
                                      torch.tensor([len(c[0]) for c in calls]))
    return ids, vals, numbers


def test_history_update_of_many_calls_is_bitwise_the_sequence_of_calls():
    calls = [(i, v.nan_to_num(0.5)) for i, v in steps(40, 30, 16, seed=1)]
    one, many = SimHistory(2, 0.3), SimHistory(2, 0.3)
    for h in (one, many):
        h.write(0, torch.rand(40, 2), torch.zeros(40, dtype=torch.bool), 0, torch.zeros(40))
        h.update(torch.tensor([3, 3, 7]), torch.tensor([1.0, 2.0, 4.0]))  # seen before the batch
    reach_one = torch.full((40,), -1)
    for k, (ids, vals) in enumerate(calls):
        touched, _ = one.update(ids, vals)
        newly = touched[(one.count[touched] >= 9) & (reach_one[touched] < 0)]
        reach_one[newly] = k
    touched, reached = many.update(*batched(calls), threshold=9)
    for field in ("signal", "first", "count"):
        assert torch.equal(getattr(one, field)[:40], getattr(many, field)[:40]), field
    assert torch.equal(reached, reach_one[touched])
    assert int((reached >= 0).sum()) > 10  # the threshold was crossed at many different calls
    assert len(set(reached.tolist())) > 5


def test_minmax_queues_record_each_call():
    one, many = MinMaxQueues(50), MinMaxQueues(50)
    calls = [(torch.zeros(3), torch.tensor([2.0, -1.0, 5.0])), (torch.zeros(2), torch.tensor([0.5, 0.25]))]
    for _, vals in calls:
        one.push(vals)
    _, vals, numbers = batched(calls)
    many.push(vals, numbers + 2)  # call numbers need not start at 0 (a call with no values)
    assert list(many.mins) == list(one.mins) == [-1.0, 0.25]
    assert list(many.maxs) == list(one.maxs) == [5.0, 0.5]


def same(a: object, b: object) -> bool:
    """Equal bit for bit (NaN equal to NaN)."""
    if not isinstance(a, torch.Tensor):
        return a == b
    if a.is_floating_point():
        return a.shape == b.shape and torch.allclose(a, b, rtol=0, atol=0, equal_nan=True)
    return torch.equal(a, b)


def ogas(capacity: int) -> OGASBreeder:
    return OGASBreeder(torch.tensor([[0.0, 1.0], [-1.0, 1.0]]), synchronous=True,
                       model=DDPMConfig(model_dim=16, depth=1, timesteps=10),
                       data=DataConfig(buffer_size=capacity, min_observations=3, batch_size=8))


@pytest.mark.parametrize("make", [lambda: ogas(capacity=25), lambda: ogas(capacity=400),
                                  lambda: BreedBreeder(torch.tensor([[0.0, 1.0], [-1.0, 1.0]]))],
                         ids=["ogas-evicting", "ogas", "breed"])
def test_breeder_told_a_round_at_once_ends_as_told_step_by_step(make):
    torch.manual_seed(0)
    one = make()
    one.ask(60)
    torch.manual_seed(0)
    many = make()
    many.ask(60)
    calls = steps(60, 40, 12, seed=2)
    for ids, vals in calls:
        one.tell(ids, vals)
    many.tell_many(*batched(calls))
    a, b = one.state_dict(), many.state_dict()
    for part in ("history", "reservoir", "queues"):
        if part not in a:
            continue
        for key, value in a[part].items():
            assert same(value, b[part][key]), (part, key)
    assert one.metrics()["breeder/dropped_values"] == many.metrics()["breeder/dropped_values"] > 0
    if isinstance(one, OGASBreeder):  # sims entered in the order they reached 3 observations
        assert one.reservoir.inserted > 25


def test_default_tell_many_calls_tell_once_per_call():
    seen = []

    class Recorder(Breeder):
        def ask(self, n: int) -> torch.Tensor:
            self.n_asked += n
            return torch.zeros(n, 1)

        def tell(self, sim_ids: torch.Tensor, values: torch.Tensor) -> None:
            seen.append((sim_ids.tolist(), values.tolist()))

    b = Recorder(torch.tensor([[0.0, 1.0]]))
    b.tell_many(torch.tensor([0, 1, 1, 2]), torch.tensor([1.0, 2.0, 3.0, 4.0]), torch.tensor([0, 0, 3, 3]))
    assert seen == [([0, 1], [1.0, 2.0]), ([1, 2], [3.0, 4.0])]
