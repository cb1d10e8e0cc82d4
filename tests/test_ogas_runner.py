"""OGAS through the runner on the analytic landscape: the loop completes, the per-sample signal
reaches the breeder, and its DDPM-bred points land in the hard corner far more than design ones."""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch

from nearpole_exp.runner import Runner

from .conftest import run_interrupted_then_resumed

TINY_OGAS = [
    "experiment=landscape", "ogas/breeder=ogas", "seed=0", "logger=none", "trainer.device=cpu",
    "trainer.progress=false", "trainer.plots=false", "trainer.num_threads=1", "trainer.rounds=6",
    "trainer.steps_per_round=60", "trainer.initial_points=128", "trainer.points_per_round=64",
    "trainer.batch_size=128", "trainer.eval_every=6", "problem.n_eval=64",
    "ogas.breeder.synchronous=true", "ogas.breeder.train_steps_per_ask=150",
    "ogas.breeder.min_train_steps=100", "ogas.breeder.end_breed_ratio=0.8",
    "ogas.breeder.adaptive_ratio=off", "ogas.breeder.breakpoint=2", "ogas.model.model_dim=32",
    "ogas.model.depth=2",
    "trainer.design_weighting=0.5",
]


def test_ogas_runs_through_the_runner_and_breeds_in_the_hard_region(composer) -> None:
    cfg = composer(TINY_OGAS)
    runner = Runner(cfg, Path(cfg.hydra.runtime.output_dir))
    summary = runner.run()
    assert summary["status"] == "completed"
    assert summary["breeder/simulations"] == 128 + 5 * 64
    assert math.isfinite(summary["eval/nrmse_max"])
    assert summary["breeder/train_steps"] >= 100
    assert runner.selection.design_prior() is not None  # the batches used the prior during the run
    rounds = [json.loads(line) for line in (runner.output_dir / "metrics.jsonl").read_text().splitlines()]
    ess = [r["train/design_ess"] for r in rounds if "train/design_ess" in r]
    assert ess and all(0.2 < v < 1.0 for v in ess)

    data = runner.acquisition.breeder.plot_data()
    told = torch.isfinite(data["signal"])
    assert told.float().mean() > 0.9  # the runner told (nearly) every simulation's loss
    bred = data["is_bred"]
    assert int(bred.sum()) >= 150  # ratio 0.8 from generation 1 on: 4·51 bred points at most
    hard = runner.problem.hard_region_mask(data["params"])
    bred_share = float(hard[bred].float().mean())
    design_share = float(hard[~bred].float().mean())
    # the design points (Sobol) hit the 5 % corner at about its volume
    assert abs(design_share - runner.problem.hard_fraction) < 0.04
    # the loss-conditioned DDPM sends its points there several times more often
    assert bred_share > 4 * design_share
    assert bred_share > 0.25

    # the placement diagnostic saw the same: per generation in metrics.jsonl, mean in the summary
    placed = [r for r in rounds if "placement/generation" in r]
    assert [int(r["placement/generation"]) for r in placed] == list(range(6))
    assert "placement_bred/hard_mass" not in placed[0]  # generation 0 is the design
    assert abs(placed[0]["placement/hard_mass"] - runner.problem.hard_fraction) < 0.06
    assert summary["placement_bred/hard_mass"] > 4 * runner.problem.hard_fraction
    assert math.isclose(summary["placement/ideal_hard_mass"], runner.problem.ideal_hard_mass)
    paths = runner.make_plots({})
    assert any(p.endswith("placement.png") and Path(p).stat().st_size > 10_000 for p in paths)

    # trainer.design_weighting: the ratio classifier's p_design/p_pool pulls the batch prior
    # back towards the design, so the weighted share of the hard corner falls towards its volume
    runner.selection.design_weighting = 1.0
    runner.pool.version += 1  # as if the pool had changed: the prior is computed anew
    prior = runner.selection.design_prior()
    assert prior is not None and prior.shape == (len(runner.pool),)
    sims = runner.pool.sim_ids.cpu()
    hard_sample = hard[sims]
    pool_share = float(hard_sample.float().mean())
    weighted_share = float((prior.cpu() * hard_sample).sum() / prior.sum())
    assert weighted_share < 0.6 * pool_share
    assert abs(weighted_share - runner.problem.hard_fraction) < abs(pool_share - runner.problem.hard_fraction)


def test_design_weighting_without_a_ratio_is_reported(composer, caplog) -> None:
    """Breed biases its pool but has no design density ratio: the setting is named as inert."""
    base = ["experiment=landscape", "logger=none", "trainer.progress=false", "trainer.device=cpu",
            "trainer.design_weighting=0.5"]
    cfg = composer([*base, "ogas/breeder=breed"])
    with caplog.at_level("WARNING", logger="nearpole_exp.build"):
        Runner(cfg, Path(cfg.hydra.runtime.output_dir))
    assert "trainer.design_weighting=0.5 has no effect: BreedBreeder" in caplog.text
    caplog.clear()
    cfg = composer([*base, "ogas/breeder=sobol"])  # a static design: ratio 1, nothing to report
    with caplog.at_level("WARNING", logger="nearpole_exp.build"):
        Runner(cfg, Path(cfg.hydra.runtime.output_dir))
    assert "design_weighting" not in caplog.text


def test_placement_history_survives_a_checkpoint(composer, tmp_path) -> None:
    base = ["experiment=landscape_multi", "ogas/breeder=breed", "seed=1", "logger=none",
            "trainer.device=cpu", "trainer.progress=false", "trainer.plots=false",
            "trainer.rounds=3", "trainer.steps_per_round=20", "trainer.initial_points=64",
            "trainer.points_per_round=32", "problem.n_eval=32"]
    cfg = composer(base)
    runner = Runner(cfg, Path(cfg.hydra.runtime.output_dir))
    summary = runner.run()
    assert len(runner.acquisition.placement.history) == 3 and "placement/region_mass/2" in summary
    other = Runner(cfg, tmp_path)
    other.load_state_dict(runner.state_dict(None))
    assert other.acquisition.placement.history == runner.acquisition.placement.history
    assert other.acquisition.placement.summary() == runner.acquisition.placement.summary()


def test_placement_is_off_and_said_so_under_an_asynchronous_executor(composer, caplog) -> None:
    cfg = composer(["experiment=landscape", "executor=inprocess", "logger=none",
                    "trainer.progress=false", "trainer.device=cpu"])
    with caplog.at_level("WARNING", logger="nearpole_exp.acquisition.acquire"):
        runner = Runner(cfg, Path(cfg.hydra.runtime.output_dir))
    try:
        assert runner.acquisition.placement is None and "placement diagnostic" in caplog.text
    finally:
        runner.acquisition.close()


def test_a_threaded_ogas_run_is_reproducible_and_resumes_to_the_same_numbers(composer,
                                                                             monkeypatch) -> None:
    """The DDPM trains on its background thread; the same seed gives the same run, and a run
    interrupted mid-way resumes to the numbers of the uninterrupted one."""
    threaded = [o for o in TINY_OGAS if not o.startswith("ogas.breeder.synchronous")]
    threaded += ["ogas.breeder.synchronous=false", "trainer.checkpoint_every=1"]
    cfg = composer(threaded, "first")
    first = Runner(cfg, Path(cfg.hydra.runtime.output_dir)).run()
    cfg = composer(threaded, "again")
    again = Runner(cfg, Path(cfg.hydra.runtime.output_dir)).run()
    resumed = run_interrupted_then_resumed(composer, monkeypatch, threaded, stop_after=3 * 60 + 10)
    for key in ("eval/nrmse_max", "eval/nrmse_p99", "eval/nrmse_mean", "breeder/train_steps"):
        assert first[key] == again[key] == resumed[key], (key, first[key], again[key], resumed[key])
