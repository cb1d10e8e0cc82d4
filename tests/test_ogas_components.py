"""OGAS building blocks: configs, schedule, signal history, targets, reservoir, ratio weights,
background trainer, Breed baseline and plots."""

from __future__ import annotations

import io
import threading
import time

import pytest
import torch

from nearpole_exp.acquisition.breed import BreedBreeder, BreedConfig, fitness_weights
from nearpole_exp.acquisition.children import reflect_unit
from nearpole_exp.acquisition.config import build_config
from nearpole_exp.acquisition.history import SimHistory, validate_signals
from nearpole_exp.acquisition.ogas.conditions import MinMaxQueues, conditions, sample_targets
from nearpole_exp.acquisition.ogas.config import BreederConfig, DataConfig, DDPMConfig
from nearpole_exp.acquisition.ogas.ratio import RatioEstimator, design_over_pool, mixture_weights
from nearpole_exp.acquisition.ogas.reservoir import Reservoir
from nearpole_exp.acquisition.ogas.trainer_thread import BackgroundTrainer
from nearpole_exp.acquisition.plots import plot_breeder
from nearpole_exp.acquisition.schedule import BreedRatioSchedule
from nearpole_exp.errors import BackgroundThreadError, ConfigError
from nearpole_exp.metrics import effective_sample_size

pytestmark = pytest.mark.usefixtures("one_thread")


# --------------------------------------------------------------------------------- configs
def test_config_errors_name_the_field():
    cases = [
        (lambda: BreederConfig(end_breed_ratio=1.5), "end_breed_ratio"),
        (lambda: BreederConfig(loss_sampling_strategy="softmax"), "loss_sampling_strategy"),
        (lambda: BreederConfig(schedule_on="budget"), "total_budget"),
        (lambda: BreederConfig(non_breed_design="grid"), "non_breed_design"),
        (lambda: BreederConfig(train_only_with_non_breed_samples=True),
         "train_only_with_non_breed_samples"),
        (lambda: DataConfig(ema_loss_alpha=0.0), "ema_loss_alpha"),
        (lambda: DataConfig(condition="zscore"), "condition"),
        (lambda: BreedConfig(sigma=-0.1), "sigma"),
        (lambda: BreedConfig(oob="wrap"), "oob"),
    ]
    for make, key in cases:
        with pytest.raises(ConfigError) as err:
            make()
        assert err.value.key == key


def test_build_config_from_mapping_instance_and_overrides():
    cfg = build_config(DDPMConfig, {"_target_": "x.Y", "model_dim": 32}, {"depth": 1}, "model.")
    assert (cfg.model_dim, cfg.depth) == (32, 1)
    cfg = build_config(BreederConfig, BreederConfig(adaptive_ratio="off", breakpoint=7),
                       {"end_breed_ratio": 0.8})
    assert (cfg.breakpoint, cfg.end_breed_ratio) == (7, 0.8)
    with pytest.raises(ConfigError) as err:
        build_config(BreederConfig, None, {"nope": 1}, "breeder.")
    assert err.value.key == "breeder.nope"
    with pytest.raises(ConfigError) as err:
        build_config(DataConfig, {"batch_size": 1}, {}, "data.")
    assert err.value.key == "data.batch_size"


# -------------------------------------------------------------------------------- schedule
def test_generation_schedule_matches_melissa():
    s = BreedRatioSchedule(0.0, 0.7, 4)
    values = [s.ratio(g) for g in range(6)]
    assert values == pytest.approx([0.0, 0.7 / 3, 1.4 / 3, 0.7, 0.7, 0.7])
    ramp = BreedRatioSchedule(0.2, 0.8, 3)
    assert [ramp.ratio(g) for g in range(4)] == pytest.approx([0.0, 0.5, 0.8, 0.8])
    flat = BreedRatioSchedule(0.3, 0.9, 1)
    assert [flat.ratio(g) for g in range(3)] == pytest.approx([0.0, 0.3, 0.3])


def test_budget_schedule_and_state():
    s = BreedRatioSchedule(0.0, 0.8, 4, on="budget", total_budget=1000, budget_breakpoint=0.5)
    assert s.ratio(0, consumed=400) == 0.0
    assert s.ratio(1, consumed=250) == pytest.approx(0.4)
    assert s.ratio(9, consumed=250) == pytest.approx(0.4)  # independent of the generation count
    assert s.ratio(1, consumed=900) == pytest.approx(0.8)
    s.advance()
    s.advance()
    other = BreedRatioSchedule(0.0, 0.8, 4, on="budget", total_budget=1000)
    other.load_state_dict(s.state_dict())
    assert other.generation == 2


# --------------------------------------------------------------------------------- history
def test_history_ema_with_repeated_ids_in_one_call():
    h = SimHistory(dim=2, ema_alpha=0.3, capacity=2)
    h.write(0, torch.rand(4, 2), torch.zeros(4, dtype=torch.bool), 0, torch.zeros(4))
    assert h.capacity >= 4
    h.update(torch.tensor([1, 1, 3]), torch.tensor([1.0, 3.0, 5.0]))
    assert h.signal[1] == pytest.approx(2.0)  # first value: the batch mean
    assert h.signal[3] == pytest.approx(5.0)
    h.update(torch.tensor([1]), torch.tensor([4.0]))
    assert h.signal[1] == pytest.approx(0.7 * 2.0 + 0.3 * 4.0)
    assert h.count[:4].tolist() == [0, 3, 0, 1]
    assert torch.isnan(h.signal[0])
    with pytest.raises(ValueError, match="already reported"):
        h.write(1, torch.rand(1, 2), torch.zeros(1, dtype=torch.bool), 1, torch.zeros(1))
    restored = SimHistory(dim=2, ema_alpha=0.3)
    restored.load_state_dict(h.state_dict())
    assert torch.equal(restored.count[:4], h.count[:4])
    assert torch.allclose(restored.signal[:4], h.signal[:4], equal_nan=True)


def test_validate_signals():
    ids, vals, calls, dropped = validate_signals(
        torch.tensor([0, 1, 2]), torch.tensor([[1.0], [float("nan")], [float("inf")]]), 3,
        torch.tensor([0, 1, 1]))
    assert ids.tolist() == [0] and vals.tolist() == [1.0] and calls.tolist() == [0]
    assert dropped == 2
    with pytest.raises(ValueError, match="non-decreasing"):
        validate_signals(torch.tensor([0, 1]), torch.tensor([1.0, 2.0]), 3, torch.tensor([1, 0]))
    with pytest.raises(ValueError, match="never asked"):
        validate_signals(torch.tensor([0, 5]), torch.tensor([1.0, 2.0]), 3)
    with pytest.raises(ValueError, match="expects"):
        validate_signals(torch.tensor([0, 1]), torch.tensor([1.0, 2.0, 3.0]), 3)
    with pytest.raises(ValueError, match="expects"):
        validate_signals(torch.tensor([0, 1]), torch.ones(2, 3), 3)
    with pytest.raises(ValueError, match="integers"):
        validate_signals(torch.tensor([0.0, 1.0]), torch.tensor([1.0, 2.0]), 3)


def test_minmax_and_rank_conditions():
    q = MinMaxQueues(length=2)
    q.push(torch.tensor([1.0, 3.0]))
    q.push(torch.tensor([2.0, 5.0]))
    q.push(torch.tensor([1.0, 5.0]))  # the first batch falls out of the window
    s = torch.tensor([1.5, 3.25, 5.0])
    assert conditions(s, q).tolist() == pytest.approx([0.0, 0.5, 1.0])
    assert conditions(s, q, normalize=False).tolist() == pytest.approx(s.tolist())
    r = conditions(torch.tensor([10.0, 0.0, 5.0, 5.0]), q, mode="rank")
    assert r.tolist() == pytest.approx([1.0, 0.25, 0.75, 0.75])
    spiky = torch.cat([torch.zeros(99), torch.tensor([1000.0])])
    clipped = conditions(spiky, q, normalize=False, clip_3_sigma=True)
    assert float(clipped.max()) < 1000.0 * 0.5


def test_proportional_targets_follow_the_tilted_law():
    cond = torch.tensor([-0.2, 0.25, 0.5, 1.0])
    gen = torch.Generator().manual_seed(0)
    for alpha in (1.0, 2.0):
        draws = sample_targets(cond, 40000, "proportional", alpha, 0.9, gen)
        freq = torch.stack([(draws == c).float().mean() for c in cond])
        p = cond.clamp_min(0) ** alpha
        assert torch.allclose(freq, p / p.sum(), atol=0.01), (alpha, freq)
    flat = sample_targets(torch.zeros(4), 1000, "proportional", 1.0, 0.9, gen)
    assert flat.shape == (1000,)


def test_uniform_quantile_targets_are_uniform_on_the_upper_tail():
    cond = torch.linspace(0, 1, 1001)
    gen = torch.Generator().manual_seed(1)
    draws = sample_targets(cond, 20000, "uniform_quantile", 1.0, 0.9, gen)
    assert float(draws.min()) >= 0.9 - 1e-6 and float(draws.max()) <= 1.0
    hist = torch.histc(draws, bins=10, min=0.9, max=1.0) / draws.numel()
    assert torch.allclose(hist, torch.full((10,), 0.1), atol=0.01)


# ------------------------------------------------------------------------------- reservoir
def test_reservoir_is_fifo():
    r = Reservoir(capacity=10, dim=1)
    ids = torch.arange(15)
    slots, evicted = r.add(ids[:7], torch.rand(7, 1), ids[:7].float(),
                           torch.zeros(7, dtype=torch.bool), torch.zeros(7, dtype=torch.long))
    assert evicted.numel() == 0 and slots.tolist() == list(range(7))
    _, evicted = r.add(ids[7:], torch.rand(8, 1), ids[7:].float(),
                       torch.ones(8, dtype=torch.bool), torch.ones(8, dtype=torch.long))
    assert evicted.tolist() == [0, 1, 2, 3, 4]
    assert r.size == 10
    assert r.sim_id[r.order()].tolist() == list(range(5, 15))
    assert r.signal[r.order()].tolist() == [float(i) for i in range(5, 15)]
    assert r.bred_fraction() == pytest.approx(0.8)
    r.refresh(torch.tensor([int(torch.nonzero(r.sim_id == 9)[0, 0])]), torch.tensor([-1.0]))
    assert float(r.signal[r.sim_id == 9]) == -1.0
    big = torch.arange(100, 125)
    slots, evicted = r.add(big, torch.rand(25, 1), big.float(), torch.zeros(25, dtype=torch.bool),
                           torch.zeros(25, dtype=torch.long))
    assert r.sim_id[r.order()].tolist() == list(range(115, 125))
    assert sorted(evicted.tolist()) == [*range(5, 15), *range(100, 115)]
    assert (slots[:15] == -1).all() and (slots[15:] >= 0).all()
    copy = Reservoir(capacity=10, dim=1)
    copy.load_state_dict(r.state_dict())
    assert copy.sim_id[copy.order()].tolist() == list(range(115, 125))


# ----------------------------------------------------------------------------------- ratio
def test_mixture_weights_formula():
    p = torch.tensor([0.0, 0.5, 0.75])
    w = mixture_weights(p, 0.5, clip=100.0)
    raw = (1 - p) / 0.5
    assert torch.allclose(w, raw / raw.mean())
    assert torch.equal(mixture_weights(p, 0.0, 10.0), torch.ones(3))
    clipped = mixture_weights(torch.tensor([0.0, 0.99, 0.99, 0.99]), 0.5, clip=1.5)
    unclipped = mixture_weights(torch.tensor([0.0, 0.99, 0.99, 0.99]), 0.5, clip=100.0)
    assert float(clipped.max()) < float(unclipped.max())
    assert effective_sample_size(clipped) > effective_sample_size(unclipped)


def test_design_over_pool_known_case():
    """Design U[0,1], bred density 2x; a classifier at reservoir share 1/2 sees P = 2x/(1 + 2x).
    A pool with bred share 1/4 has density 3/4 + x/2, so p_design/p_pool ∝ 1/(3/4 + x/2)."""
    x = torch.linspace(0.05, 0.95, 10)
    p = 2 * x / (1 + 2 * x)
    w = design_over_pool(p, reservoir_share=0.5, pool_share=0.25, clip=100.0)
    exact = 1 / (0.75 + 0.5 * x)
    assert torch.allclose(w, (exact / exact.mean()).float(), rtol=1e-5)
    # the same pool seen by a classifier trained at another share gives the same weights
    odds = (2 * x) * (0.2 / 0.8)
    w2 = design_over_pool(odds / (1 + odds), reservoir_share=0.2, pool_share=0.25, clip=100.0)
    assert torch.allclose(w2, w, rtol=1e-5)
    clipped = design_over_pool(p, 0.5, 0.25, clip=1.05)
    assert float(clipped.max() / clipped.min()) < float(w.max() / w.min())


def test_ratio_classifier_recovers_known_weights():
    """Design U[0,1], bred U[0,0.5], R̄ = 1/2: w = 1/(1+R̄) = 2/3 on the left, 1/(1−R̄) = 2 on the
    right, and the ESS fraction under the mixture is 1/E[w²] = 3/4."""
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    n = 4000
    is_bred = torch.arange(n) < n // 2
    x = torch.where(is_bred, 0.5 * torch.rand(n, generator=gen), torch.rand(n, generator=gen))
    est = RatioEstimator(1, hidden=32, weight_decay=0.0, lr=3e-3)
    for _ in range(400):
        idx = torch.randint(0, n, (256,), generator=gen)
        est.step(x[idx, None], is_bred[idx])
    probe = torch.tensor([[0.1], [0.25], [0.4], [0.6], [0.75], [0.9]])
    p = est.p_bred(probe)
    raw = (1 - p) / 0.5
    expected = torch.tensor([2 / 3, 2 / 3, 2 / 3, 2.0, 2.0, 2.0])
    assert torch.allclose(raw, expected, rtol=0.15), raw
    w, ess = est.weights(x[:, None], 0.5, clip=10.0)
    assert ess == pytest.approx(0.75, abs=0.05)
    assert float(w[~is_bred & (x > 0.5)].mean()) > 2.5 * float(w[x < 0.5].mean())


# ---------------------------------------------------------------------------------- thread
def test_trainer_thread_relays_errors_and_stops_cleanly():
    before = threading.active_count()
    calls = {"n": 0}

    def step() -> bool:
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("boom")
        return True

    trainer = BackgroundTrainer(step)
    trainer.refill(100)
    with pytest.raises(BackgroundThreadError, match="boom"):
        trainer.wait_idle(timeout=10.0)  # wakes on the failure, re-raises it
    assert calls["n"] == 3 and trainer.steps == 2
    with pytest.raises(BackgroundThreadError, match="boom") as err:
        trainer.raise_if_failed()
    assert isinstance(err.value.__cause__, RuntimeError)
    trainer.close()
    trainer.close()
    assert threading.active_count() == before


def test_trainer_runs_exactly_its_budget_and_drops_it_without_data():
    before = threading.active_count()
    state = {"data": True}
    trainer = BackgroundTrainer(lambda: state["data"])
    trainer.start()
    time.sleep(0.05)
    assert trainer.steps == 0  # no budget, no steps
    trainer.refill(5)
    assert trainer.wait_idle(timeout=10.0)
    time.sleep(0.05)
    assert trainer.steps == 5 and trainer.pending == 0  # exactly the budget, then idle
    state["data"] = False
    trainer.refill(7)
    assert trainer.wait_idle(timeout=10.0)  # no data: the rest of the budget is dropped
    assert trainer.steps == 5
    state["data"] = True
    trainer.refill(3)
    assert trainer.wait_idle(timeout=10.0) and trainer.steps == 8
    assert trainer.busy_s > 0.0
    trainer.close()
    assert threading.active_count() == before
    assert trainer.run_inline(3) == 3 and trainer.steps == 11


# ----------------------------------------------------------------------------------- breed
def test_reflect_and_fitness():
    u = torch.tensor([[-0.25, 0.5, 1.25, 2.5]])
    assert reflect_unit(u)[0].tolist() == pytest.approx([0.25, 0.5, 0.75, 0.5])
    w = fitness_weights(torch.tensor([1.0, 2.0, 3.0]), 1.0)
    assert w.tolist() == pytest.approx([1e-3, 0.501, 1.001])


def _corner(x: torch.Tensor) -> torch.Tensor:
    return (x[:, 0] > 0.8) & (x[:, 1] > 0.8)


@pytest.mark.parametrize("oob", ["resample", "reflect"])
def test_breed_breeds_near_hard_parents_inside_the_box(oob):
    torch.manual_seed(0)
    bounds = torch.tensor([[0.0, 1.0], [0.0, 1.0]])
    b = BreedBreeder(bounds, BreedConfig(sigma=0.08, breakpoint=2, end=0.8, oob=oob))
    x0 = b.ask(400)
    assert not b.history.is_bred[:400].any()
    b.tell(torch.arange(400), 0.1 + _corner(x0).float())
    x1 = b.ask(400)
    assert bool(((x1 >= 0) & (x1 <= 1)).all())
    bred = b.history.is_bred[400:800]
    assert int(bred.sum()) == 320
    near = ((x1[bred] > 0.6).all(dim=1)).float().mean()
    assert near > 0.8  # children stay near the hard corner, whose box share is 4 %
    assert b.metrics()["breeder/oob_rate"] > 0.0
    state = b.state_dict()
    buf = io.BytesIO()
    torch.save(state, buf)
    buf.seek(0)
    c = BreedBreeder(bounds, BreedConfig(sigma=0.08, breakpoint=2, end=0.8, oob=oob))
    c.load_state_dict(torch.load(buf, weights_only=True))
    assert torch.equal(b.ask(50), c.ask(50))


# ----------------------------------------------------------------------------------- plots
def test_plot_breeder_writes_pngs(tmp_path):
    torch.manual_seed(0)
    b = BreedBreeder(torch.tensor([[0.0, 1.0], [-1.0, 1.0], [0.0, 2.0]]), breakpoint=2)
    x = b.ask(64)
    b.tell(torch.arange(64), x[:, 0])
    b.ask(64)
    paths = b.plots(str(tmp_path / "b"))
    names = sorted(p.split("/")[-1] for p in paths)
    assert names == ["breed_ratio.png", "params_by_generation.png", "params_by_signal.png",
                     "signal_distribution.png"]
    data = b.plot_data()
    data["ddpm_loss"] = torch.tensor([[10.0, 1.0], [20.0, 0.5]])
    more = plot_breeder(data, tmp_path / "m")
    assert len(more) == 5
    for path in more:
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_wait_idle_returns_when_the_worker_lacks_data():
    trainer = BackgroundTrainer(lambda: False)
    trainer.refill(10)
    start = time.perf_counter()
    assert trainer.wait_idle(timeout=30.0) is True
    assert time.perf_counter() - start < 10.0  # did not sit out the timeout
    assert trainer.steps == 0
    trainer.close()
