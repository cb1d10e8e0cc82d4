"""The generated W&B workspace, built without network: sections, panels, grouping, filters."""

from __future__ import annotations

import pytest

pytest.importorskip("wandb_workspaces")

from nearpole_exp.dashboard import BUCKETS, build_workspace, describe, main


def test_workspace_has_a_section_per_metric_family_grouped_by_choices() -> None:
    workspace = build_workspace("me", "nearpole_exp", sweep="6dfac419",
                                group_by=["sampler", "ogas/breeder"])
    names = [s.name for s in workspace.sections]
    assert names == ["Near-pole buckets", "Pole localisation", "nRMSE tails", "Breeder",
                     "Sampler diagnostics", "Time"]
    bars = workspace.sections[0].panels[0]
    assert list(bars.metrics) == BUCKETS and bars.groupby_rangefunc == "stddev"
    assert [str(g) for g in workspace.runset_settings.groupby] == [
        "Config(name='choices.sampler')", "Config(name='choices.ogas/breeder')"]
    assert "sweep:6dfac419" in str(workspace.runset_settings.filters)
    assert "Near-pole buckets" in describe(workspace)
    everything = build_workspace("me", "nearpole_exp")
    assert not everything.runset_settings.filters


def test_dry_run_prints_the_layout(capsys) -> None:
    assert main(["--entity", "me", "--dry-run"]) == 0
    assert "section Time:" in capsys.readouterr().out


def test_bad_group_by_and_a_missing_api_key_are_one_line_each(capsys, monkeypatch, tmp_path) -> None:
    assert main(["--entity", "me", "--group-by", "samplr", "--dry-run"]) == 2
    assert "did you mean sampler?" in capsys.readouterr().out
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc here
    monkeypatch.setenv("NETRC", str(tmp_path / "none"))
    assert main(["--entity", "me"]) == 2
    assert "needs a W&B API key" in capsys.readouterr().out
