"""A sweep's comparison as a W&B run of job type ``comparison`` in the sweep's group: the table
(mean, std, geometric mean and std factor, ratio to the baseline per metric and point), a bar
chart per metric family drawn by W&B from a table, the comparison PNGs (those carry the error
bars) and the failed jobs."""

from __future__ import annotations

import math
from typing import Any

from nearpole_exp.reporting.comparison.aggregate import ComparisonResult
from nearpole_exp.reporting.comparison.plots import plot_groups
from nearpole_exp.reporting.reporter import sweep_identity
from nearpole_exp.reporting.wandb_run import WandbRun


def _value(v: float | None) -> float | None:
    return None if v is None or not math.isfinite(v) else float(v)


def comparison_rows(result: ComparisonResult) -> tuple[list[str], list[list[Any]]]:
    """Columns and rows of the comparison table: one row per sweep point."""
    columns = ["point", "baseline", "completed", "failed"]
    for m in result.metrics:
        columns += [f"{m} mean", f"{m} std", f"{m} gmean", f"{m} gsd", f"{m} ratio"]
    rows = []
    for row in result.rows:
        values: list[Any] = [row.label, row.is_baseline, row.n, row.n_failed]
        for m in result.metrics:
            st = row.metrics[m]
            values += [_value(st.mean), _value(st.std), _value(st.gmean), _value(st.gsd),
                       _value(st.ratio)]
        rows.append(values)
    return columns, rows


def family_rows(result: ComparisonResult, members: list[str]) -> list[list[Any]]:
    """(bar label, point, metric, centre, std) for one metric family, every point × member (the
    centre: the geometric mean of an error, else the mean)."""
    out = []
    for row in result.rows:
        for m in members:
            st = row.metrics[m]
            if st.center is not None:
                short = m.rsplit("/", 1)[-1]
                out.append([f"{row.label} | {short}", row.label, short, _value(st.center),
                            _value(st.std)])
    return out


def log_comparison(result: ComparisonResult, *, project: str, entity: str | None,
                   mode: str | None, init_timeout: float = 30.0) -> str | None:
    """Start the comparison run, log everything, finish it; returns where it went (or None
    when W&B could not start: the local files are written either way)."""
    sweep = sweep_identity(result.sweep_dir, 0)
    run = WandbRun(project=project, entity=entity, group=sweep["id"], job_type="comparison",
                   name=f"comparison-{sweep['id']}", tags=[f"sweep:{sweep['id']}", "comparison"],
                   config={"sweep": {"id": sweep["id"], "dir": sweep["dir"]},
                           "baseline": list(result.baseline), "metrics": result.metrics},
                   output_dir=str(result.sweep_dir), mode=mode, run_id=None,
                   init_timeout=init_timeout)
    if run.run is None:
        return None
    columns, rows = comparison_rows(result)
    run.log_table("comparison/table", columns, rows)
    for family, members in plot_groups(result.metrics, result.table_metrics).items():
        bars = family_rows(result, members)
        if bars:
            run.log_bar_chart(f"comparison/{family}", ["bar", "point", "metric", "mean", "std"],
                              bars, "bar", "mean", 0)
    run.log_images([str(p) for k, p in result.paths.items() if k.startswith("png:")], 0)
    run.log_table("comparison/failed_jobs", ["job", "point", "seed", "status", "error"],
                  [[f.job_dir, f.point, f.seed, f.status, f.error[:300]] for f in result.failures])
    run.summarize({"comparison/points": len(result.rows), "comparison/failed_jobs":
                   len(result.failures), "comparison/completed_jobs": result.n_completed})
    where = run.location()
    run.finish(exit_code=0)
    return where
