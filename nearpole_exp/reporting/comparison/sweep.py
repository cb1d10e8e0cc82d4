"""Compare a sweep directory: read, aggregate and write the report files."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from nearpole_exp.reporting.comparison.aggregate import (
    ComparisonResult,
    Failure,
    aggregate,
    available_metrics,
    select_metrics,
)
from nearpole_exp.reporting.comparison.plots import plot_group, plot_groups
from nearpole_exp.reporting.comparison.read import (
    DEFAULT_EXCLUDE,
    Job,
    SweepEmptyError,
    drop_common,
    find_job_dirs,
    normalise,
    read_job,
    sweep_excludes,
)
from nearpole_exp.reporting.comparison.render import render_markdown, write_csv

#: ``baseline="auto"``: the first of these that some sweep point sets is the reference.
AUTO_BASELINES = ("sampler=uniform", "ogas/breeder=uniform")


def auto_baseline(jobs: Sequence[Job]) -> tuple[str, ...]:
    """The reference a sweep most likely means: the uniform sampler in a sampler sweep, the
    uniform design in a breeder sweep; none when no point sets either."""
    present = {normalise(o) for j in jobs for o in j.point}
    return next(((normalise(c),) for c in AUTO_BASELINES if normalise(c) in present), ())


def _tokens(spec: str | Sequence[str] | None) -> tuple[str, ...]:
    if spec is None:
        return ()
    items = [spec] if isinstance(spec, str) else [str(s) for s in spec]
    return tuple(normalise(s.strip()) for s in items if s.strip())


def _keys(spec: str | Sequence[str] | None) -> tuple[str, ...]:
    if spec is None:
        return ()
    items = spec.split(",") if isinstance(spec, str) else [str(s) for s in spec]
    return tuple(s.strip() for s in items if s.strip())


def compare_sweep(sweep_dir: str | Path, baseline: str | Sequence[str] | None = None,
                  metrics: Sequence[str] | None = None, out: str | Path | None = None, *,
                  lower_is_better: bool = True, by: str | Sequence[str] | None = None,
                  write: bool = True) -> ComparisonResult:
    """Aggregate a sweep directory and (when ``write``) write CSV, markdown and PNGs to ``out``.

    ``baseline``: override(s) such as ``"sampler=uniform"`` naming the reference point, or
    ``"auto"`` (the uniform sampler, else the uniform breeder, when a point sets it); ``by``:
    override keys splitting the report into blocks, each compared with its own baseline.
    Raises ``SweepEmptyError`` when no job directory is found.
    """
    sweep = Path(sweep_dir)
    if not sweep.is_dir():
        raise SweepEmptyError(f"{sweep} is not a directory")
    job_dirs = find_job_dirs(sweep)
    if not job_dirs:
        raise SweepEmptyError(f"no job directory (.hydra/overrides.yaml) found under {sweep}")
    exclude = (*DEFAULT_EXCLUDE, *sweep_excludes(sweep, job_dirs[0]))
    jobs = [read_job(d, sweep, exclude) for d in job_dirs]
    if any(j.kept for j in jobs):  # in a sweep, a job without overrides lost them
        jobs = [j if j.kept or j.status == "missing" else
                replace(j, status="missing", error=".hydra/overrides.yaml is empty; its sweep "
                        "point is unknown") for j in jobs]
    jobs, common = drop_common(jobs)
    notes: list[str] = []
    csv_metrics, table_metrics = select_metrics(available_metrics(jobs), metrics, notes)
    base = auto_baseline(jobs) if baseline == "auto" else _tokens(baseline)
    by_keys = _keys(by)
    rows = aggregate(jobs, csv_metrics, base, by_keys, lower_is_better, notes)
    failures = [Failure(j.rel, j.label, j.seed, j.status, j.error or "") for j in jobs
                if j.status != "completed"]
    result = ComparisonResult(sweep_dir=sweep, rows=rows, failures=failures, metrics=csv_metrics,
                              table_metrics=table_metrics, baseline=base,
                              lower_is_better=lower_is_better, by=by_keys, common=common,
                              notes=notes)
    if write:
        write_outputs(result, Path(out) if out is not None else sweep)
    return result


def write_outputs(result: ComparisonResult, out: Path) -> None:
    """Write comparison.csv, comparison.md and comparison_<group>.png into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    result.paths["csv"] = out / "comparison.csv"
    write_csv(result, result.paths["csv"])
    result.paths["md"] = out / "comparison.md"
    result.paths["md"].write_text(render_markdown(result), encoding="utf-8")
    for group, members in plot_groups(result.metrics, result.table_metrics).items():
        path = out / f"comparison_{group}.png"
        if plot_group(result, group, members, path):
            result.paths[f"png:{group}"] = path
