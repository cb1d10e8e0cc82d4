"""Statistics of a sweep over seeds, ratios and wins against a baseline.

Errors (``eval/*``, which span decades between seeds) are summarised by their geometric mean and
geometric standard deviation, so that one bad seed does not set the figure; other metrics by the
arithmetic mean and sample std (both are kept in the CSV). Time (``time/*``) is reported, not
ranked: it depends on the machine's load, not only on the method."""

from __future__ import annotations

import fnmatch
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nearpole_exp.reporting.comparison.read import Job, natural_key, override_key

NEAR_POLE_TABLE = (*(f"eval/relerr_median/B{b}" for b in range(5)), "eval/ple", "eval/mse")


SIMULATOR_TABLE = ("eval/nrmse_mean", "eval/nrmse_p99", "eval/nrmse_max")


NRMSE_STATS = ("mean", "p50", "p95", "p99", "max")


MAX_FALLBACK_COLUMNS = 8


@dataclass
class MetricStats:
    """One metric of one sweep point over seeds: the arithmetic mean ± sample std, for errors
    the geometric mean ×/÷ geometric std, and the ratio and wins against the baseline."""

    mean: float | None
    std: float | None
    n: int
    skipped: int
    gmean: float | None = None
    gsd: float | None = None
    ranked: bool = True
    ratio: float | None = None
    wins: int | None = None
    paired: int = 0

    @property
    def center(self) -> float | None:
        """What the table shows and the ratio compares: the geometric mean where there is one."""
        return self.gmean if self.gmean is not None else self.mean


@dataclass
class PointRow:
    """One sweep point (overrides without the seed) aggregated over its seeds."""

    label: str
    overrides: tuple[str, ...]
    block: str
    n: int
    n_failed: int
    n_missing: int
    seeds: list[str]
    metrics: dict[str, MetricStats]
    is_baseline: bool = False


@dataclass(frozen=True)
class Failure:
    """A job left out of the statistics: ``failed`` (status failed) or ``missing`` (no summary)."""

    job_dir: str
    point: str
    seed: str | None
    status: str
    error: str


@dataclass
class ComparisonResult:
    """Everything the report shows: rows, failures, chosen metrics, notes and written files."""

    sweep_dir: Path
    rows: list[PointRow]
    failures: list[Failure]
    metrics: list[str]
    table_metrics: list[str]
    baseline: tuple[str, ...]
    lower_is_better: bool
    by: tuple[str, ...]
    common: tuple[str, ...] = ()
    notes: list[str] = field(default_factory=list)
    paths: dict[str, Path] = field(default_factory=dict)

    @property
    def n_completed(self) -> int:
        return sum(row.n for row in self.rows)


def _is_metric_value(value: Any) -> bool:
    return value is None or (isinstance(value, (int, float)) and not isinstance(value, bool))


def available_metrics(jobs: Sequence[Job]) -> list[str]:
    """Numeric (or null) ``/``-keyed summary entries of the completed jobs, eval/* first."""
    keys = {k for j in jobs if j.status == "completed" for k, v in j.summary.items()
            if "/" in k and _is_metric_value(v)}
    return sorted(keys, key=lambda k: (not k.startswith("eval/"), not k.startswith("time/"),
                                       natural_key(k)))


def default_table_metrics(available: Sequence[str]) -> list[str]:
    """A readable subset: near-pole buckets, PLE, MSE; simulator nRMSE mean/p99/max; wall time."""
    chosen = [m for m in (*NEAR_POLE_TABLE, *SIMULATOR_TABLE) if m in available]
    if not chosen:
        chosen = [m for m in available if m.startswith("eval/") and "bucket_count" not in m]
        chosen = chosen[:MAX_FALLBACK_COLUMNS]
    if "time/wall_s" in available:
        chosen.append("time/wall_s")
    return chosen


def select_metrics(available: Sequence[str], requested: Sequence[str] | None,
                   notes: list[str]) -> tuple[list[str], list[str]]:
    """(CSV metrics, table metrics): requested names/globs in the table; eval/*, time/* in CSV."""
    csv_default = [m for m in available if m.startswith(("eval/", "time/"))]
    if not requested:
        return csv_default, default_table_metrics(available)
    table: list[str] = []
    for pattern in requested:
        matched = [m for m in available if fnmatch.fnmatchcase(m, pattern)]
        if not matched:
            notes.append(f"metric {pattern!r} is in no completed job's summary.json")
        table += [m for m in matched if m not in table]
    return table + [m for m in csv_default if m not in table], table


def _finite(value: Any) -> float | None:
    if _is_metric_value(value) and value is not None and math.isfinite(float(value)):
        return float(value)
    return None


def is_error(metric: str) -> bool:
    """Whether ``metric`` is an error summarised on a log scale (``eval/*`` but counts)."""
    return metric.startswith("eval/") and "bucket_count" not in metric


def is_ranked(metric: str) -> bool:
    """Whether ``metric`` gets ratios and wins (time is reported, not ranked)."""
    return not metric.startswith("time/")


def metric_stats(values: Sequence[Any], metric: str = "") -> MetricStats:
    """Mean and sample std (ddof=1) of the finite values, and for an error whose values are all
    positive the geometric mean and std factor; nulls/NaN/inf are skipped and counted."""
    finite = [v for v in (_finite(x) for x in values) if v is not None]
    mean = statistics.fmean(finite) if finite else None
    std = statistics.stdev(finite) if len(finite) > 1 else None
    gmean = gsd = None
    if is_error(metric) and finite and min(finite) > 0:
        logs = [math.log(v) for v in finite]
        gmean = math.exp(statistics.fmean(logs))
        gsd = math.exp(statistics.stdev(logs)) if len(logs) > 1 else None
    return MetricStats(mean=mean, std=std, n=len(finite), skipped=len(values) - len(finite),
                       gmean=gmean, gsd=gsd, ranked=is_ranked(metric))


def ratio(base: float | None, value: float | None, lower_is_better: bool) -> float | None:
    """baseline/value when lower is better, value/baseline otherwise (>1 = better than baseline)."""
    if base is None or value is None:
        return None
    num, den = (base, value) if lower_is_better else (value, base)
    if den == 0:
        return None if num == 0 else math.copysign(math.inf, num)
    return num / den


def _block_of(point: tuple[str, ...], by: Sequence[str]) -> str:
    values = {override_key(o): o.split("=", 1)[-1] for o in point}
    return ",".join(f"{k}={values.get(k, '(default)')}" for k in by)


def _by_seed(jobs: Sequence[Job], metric: str) -> dict[str, float]:
    out = {}
    for j in jobs:
        value = _finite(j.summary.get(metric))
        if j.seed is not None and value is not None:
            out[j.seed] = value
    return out


def _pick_baseline(rows: Sequence[PointRow], tokens: tuple[str, ...], where: str,
                   notes: list[str]) -> PointRow | None:
    """The one row whose overrides contain every baseline token (an exact match wins a tie)."""
    wanted = set(tokens)
    matches = [r for r in rows if wanted <= set(r.overrides)]
    exact = [r for r in matches if set(r.overrides) == wanted]
    spec = " ".join(tokens)
    if len(matches) == 1 or len(exact) == 1:
        return matches[0] if len(matches) == 1 else exact[0]
    if not matches:
        notes.append(f"baseline {spec!r} matches no sweep point{where}: no ratios")
        return None
    keys = {override_key(o) for r in matches for o in r.overrides}
    varying = sorted(keys - {override_key(t) for t in tokens})
    hint = f"; compare within groups with --by {','.join(varying)}" if varying else ""
    labels = ", ".join(r.label for r in matches)
    notes.append(f"baseline {spec!r} is ambiguous{where} ({len(matches)} points: {labels}):"
                 f" no ratios{hint}")
    return None


def _apply_baseline(rows: list[PointRow], base: PointRow, groups: dict[tuple[str, ...], list[Job]],
                    metrics: Sequence[str], lower_is_better: bool) -> None:
    base.is_baseline = True
    base_jobs = groups[base.overrides]
    for row in rows:
        jobs = groups[row.overrides]
        for m in metrics:
            st, bst = row.metrics[m], base.metrics[m]
            if not st.ranked:
                continue
            both_geometric = st.gmean is not None and bst.gmean is not None
            st.ratio = (ratio(bst.gmean, st.gmean, lower_is_better) if both_geometric
                        else ratio(bst.mean, st.mean, lower_is_better))
            if row is base:
                continue
            mine, theirs = _by_seed(jobs, m), _by_seed(base_jobs, m)
            common = sorted(set(mine) & set(theirs), key=natural_key)
            st.paired = len(common)
            if common:
                sign = 1.0 if lower_is_better else -1.0
                st.wins = sum(sign * mine[s] < sign * theirs[s] for s in common)


def aggregate(jobs: Sequence[Job], metrics: Sequence[str], baseline: tuple[str, ...],
              by: tuple[str, ...], lower_is_better: bool, notes: list[str]) -> list[PointRow]:
    """One row per sweep point (first-seen order, baseline first in its block), ratios per block."""
    groups: dict[tuple[str, ...], list[Job]] = {}
    for j in jobs:
        groups.setdefault(j.point, []).append(j)
    rows = []
    for point, members in groups.items():
        done = [j for j in members if j.status == "completed"]
        rows.append(PointRow(
            label=members[0].label, overrides=point, block=_block_of(point, by), n=len(done),
            n_failed=sum(j.status == "failed" for j in members),
            n_missing=sum(j.status == "missing" for j in members),
            seeds=[j.seed for j in done if j.seed is not None],
            metrics={m: metric_stats([j.summary.get(m) for j in done], m) for m in metrics}))
    blocks: dict[str, list[PointRow]] = {}
    for row in rows:
        blocks.setdefault(row.block, []).append(row)
    ordered = []
    for block, members in blocks.items():
        base = None
        if baseline:
            where = f" in {block}" if by else ""
            base = _pick_baseline(members, baseline, where, notes)
        if base is not None:
            if base.n == 0:
                notes.append(f"baseline {base.label!r} has no completed job: no ratios")
            _apply_baseline(members, base, groups, metrics, lower_is_better)
            members = [base, *[r for r in members if r is not base]]
        ordered += members
    return ordered
