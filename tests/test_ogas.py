"""OGASBreeder end to end: concentration on a hard corner, OOB handling, tell validation,
exact resume, Melissa-style staging, background-thread errors and clean shutdown."""

from __future__ import annotations

import io
import itertools
import threading
import time

import pytest
import torch

from nearpole_exp.acquisition.ogas import (
    BreederConfig,
    DataConfig,
    DDPMConfig,
    ExperimentConfig,
    OGASBreeder,
)
from nearpole_exp.acquisition.ogas.melissa import MelissaOGASBreeder
from nearpole_exp.errors import BackgroundThreadError, ConfigError
from nearpole_exp.rng import load_generator_state

UNIT2 = torch.tensor([[0.0, 1.0], [0.0, 1.0]])
BOX2 = torch.tensor([[-2.0, 2.0], [10.0, 20.0]])


pytestmark = pytest.mark.usefixtures("one_thread")


#: The generator alone on Melissa's ramp (the paper's OGAS), so that each test sees one mechanism.
GENERATOR_ONLY = dict(adaptive_ratio="off", proposal_mix="generator", child_jitter=0.0,
                      loss_sampling_alpha=1.0, non_breed_design="uniform")


def tiny(bounds: torch.Tensor = UNIT2, model: DDPMConfig | None = None,
         data: DataConfig | None = None, melissa: bool = False, **breeder) -> OGASBreeder:
    """A small synchronous breeder (with Melissa's method names if asked): R jumps to 0.7 at
    generation 1."""
    model = model or DDPMConfig(sampler="ddim", model_dim=64, depth=2, timesteps=50, lr=2e-3,
                                sample_steps=10, ema_decay=0.95)
    data = data or DataConfig(batch_size=64, buffer_size=2000, smoothing_neighbours=1)
    opts = dict(synchronous=True, train_steps_per_ask=40, min_train_steps=40, breakpoint=2,
                end_breed_ratio=0.7, **GENERATOR_ONLY)
    opts.update(breeder)
    return (MelissaOGASBreeder if melissa else OGASBreeder)(bounds, model=model, data=data, **opts)


def corner(unit: torch.Tensor) -> torch.Tensor:
    """The hard region: the top-right corner, 4 % of the square."""
    return (unit[:, 0] > 0.8) & (unit[:, 1] > 0.8)


def difficulty(unit: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """A noisy per-sample loss: 0.1 in the bulk, about 1.1 in the corner."""
    return 0.1 + corner(unit).float() + 0.05 * torch.rand(unit.shape[0], generator=gen)


def tell_twice(b: OGASBreeder, x: torch.Tensor, gen: torch.Generator) -> None:
    """Two noisy samples per sim, as a training loop would report them."""
    unit = (x - b.bounds[:, 0]) / (b.bounds[:, 1] - b.bounds[:, 0])
    ids = torch.arange(b.n_asked - x.shape[0], b.n_asked)
    b.tell(torch.cat([ids, ids]), torch.cat([difficulty(unit, gen), difficulty(unit, gen)]))


@pytest.mark.parametrize(("strategy", "param", "condition", "bred_factor"), [
    ("proportional", "logit", "minmax", 10),
    ("proportional", "mirror", "minmax", 10),
    # targets spread evenly over the loss quantiles: less concentrated by design
    ("uniform_quantile", "box", "rank", 7),
])
def test_generated_parameters_concentrate_on_the_hard_corner(strategy, param, condition, bred_factor):
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    model = DDPMConfig(sampler="ddim", model_dim=64, depth=2, timesteps=50, lr=2e-3, sample_steps=10,
                       ema_decay=0.95, parametrisation=param)
    b = tiny(model=model, data=DataConfig(batch_size=128, condition=condition),
             loss_sampling_strategy=strategy, end_breed_ratio=0.8, train_steps_per_ask=300,
             min_train_steps=0)
    x0 = b.ask(400)
    assert not b.history.is_bred[:400].any()  # generation 0 is the design
    tell_twice(b, x0, gen)
    x1 = b.ask(400)
    assert bool(((x1 >= 0) & (x1 <= 1)).all())
    bred = b.history.is_bred[400:800]
    assert int(bred.sum()) == 320
    volume = 0.04
    share_all = float(corner(x1).float().mean())
    share_bred = float(corner(x1[bred]).float().mean())
    assert share_all >= 5 * volume, share_all
    assert share_bred >= bred_factor * volume, share_bred
    m = b.metrics()
    assert m["breeder/ratio"] == pytest.approx(0.8)
    assert m["breeder/generation"] == 2.0
    assert m["breeder/train_steps"] == 300.0


def test_box_bounds_and_ids_and_first_generation():
    torch.manual_seed(1)
    b = tiny(bounds=BOX2, non_breed_design="sobol")
    x = b.ask(32)
    assert x.shape == (32, 2) and b.n_asked == 32
    assert bool(((x >= BOX2[:, 0]) & (x <= BOX2[:, 1])).all())
    assert torch.allclose(b.parameters_of(torch.arange(32)), x)
    assert b.ask(0).shape == (0, 2) and b.n_asked == 32
    with pytest.raises(ValueError):
        b.ask(-1)


def _untrained_breeder(model: DDPMConfig, **kw) -> OGASBreeder:
    """Gen 0 told, then an untrained DDPM breeds everything in generation 1."""
    b = tiny(model=model, train_steps_per_ask=0, min_train_steps=0, end_breed_ratio=1.0, **kw)
    x0 = b.ask(64)
    b.tell(torch.arange(64), x0[:, 0])
    return b


def test_box_oob_is_resampled_then_replaced_by_design_draws():
    torch.manual_seed(2)
    box = DDPMConfig(sampler="ddim", model_dim=32, depth=1, timesteps=20, sample_steps=5,
                     parametrisation="box", clip_denoised=False)
    b = _untrained_breeder(box, max_oob_attempts=2)
    x1 = b.ask(200)
    m = b.metrics()
    assert bool(((x1 >= 0) & (x1 <= 1)).all())
    assert m["breeder/oob_rate"] > 0.5  # an untrained model mostly lands outside
    n_bred = int(b.history.is_bred[64:264].sum())
    assert n_bred + m["breeder/oob_fallback"] == 200
    assert m["breeder/ratio"] == pytest.approx(n_bred / 200)
    clipped = _untrained_breeder(box, resample_oob=False)
    x2 = clipped.ask(200)
    assert bool(((x2 >= 0) & (x2 <= 1)).all())
    assert int(clipped.history.is_bred[64:264].sum()) == 200
    assert clipped.metrics()["breeder/oob_rate"] > 0.5


def test_box_oob_retry_regenerates_only_the_failed_rows():
    torch.manual_seed(12)
    box = DDPMConfig(sampler="ddim", model_dim=32, depth=1, timesteps=20, sample_steps=5,
                     parametrisation="box")
    b = _untrained_breeder(box, max_oob_attempts=3)
    calls: list[int] = []

    def scripted(cond, generator, model=None):
        """First call: every other row outside; retries: all inside, at x = 0.5."""
        calls.append(cond.shape[0])
        x = torch.zeros(cond.shape[0], 2)
        if len(calls) == 1:
            x[::2, 0] = 1.5
        return x

    b.ddpm.generate = scripted  # type: ignore[method-assign]
    x1 = b.ask(100)
    m = b.metrics()
    assert calls == [100, 50]
    assert m["breeder/oob_rate"] == pytest.approx(50 / 150)
    assert m["breeder/oob_fallback"] == 0.0 and m["breeder/ratio"] == 1.0
    assert torch.allclose(x1, torch.full((100, 2), 0.5))


def test_logit_parametrisation_never_leaves_the_box():
    torch.manual_seed(3)
    logit = DDPMConfig(sampler="ddim", model_dim=32, depth=1, timesteps=20, sample_steps=5,
                       parametrisation="logit", clip_denoised=False, guidance_scale=8.0)
    b = _untrained_breeder(logit)
    x1 = b.ask(200)
    assert bool(((x1 >= 0) & (x1 <= 1)).all())
    assert b.metrics()["breeder/oob_rate"] == 0.0
    assert int(b.history.is_bred[64:264].sum()) == 200


def test_tell_validates_and_drops_non_finite_values():
    torch.manual_seed(4)
    b = tiny(min_reservoir_size=4)
    b.ask(8)
    with pytest.raises(ValueError, match="never asked"):
        b.tell(torch.tensor([8]), torch.tensor([1.0]))
    with pytest.raises(ValueError, match="expects"):
        b.tell(torch.arange(8), torch.ones(7))
    with pytest.raises(ValueError, match="integers"):
        b.tell(torch.arange(8).float(), torch.ones(8))
    values = torch.tensor([float("nan"), float("inf"), 1, 2, 3, 4, 5, 100])
    b.tell(torch.arange(8), values)
    m = b.metrics()
    assert m["breeder/dropped_values"] == 2.0
    assert m["breeder/reservoir_size"] == 6.0
    assert b.history.count[:2].tolist() == [0, 0]
    assert float(b.history.signal[7]) == DataConfig().max_loss_value  # clipped outlier
    b.ask(8)  # trains inline on the reservoir
    assert b.metrics()["breeder/train_steps"] == 40.0
    assert all(bool(torch.isfinite(p).all()) for p in b.ddpm.model.parameters())


def test_checkpoint_round_trip_gives_an_identical_next_generation():
    torch.manual_seed(5)
    gen = torch.Generator().manual_seed(5)
    a = tiny()
    tell_twice(a, a.ask(64), gen)
    tell_twice(a, a.ask(64), gen)
    buf = io.BytesIO()
    torch.save(a.state_dict(), buf)
    buf.seek(0)
    state = torch.load(buf, weights_only=True)
    torch.manual_seed(123)  # a different fresh breeder: everything must come from the state
    b = tiny()
    b.load_state_dict(state)
    xa, xb = a.ask(64), b.ask(64)
    assert torch.equal(xa, xb)
    assert torch.equal(a.history.is_bred[:192], b.history.is_bred[:192])
    ma, mb = a.metrics(), b.metrics()
    for timing in ("breeder/generate_s", "breeder/train_cpu_s", "breeder/train_wait_s"):
        ma.pop(timing)
        mb.pop(timing)
    assert ma == mb
    replay = torch.Generator()
    replay.set_state(gen.get_state())
    tell_twice(a, xa, gen)
    tell_twice(b, xb, replay)
    assert torch.equal(a.ask(32), b.ask(32))
    with pytest.raises(ValueError, match="format"):
        b.load_state_dict({"format_version": 0, "kind": "ogas"})


def test_staging_and_concretisation_follow_melissa():
    """Melissa's two-phase API: a staged generation is written after the last submitted id,
    overwriting asked ids nobody submitted; it survives a checkpoint; -1 asks for the rest of
    the budget."""
    torch.manual_seed(6)
    b = tiny(total_budget=100, melissa=True)
    p = b.next_parameters(10)
    assert b.n_asked == 0
    assert b.concretize_resampled_parameters(-1) == (0, 9)
    assert torch.allclose(b.parameters_of(torch.arange(10)), p)
    p2 = b.next_parameters(5)
    assert b.concretize_resampled_parameters(4) == (5, 9)  # overwrites unsubmitted sims 5..9
    assert b.n_asked == 10
    assert torch.allclose(b.parameters_of(torch.arange(5, 10)), p2)
    with pytest.raises(RuntimeError, match="staged"):
        b.concretize_resampled_parameters(9)
    b.tell(torch.tensor([5]), torch.tensor([1.0]))
    b.next_parameters(5)
    with pytest.raises(ValueError, match="already reported"):
        b.concretize_resampled_parameters(4)
    with pytest.raises(ValueError, match="last_submitted"):
        b.concretize_resampled_parameters(20)
    staged = b.next_parameters(-1)
    assert staged.shape == (90, 2)  # the rest of the budget
    assert b.metrics()["breeder/generation"] == 2.0
    c = tiny(total_budget=100, melissa=True)
    c.restart_from_checkpoint(b.checkpoint_state())
    assert c.concretize_resampled_parameters(9) == b.concretize_resampled_parameters(9) == (10, 99)
    assert torch.equal(c.parameters_of(torch.arange(10, 100)), staged)
    signal = torch.rand(100, generator=torch.Generator().manual_seed(1))
    for breeder in (b, c):
        breeder.tell(torch.arange(100), signal)
        assert breeder.train_sampler() == 40  # synchronous: inline steps on the reservoir
    assert all(torch.equal(p, q) for p, q in zip(b.ddpm.model.parameters(),
                                                 c.ddpm.model.parameters(), strict=True))


def test_background_thread_error_reaches_the_caller_within_one_ask():
    torch.manual_seed(7)
    before = threading.active_count()
    # a budget far beyond what the thread runs before the failure is planted
    b = tiny(synchronous=False, min_train_steps=5, train_steps_per_ask=100_000,
             min_reservoir_size=8, trainer_process=False)
    x0 = b.ask(32)
    b.tell(torch.arange(32), x0[:, 0])
    b.ask(32)  # 5 steps inline, then the thread's budget starts

    def boom(*args, **kwargs):
        raise RuntimeError("ddpm exploded")

    b.ddpm.train_step = boom  # type: ignore[method-assign]
    with pytest.raises(BackgroundThreadError, match="ddpm exploded"):
        b.ask(32)  # waits for the thread, which fails on its next step
    with pytest.raises(BackgroundThreadError):
        b.metrics()
    b.close()
    assert threading.active_count() == before


def test_threaded_breeder_trains_in_the_background_and_stops_cleanly():
    torch.manual_seed(8)
    gen = torch.Generator().manual_seed(8)
    before = threading.active_count()
    b = tiny(synchronous=False, min_train_steps=30, train_steps_per_ask=60, min_reservoir_size=8,
             trainer_process=False)
    b.start()
    b.start()
    assert threading.active_count() == before + 1
    tell_twice(b, b.ask(64), gen)
    x1 = b.ask(64)  # min_train_steps inline, then 60 scheduled on the thread
    assert int(b.history.is_bred[64:128].sum()) == 44
    tell_twice(b, x1, gen)
    b.ask(16)  # waits for the thread's 60, then schedules the next 60
    assert b.trainer.wait_idle(30.0)
    assert b.ddpm.steps == 30 + 60 + 60
    b.close()
    b.close()
    assert threading.active_count() == before
    steps = b.ddpm.steps  # 90 plus what the thread ran of the next budget before it stopped
    assert b.ask(16).shape == (16, 2)  # still usable after close, without training
    assert b.ddpm.steps == steps


def _threaded_run(seed: int, checkpoint_at: int | None = None) -> tuple[torch.Tensor, OGASBreeder]:
    """Four generations of a threaded breeder with noisy tells between them; optionally saved
    after generation ``checkpoint_at`` (while the thread still has steps to run) and resumed."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    opts = dict(synchronous=False, min_train_steps=20, train_steps_per_ask=80,
                min_reservoir_size=8)
    b = tiny(**opts)
    asked = []
    for g in range(4):
        x = b.ask(48)
        asked.append(x)
        ids = torch.arange(b.n_asked - len(x), b.n_asked)
        for _ in range(3):  # tells race the thread's steps
            b.tell(ids, x[:, 0] + 0.05 * torch.rand(len(x), generator=gen))
            time.sleep(0.002)
        if g == checkpoint_at:
            buf = io.BytesIO()
            torch.save(b.state_dict(), buf)
            b.close()
            buf.seek(0)
            b = tiny(**opts)
            b.load_state_dict(torch.load(buf, weights_only=True))
    asked.append(b.ask(48))
    assert b.trainer.wait_idle(60.0)
    b.close()
    return torch.cat(asked), b


def test_threaded_breeder_is_reproducible_and_resumes_exactly():
    first, b1 = _threaded_run(3)
    again, b2 = _threaded_run(3)
    resumed, b3 = _threaded_run(3, checkpoint_at=1)
    assert torch.equal(first, again) and torch.equal(first, resumed)
    assert b1.ddpm.steps == b2.ddpm.steps == b3.ddpm.steps == 20 + 4 * 80
    for other in (b2, b3):
        assert all(torch.equal(p, q) for p, q in zip(b1.ddpm.model.parameters(),
                                                     other.ddpm.model.parameters(), strict=True))


@pytest.mark.parametrize("variant", [
    {"learn_sampling_ratio": False},
    {"learn_sampling_ratio": False, "train_only_with_non_breed_samples": True},
    {"schedule_on": "budget", "total_budget": 400, "budget_breakpoint": 0.25},
    {"activate_breed": False},
])
def test_variants_run_and_report(variant):
    torch.manual_seed(9)
    gen = torch.Generator().manual_seed(9)
    b = tiny(**variant)
    for _ in range(3):
        x = b.ask(50)
        assert bool(((x >= 0) & (x <= 1)).all())
        tell_twice(b, x, gen)
    m = b.metrics()
    assert set(m) >= {"breeder/ratio", "breeder/oob_rate", "breeder/generation",
                      "breeder/ratio_ess", "breeder/train_steps", "breeder/reservoir_size"}
    if variant.get("activate_breed") is False:
        assert m["breeder/train_steps"] == 0.0 and not b.history.is_bred[:150].any()
        return
    assert "breeder/ddpm_loss" in m and m["breeder/train_steps"] == 80.0
    if not b.config.breeder.learn_sampling_ratio:
        assert m["breeder/ratio_ess"] == 1.0
    if b.config.breeder.schedule_on == "budget":
        assert b.records["ratio_target"] == pytest.approx([0.0, 0.35, 0.7])


def test_ratio_debiasing_reports_ess_below_one():
    torch.manual_seed(10)
    gen = torch.Generator().manual_seed(10)
    b = tiny(end_breed_ratio=0.8, train_steps_per_ask=100, min_train_steps=0)
    for _ in range(3):
        tell_twice(b, b.ask(200), gen)
    assert 0.0 < b.reservoir.bred_fraction() < 1.0
    ess = b.metrics()["breeder/ratio_ess"]
    assert 0.1 < ess < 0.99


def test_constructor_forms_and_errors():
    b = OGASBreeder(UNIT2, ExperimentConfig(breeder=BreederConfig(synchronous=True)),
                    end_breed_ratio=0.9)
    assert b.config.breeder.synchronous and b.config.breeder.end_breed_ratio == 0.9
    b = OGASBreeder(bounds=UNIT2, model={"_target_": "ignored", "model_dim": 32},
                    data={"batch_size": 16}, synchronous=True)
    assert b.config.model.model_dim == 32 and b.config.data.batch_size == 16
    with pytest.raises(ConfigError) as err:
        OGASBreeder(UNIT2, nope=1)
    assert err.value.key == "breeder.nope"
    with pytest.raises(ConfigError) as err:
        OGASBreeder(UNIT2, model={"sampler": "euler"})
    assert err.value.key == "model.sampler"
    with pytest.raises(ValueError, match="total_budget"):
        MelissaOGASBreeder(UNIT2, synchronous=True).next_parameters(-1)


def test_plot_data_and_plots(tmp_path):
    torch.manual_seed(11)
    gen = torch.Generator().manual_seed(11)
    b = tiny(loss_log_every=5)
    for _ in range(2):
        tell_twice(b, b.ask(40), gen)
    data = b.plot_data()
    assert data["params"].shape == (80, 2)
    assert data["ddpm_loss"].shape == (8, 2)
    assert data["breed_ratio"] == pytest.approx([0.0, 0.7])
    names = sorted(p.split("/")[-1] for p in b.plots(str(tmp_path)))
    assert names == ["breed_ratio.png", "ddpm_loss.png", "params_by_generation.png",
                     "params_by_signal.png", "signal_distribution.png"]


def test_loss_curve_is_thinned_and_foreign_generator_states_reseed(monkeypatch):
    import nearpole_exp.acquisition.ogas.training as training_module

    monkeypatch.setattr(training_module, "MAX_LOSS_POINTS", 4)
    torch.manual_seed(13)
    b = tiny(loss_log_every=1, train_steps_per_ask=0, min_train_steps=0)
    b.tell(torch.arange(64), b.ask(64)[:, 0])
    b.train_now(40)
    steps = [int(s) for s, _ in b.training.loss_curve]
    assert len(steps) <= 4 and steps[-1] <= 40
    gaps = {later - earlier for earlier, later in itertools.pairwise(steps)}
    assert len(gaps) == 1 and gaps.pop() >= 8  # evenly spaced, stride doubled three times
    cuda_like = torch.arange(16, dtype=torch.uint8)  # a CUDA generator state has 16 bytes
    g1, g2 = torch.Generator(), torch.Generator()
    load_generator_state(g1, cuda_like)
    load_generator_state(g2, cuda_like)
    assert torch.equal(torch.rand(3, generator=g1), torch.rand(3, generator=g2))
