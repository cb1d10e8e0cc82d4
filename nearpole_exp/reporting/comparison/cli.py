"""``python -m nearpole_exp.compare``: the comparison of a sweep from the command line."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console
from rich.text import Text

from nearpole_exp.reporting.comparison.read import SweepEmptyError
from nearpole_exp.reporting.comparison.render import print_comparison
from nearpole_exp.reporting.comparison.sweep import compare_sweep, write_outputs


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m nearpole_exp.compare",
        description="Compare the sweep points of a Hydra multirun (mean ± std over seeds, ratios).")
    parser.add_argument("sweep_dir", type=Path, help="the multirun directory (hydra.sweep.dir)")
    parser.add_argument("--baseline", nargs="+", metavar="KEY=VALUE", default="auto",
                        help="override(s) naming the reference point, e.g. sampler=uniform "
                             "(default auto: sampler=uniform, else ogas/breeder=uniform)")
    parser.add_argument("--metrics", nargs="+", metavar="NAME",
                        help="metrics (or globs such as 'eval/relerr_median/*') for the table")
    parser.add_argument("--out", type=Path, help="output directory (default: the sweep directory)")
    parser.add_argument("--lower-is-better", action=argparse.BooleanOptionalAction, default=True,
                        help="direction of the metrics for ratios and wins (default: lower)")
    parser.add_argument("--by", metavar="KEY1,KEY2",
                        help="split into blocks by these override keys, one baseline per block")
    parser.add_argument("--wandb", action="store_true",
                        help="also log the comparison as a W&B run (job type comparison) in the "
                             "sweep's group")
    parser.add_argument("--wandb-project", default="nearpole_exp")
    parser.add_argument("--wandb-entity", default=None)
    parser.add_argument("--wandb-mode", default=None, choices=["online", "offline"],
                        help="default: online with an API key, else offline")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """CLI: 0 when at least one job completed, 1 when none did, 2 for an empty or absent sweep."""
    args = parse_args(argv)
    con = Console()
    try:
        result = compare_sweep(args.sweep_dir, baseline=args.baseline, metrics=args.metrics,
                               lower_is_better=args.lower_is_better, by=args.by, write=False)
    except SweepEmptyError as err:
        con.print(Text.assemble(("nothing to compare: ", "red"), str(err)))
        return 2
    if args.baseline != "auto" and not any(row.is_baseline for row in result.rows):
        why = "; ".join(n for n in result.notes if n.startswith("baseline")) or "no baseline"
        points = ", ".join(row.label for row in result.rows)
        con.print(Text.assemble(("--baseline: ", "red"), f"{why} (points: {points}); nothing "
                                "written"), soft_wrap=True)
        return 2
    write_outputs(result, Path(args.out) if args.out is not None else result.sweep_dir)
    print_comparison(result, con)
    if args.wandb:
        from nearpole_exp.reporting.comparison.wandb_log import log_comparison

        where = log_comparison(result, project=args.wandb_project, entity=args.wandb_entity,
                               mode=args.wandb_mode)
        con.print(where or "W&B could not start: the comparison is in the local files only",
                  highlight=False, soft_wrap=True)
    if result.n_completed == 0:
        con.print(Text.assemble(("no job completed", "red"), ": nothing to aggregate"))
        return 1
    return 0
