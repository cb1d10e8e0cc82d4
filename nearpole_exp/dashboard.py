"""A W&B workspace for comparing runs at a glance (``pip install -e ".[dashboard]"``)::

    python -m nearpole_exp.dashboard --entity ENTITY --project nearpole_exp [--sweep ID] \\
        [--group-by sampler ogas/breeder] [--dry-run]

One section per metric family (near-pole buckets, pole localisation, nRMSE tails, breeder,
sampler diagnostics, time), bar charts aggregated over the runs of a group with their standard
deviation as error bars, line plots against ``step``; runs grouped by the chosen config groups
(``choices.*``), so the seeds of one point collapse into one bar; ``--sweep`` keeps one
multirun (its tag ``sweep:ID``). Saving needs a W&B account; ``--dry-run`` prints the layout.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

DEFAULT_GROUP_BY = ("problem", "sampler", "ogas/breeder")
BUCKETS = [f"eval/relerr_median/B{b}" for b in range(5)]
NRMSE_TAILS = ["eval/nrmse_max", "eval/nrmse_p99", "eval/nrmse_p95", "eval/nrmse_mean"]
#: (section, kind, metrics, title): what the workspace shows, one section per family.
LAYOUT: tuple[tuple[str, str, list[str], str], ...] = (
    ("Near-pole buckets", "bar", BUCKETS, "median relative error by distance to the pole (B0 closest)"),
    ("Near-pole buckets", "line", ["eval/relerr_median/B0", "eval/relerr_median/B2"],
     "nearest buckets during training"),
    ("Pole localisation", "bar", ["eval/ple", "eval/near_relerr_median"],
     "PLE and the near-pole median relative error"),
    ("nRMSE tails", "bar", NRMSE_TAILS, "nRMSE over held-out simulations: tails and mean"),
    ("nRMSE tails", "line", ["eval/nrmse_max", "eval/nrmse_p99"], "tails during training"),
    ("Breeder", "line", ["breeder/ratio", "breeder/ratio_target", "breeder/ddpm_loss",
                         "breeder/oob_rate"], "breed share, DDPM loss, out-of-box rate"),
    ("Breeder", "line", ["placement/tv", "placement/hard_mass"],
     "placement against the ideal density (landscapes)"),
    ("Sampler diagnostics", "line", ["sampler/ess", "sampler/importance/ess",
                                     "sampler/importance/diversity", "gradient/delta"],
     "sampling and the hybrid band"),
    ("Time", "bar", ["time/wall_s", "time/breeder_s"], "wall time (s)"),
)


def build_workspace(entity: str, project: str, sweep: str | None = None,
                    group_by: Sequence[str] = DEFAULT_GROUP_BY, name: str | None = None) -> Any:
    """The ``wandb_workspaces`` Workspace (not saved): sections, panels, grouping and filters."""
    import wandb_workspaces.reports.v2 as wr
    import wandb_workspaces.workspaces as ws

    sections: dict[str, list[Any]] = {}
    for section, kind, metrics, title in LAYOUT:
        if kind == "bar":
            panel = wr.BarPlot(title=title, metrics=list(metrics), groupby_aggfunc="mean",
                               groupby_rangefunc="stddev", orientation="v")
        else:
            panel = wr.LinePlot(title=title, x="step", y=list(metrics), groupby_aggfunc="mean",
                                groupby_rangefunc="stddev")
        sections.setdefault(section, []).append(panel)
    filters = [ws.Tags().isin([f"sweep:{sweep}"])] if sweep else []
    runset = ws.RunsetSettings(filters=filters,
                               groupby=[ws.Config(f"choices.{g}") for g in group_by])
    return ws.Workspace(entity=entity, project=project,
                        name=name or (f"nearpole_exp sweep {sweep}" if sweep else "nearpole_exp"),
                        sections=[ws.Section(name=s, panels=p, is_open=True)
                                  for s, p in sections.items()],
                        runset_settings=runset)


def describe(workspace: Any) -> str:
    """The layout in plain text (what ``--dry-run`` prints)."""
    lines = [f"workspace {workspace.name!r} in {workspace.entity}/{workspace.project}",
             f"  group by: {[str(g) for g in workspace.runset_settings.groupby]}",
             f"  filters: {workspace.runset_settings.filters or 'none'}"]
    for section in workspace.sections:
        lines.append(f"  section {section.name}:")
        for panel in section.panels:
            metrics = getattr(panel, "metrics", None) or getattr(panel, "y", [])
            lines.append(f"    {type(panel).__name__}: {panel.title} {list(metrics)}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m nearpole_exp.dashboard",
                                     description="Build (and save) a W&B workspace for nearpole_exp runs.")
    parser.add_argument("--entity", required=True)
    parser.add_argument("--project", default="nearpole_exp")
    parser.add_argument("--sweep", help="a multirun's sweep id (tag sweep:ID) to keep")
    parser.add_argument("--group-by", nargs="+", default=list(DEFAULT_GROUP_BY), metavar="GROUP",
                        help="config groups whose choices group the runs (seeds collapse)")
    parser.add_argument("--name", help="the workspace's name")
    parser.add_argument("--dry-run", action="store_true", help="print the layout, save nothing")
    args = parser.parse_args(argv)
    problem = unknown_groups(args.group_by)
    if problem:
        print(f"--group-by: {problem}")
        return 2
    if not args.dry_run and not has_api_key():
        print("saving a workspace needs a W&B API key: run `wandb login` or set WANDB_API_KEY "
              "(--dry-run prints the layout without one)")
        return 2
    try:
        workspace = build_workspace(args.entity, args.project, args.sweep, args.group_by, args.name)
    except ImportError:
        print('the dashboard needs wandb-workspaces: pip install -e ".[dashboard]"')
        return 2
    print(describe(workspace))
    if not args.dry_run:
        try:
            saved = workspace.save()
        except Exception as err:  # network, permissions, an unknown entity: say it, in a line
            print(f"W&B refused or could not be reached: {type(err).__name__}: "
                  f"{str(err).strip().splitlines()[0] if str(err).strip() else ''}")
            return 1
        print(f"saved: {getattr(saved, 'url', saved)}")
    return 0


def unknown_groups(groups: Sequence[str]) -> str | None:
    """What is wrong with ``--group-by`` (a name that is no config group), or None."""
    import difflib

    from nearpole_exp.overrides import group_options

    known = sorted(group_options())
    for group in groups:
        if group not in known:
            close = difflib.get_close_matches(group, known, n=1)
            hint = f"; did you mean {close[0]}?" if close else ""
            return f"{group!r} is no config group{hint} (groups: {', '.join(known)})"
    return None


def has_api_key() -> bool:
    """Whether W&B has an API key here: WANDB_API_KEY, or the netrc entry ``wandb login``
    writes for the W&B host."""
    import netrc
    import os
    from urllib.parse import urlparse

    if os.environ.get("WANDB_API_KEY"):
        return True
    host = urlparse(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")).hostname or ""
    try:
        return netrc.netrc().authenticators(host) is not None
    except (OSError, netrc.NetrcParseError):
        return False


if __name__ == "__main__":
    raise SystemExit(main())
