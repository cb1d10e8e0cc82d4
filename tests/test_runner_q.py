"""What the runner hands the sampler and the δ band: the distance the sampler is set to, and the
model's own Q for the band it acts on."""

from __future__ import annotations

import copy
from pathlib import Path

import torch

from nearpole_exp.runner import Runner
from nearpole_exp.sampling.distances import newton_distance

from .conftest import TINY

SINE = [*TINY, "problem=curve2d_sine", "model=rational", "sampler=importance", "logger=none",
        "trainer.rounds=2", "trainer.steps_per_round=10", "trainer.initial_points=2048",
        "polish=none"]  # the polish would take both runs to the same optimum


def test_newton_distance_is_what_the_sampler_draws_by(composer) -> None:
    """On a wavy pole curve, |Q| and |Q|/‖∇Q‖ rank points differently: with distance=newton the
    sampler gets the Newton distance of the problem's Q, and the run draws other batches."""
    runs = {}
    for distance in ("abs_q", "newton"):
        cfg = composer([*SINE, f"sampler.distance={distance}"], distance)
        runner = Runner(cfg, Path(cfg.hydra.runtime.output_dir))
        runner.acquisition.acquire(0)
        selection = runner.selection
        values = selection.draw_values(0).values  # the importance tables are built from these
        q_abs = selection.q_abs(0)
        if distance == "newton":
            expected = newton_distance(runner.problem.q, runner.pool.inputs)
            torch.testing.assert_close(values, expected)
            ranks = [torch.argsort(torch.argsort(v)).double() for v in (values, q_abs)]
            assert torch.corrcoef(torch.stack(ranks))[0, 1] < 0.99  # another order
            assert selection.draw_values(0) is selection.draw_values(1)  # cached until |Q| changes
        else:
            assert torch.equal(values, q_abs)
        runs[distance] = runner.run()
    assert runs["abs_q"]["eval/mse"] != runs["newton"]["eval/mse"]


def test_the_band_reads_the_models_q(composer) -> None:
    """Adaptive δ and the saturated fraction use |Q| of the model at the batch, not the
    problem's: the fraction equals the share of the batch whose model |Q| lies below δ."""
    cfg = composer([*TINY, "gradient=hybrid", "logger=none", "trainer.rounds=1",
                    "trainer.steps_per_round=3"])
    runner = Runner(cfg, Path(cfg.hydra.runtime.output_dir))
    runner.acquisition.acquire(0)
    seen = {}
    original = runner.gradient.delta

    def spy(step, batch_q=None):
        seen["q"] = batch_q
        return original(step, batch_q)

    runner.gradient.delta = spy
    select = runner.selection.sampler.select

    def keep(*args, **kwargs):
        seen["sel"] = select(*args, **kwargs)
        return seen["sel"]

    runner.selection.sampler.select = keep
    before = copy.deepcopy(runner.model)  # the step changes the model after δ is chosen
    runner.train_step()
    x = runner.pool.inputs[seen["sel"].idx]
    with torch.no_grad():
        torch.testing.assert_close(seen["q"], before.q_values(x).abs())
    problem_q = runner.selection.q_abs(runner.state.step)[seen["sel"].idx]
    assert not torch.allclose(seen["q"], problem_q.to(seen["q"].dtype))
    d = runner.gradient.last_delta
    assert runner.gradient.last_saturated == float((seen["q"] < d).float().mean())
