"""A problem defined outside the package works with every sampler and reports every metric."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from nearpole_exp.config.validate import validate
from nearpole_exp.errors import ConfigError, ProblemError
from nearpole_exp.runner import Runner

from .conftest import TINY

CUSTOM = ["problem=custom", "problem._target_=tests.byo_problem.TwoPoles", "+problem.b=0.5"]


@pytest.mark.parametrize("sampler", ["uniform", "importance", "active", "hybrid"])
def test_custom_problem_runs_with_every_sampler(composer, sampler: str) -> None:
    cfg = composer([*TINY, *CUSTOM, f"sampler={sampler}"], name=sampler)
    validate(cfg)
    runner = Runner(cfg, Path(cfg.hydra.runtime.output_dir))
    assert runner.problem.b == 0.5
    summary = runner.run()
    assert summary["status"] == "completed"
    assert all(math.isfinite(summary[f"eval/relerr_median/B{b}"]) for b in range(5))
    assert summary["eval/bucket_count/B0"] > 0
    assert math.isfinite(summary["eval/ple"])


def test_custom_problem_without_target_is_refused(composer) -> None:
    cfg = composer([*TINY, "problem=custom"])
    with pytest.raises(ConfigError, match=r"problem\._target_"):
        validate(cfg)


def test_nan_q_and_distance_warn_and_stay_out_of_the_buckets(composer, caplog) -> None:
    """NaN Q / distance from a custom problem: warned once each, never drawn by |Q|, counted in
    ``eval/distance_nonfinite`` instead of landing in bucket B4; all-NaN distances are refused."""
    broken = ["problem=custom", "problem._target_=tests.byo_problem.BrokenDistance"]
    cfg = composer([*TINY, *broken, "sampler=importance"])
    with caplog.at_level("WARNING"):
        runner = Runner(cfg, Path(cfg.hydra.runtime.output_dir))
        summary = runner.run()
    assert summary["status"] == "completed"
    warnings = [r.getMessage() for r in caplog.records if "returned NaN/inf" in r.getMessage()]
    assert any("BrokenDistance.q" in w for w in warnings)
    assert any("BrokenDistance.distance" in w for w in warnings)
    x = runner.problem.eval_set()[0]
    right = int((x[:, 0] > 0).sum())
    assert summary["eval/distance_nonfinite"] == right > 0
    assert sum(summary[f"eval/bucket_count/B{b}"] for b in range(5)) == len(x) - right
    cfg = composer([*TINY, "problem=custom", "problem._target_=tests.byo_problem.NoDistance"], "none")
    with pytest.raises(ProblemError, match=r"NoDistance\.distance returned no finite value"):
        Runner(cfg, Path(cfg.hydra.runtime.output_dir)).run()


@pytest.mark.parametrize(("name", "message"), [
    ("FlatTarget", r"FlatTarget\.target returned \(1,\) for 1 inputs; expected a tensor \[n, out\]"),
    ("ShortQ", r"ShortQ\.q returned \(255,\) for 256 inputs; expected a tensor \[n\]"),
])
def test_a_custom_problem_of_the_wrong_shape_names_the_method(composer, name, message) -> None:
    cfg = composer([*TINY, "problem=custom", f"problem._target_=tests.byo_problem.{name}",
                    "trainer.initial_points=256"], name)
    with pytest.raises(ProblemError, match=message):
        Runner(cfg, Path(cfg.hydra.runtime.output_dir)).run()
