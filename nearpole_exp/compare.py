"""Local comparison report of a Hydra multirun: per-point stats over seeds, ratios to a baseline.

``python -m nearpole_exp.compare <sweep_dir> --baseline sampler=uniform`` prints a Rich table and
writes ``comparison.csv``, ``comparison.md`` and ``comparison_<group>.png`` (to ``--out``, default
the sweep directory), for people who compare runs without a W&B account.

Statistics: a sweep point is a job's overrides without ``seed`` (and without the keys Hydra's
``override_dirname`` excludes: hydra.*, logger*, trainer.progress, ...); its seeds are replicates.
Each metric gets the mean and the *sample* standard deviation (ddof=1, empty for one seed) over
the completed seeds with a finite value. The ratio to the baseline is a ratio of those per-point
means over seeds: baseline/point when lower is better (so >1 means the point is better, like the
Melissa paper's tail ratios), point/baseline otherwise. "Wins" counts the seeds, present with a
finite value in both, where the point beats the baseline's run with the same seed.
"""

from __future__ import annotations

import argparse
import csv
import fnmatch
import json
import math
import os
import re
import statistics
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf
from rich.console import Console
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

DEFAULT_EXCLUDE = ("seed", "resume", "hydra", "logger", "trainer.progress", "trainer.device")
SKIP_DIRS = {"wandb", "checkpoints", "__pycache__"}
NEAR_POLE_TABLE = (*(f"eval/relerr_median/B{b}" for b in range(5)), "eval/ple", "eval/mse")
SIMULATOR_TABLE = ("eval/nrmse_mean", "eval/nrmse_p99", "eval/nrmse_max")
NRMSE_STATS = ("mean", "p50", "p95", "p99", "max")
MAX_FALLBACK_COLUMNS = 8
MAX_WIDTH = 240


class SweepEmptyError(FileNotFoundError):
    """The sweep directory holds no job directory (no ``.hydra/overrides.yaml`` below it)."""


@dataclass(frozen=True)
class Job:
    """One job directory: its sweep point, seed, outcome and (when completed) its summary."""

    path: Path
    rel: str
    kept: tuple[str, ...]
    point: tuple[str, ...]
    label: str
    seed: str | None
    status: str
    error: str | None
    summary: dict[str, Any]


@dataclass
class MetricStats:
    """One metric of one sweep point: mean ± sample std over seeds, ratio and wins vs baseline."""

    mean: float | None
    std: float | None
    n: int
    skipped: int
    ratio: float | None = None
    wins: int | None = None
    paired: int = 0


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


# ------------------------------------------------------------------------------------ discovery
def natural_key(text: str) -> list[Any]:
    """Sort key that orders ``job/10`` after ``job/9`` and ``B10`` after ``B9``."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text)]


def find_job_dirs(sweep_dir: Path) -> list[Path]:
    """Directories at or below ``sweep_dir`` with ``.hydra/overrides.yaml``, sorted naturally."""
    found = []
    for root, dirs, _files in os.walk(sweep_dir):
        if (Path(root) / ".hydra" / "overrides.yaml").is_file():
            found.append(Path(root))
        dirs[:] = [d for d in dirs if d not in SKIP_DIRS and not d.startswith(".")]
    return sorted(found, key=lambda p: natural_key(p.relative_to(sweep_dir).as_posix()))


def override_key(override: str) -> str:
    """The key of an override: ``+a.b=1`` → ``a.b``, ``hydra/launcher=x`` → ``hydra/launcher``."""
    return override.lstrip("+~").split("=", 1)[0]


def normalise(override: str) -> str:
    """An override without its ``+``/``++`` prefix, so ``+x=1`` and ``x=1`` name the same point."""
    return override.lstrip("+")


def is_excluded(key: str, exclude: Iterable[str]) -> bool:
    """Whether an override key is left out of the sweep point (seed, hydra.*, logger.*, ...)."""
    return any(key == ex or key.startswith((f"{ex}.", f"{ex}/")) for ex in exclude)


def _load_yaml(path: Path) -> Any:
    return OmegaConf.to_container(OmegaConf.load(path), resolve=False)


def sweep_excludes(sweep_dir: Path, first_job: Path) -> list[str]:
    """Hydra's ``override_dirname.exclude_keys`` of this sweep, so points match the W&B groups.

    Read once, from the sweep's ``multirun.yaml`` or else the first job's ``.hydra/hydra.yaml``.
    """
    for path in (sweep_dir / "multirun.yaml", first_job / ".hydra" / "hydra.yaml"):
        if not path.is_file():
            continue
        try:
            cfg = OmegaConf.load(path)
            keys = OmegaConf.select(cfg, "hydra.job.config.override_dirname.exclude_keys",
                                    default=None)
        except Exception:
            continue
        if keys is not None:
            return [str(k) for k in keys]
    return []


def _seed(job_dir: Path, overrides: list[str]) -> str | None:
    for o in overrides:
        if override_key(o) == "seed" and "=" in o:
            return o.split("=", 1)[1]
    path = job_dir / ".hydra" / "config.yaml"
    if path.is_file():
        try:
            value = OmegaConf.load(path).get("seed")
            return None if value is None else str(value)
        except Exception:
            return None
    return None


def _last_step(job_dir: Path) -> int | None:
    """The ``step`` of the last line of ``metrics.jsonl`` (read from its tail only)."""
    path = job_dir / "metrics.jsonl"
    if not path.is_file():
        return None
    with open(path, "rb") as handle:
        handle.seek(0, os.SEEK_END)
        handle.seek(max(0, handle.tell() - 65536))
        lines = handle.read().decode("utf-8", "replace").splitlines()
    for line in reversed(lines):
        try:
            return int(json.loads(line)["step"])
        except (ValueError, KeyError, TypeError):
            continue
    return None


def _outcome(job_dir: Path) -> tuple[str, str | None, dict[str, Any]]:
    """(status, error line, summary) of a job: completed, failed, or missing (incomplete)."""
    path = job_dir / "summary.json"
    if not path.is_file():
        step = _last_step(job_dir)
        where = "no metrics logged" if step is None else f"last logged step {step}"
        return "missing", f"no summary.json ({where})", {}
    try:
        summary = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        return "failed", f"unreadable summary.json: {err}", {}
    if not isinstance(summary, dict):
        return "failed", "summary.json is not a JSON object", {}
    status = summary.get("status")
    if status == "completed":
        return "completed", None, summary
    if status == "failed":
        error = str(summary.get("error") or "status failed, no error recorded")
        return "failed", (error.strip().splitlines() or [""])[0], summary
    return "missing", f"summary.json has status {status!r}", summary


def read_job(job_dir: Path, sweep_dir: Path, exclude: Iterable[str] = DEFAULT_EXCLUDE) -> Job:
    """Read one job directory: overrides → sweep point and seed, summary.json → outcome."""
    raw = _load_yaml(job_dir / ".hydra" / "overrides.yaml") or []
    overrides = [str(o) for o in raw]
    kept = [normalise(o) for o in overrides if not is_excluded(override_key(o), exclude)]
    status, error, summary = _outcome(job_dir)
    rel = job_dir.relative_to(sweep_dir).as_posix()
    return Job(path=job_dir, rel=rel or ".", kept=tuple(kept), point=tuple(sorted(kept)),
               label=",".join(kept) or "(defaults)", seed=_seed(job_dir, overrides),
               status=status, error=error, summary=summary)


def drop_common(jobs: Sequence[Job]) -> tuple[list[Job], tuple[str, ...]]:
    """Labels without the overrides every sweep point shares (e.g. ``debug=default``)."""
    if len({j.point for j in jobs}) < 2:
        return list(jobs), ()
    common = set.intersection(*(set(j.point) for j in jobs))
    relabelled = [replace(j, label=",".join(o for o in j.kept if o not in common) or "(common)")
                  for j in jobs]
    return relabelled, tuple(o for o in jobs[0].kept if o in common)


# ------------------------------------------------------------------------------------ metrics
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


def metric_stats(values: Sequence[Any]) -> MetricStats:
    """Mean and sample std (ddof=1) of the finite values; nulls/NaN/inf are skipped and counted."""
    finite = [v for v in (_finite(x) for x in values) if v is not None]
    mean = statistics.fmean(finite) if finite else None
    std = statistics.stdev(finite) if len(finite) > 1 else None
    return MetricStats(mean=mean, std=std, n=len(finite), skipped=len(values) - len(finite))


def ratio(base: float | None, value: float | None, lower_is_better: bool) -> float | None:
    """baseline/value when lower is better, value/baseline otherwise (>1 = better than baseline)."""
    if base is None or value is None:
        return None
    num, den = (base, value) if lower_is_better else (value, base)
    if den == 0:
        return None if num == 0 else math.copysign(math.inf, num)
    return num / den


# ------------------------------------------------------------------------------------ aggregation
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
            st.ratio = ratio(bst.mean, st.mean, lower_is_better)
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
            metrics={m: metric_stats([j.summary.get(m) for j in done]) for m in metrics}))
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


# ------------------------------------------------------------------------------------ rendering
def fmt(value: float | None) -> str:
    """Three significant digits; an em dash for a missing value."""
    if value is None:
        return "—"
    if math.isinf(value):
        return "∞" if value > 0 else "-∞"
    return f"{value:.3g}"


def short_name(metric: str) -> str:
    """A column header: the metric name without its ``eval/`` prefix."""
    return metric.removeprefix("eval/")


def _mean_std(st: MetricStats, n: int) -> str:
    if st.n == 0:
        return "—"
    text = fmt(st.mean) if st.std is None else f"{fmt(st.mean)} ± {fmt(st.std)}"
    return text + (f" (n={st.n})" if st.n < n else "")


def _ratio_text(st: MetricStats, row: PointRow) -> str:
    if row.is_baseline or st.ratio is None:
        return ""
    wins = f" ({st.wins}/{st.paired})" if st.wins is not None else ""
    return f"×{fmt(st.ratio)}{wins}"


def _caption(result: ComparisonResult) -> str:
    sense = "baseline/point" if result.lower_is_better else "point/baseline"
    return (f"mean ± sample std (n−1) over seeds; n = completed/all jobs;"
            f" ×ratio = {sense} of the means (>1 better), (wins/paired seeds)")


def render_table(result: ComparisonResult) -> Table:
    """The Rich table: one row per sweep point, per metric "mean ± std" over "×ratio (wins)"."""
    common = f" (all with {','.join(result.common)})" if result.common else ""
    table = Table(title=f"sweep comparison: {result.sweep_dir}{common}", caption=_caption(result),
                  show_lines=True)
    table.add_column("point", style="cyan", overflow="fold")
    table.add_column("n", justify="right")
    for m in result.table_metrics:
        table.add_column(short_name(m), justify="right", overflow="fold")
    block = None
    for row in result.rows:
        if result.by and row.block != block:
            if block is not None:
                table.add_section()
            block = row.block
        label = Text(row.label)
        if row.is_baseline:
            label.append(" (baseline)", style="bold")
        cells: list[Text | str] = [label, f"{row.n}/{row.n + row.n_failed + row.n_missing}"]
        for m in result.table_metrics:
            st = row.metrics[m]
            cell = Text(_mean_std(st, row.n))
            tail = _ratio_text(st, row)
            if tail:
                good = st.ratio is not None and st.ratio > 1
                cell.append("\n" + tail, style="green" if good else "red")
            cells.append(cell)
        table.add_row(*cells)
    return table


def render_markdown(result: ComparisonResult) -> str:
    """A GitHub-flavoured markdown table (plus notes and failures) to paste into a README."""
    head = ["point", "n", *(short_name(m) for m in result.table_metrics)]
    common = f" (all with `{','.join(result.common)}`)" if result.common else ""
    lines = [f"Sweep `{result.sweep_dir}`{common}: {_caption(result)}.", "",
             "| " + " | ".join(head) + " |",
             "|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|"]
    for row in result.rows:
        cells = [row.label.replace("|", "\\|") + (" **(baseline)**" if row.is_baseline else ""),
                 f"{row.n}/{row.n + row.n_failed + row.n_missing}"]
        for m in result.table_metrics:
            st = row.metrics[m]
            tail = _ratio_text(st, row)
            cells.append(_mean_std(st, row.n) + (f" {tail}" if tail else ""))
        lines.append("| " + " | ".join(cells) + " |")
    lines += [""] + [f"- note: {n}" for n in result.notes]
    lines += [f"- {f.status}: `{f.job_dir}` ({f.point}, seed {f.seed}): {f.error}"
              for f in result.failures]
    return "\n".join(lines).rstrip() + "\n"


def write_csv(result: ComparisonResult, path: Path) -> None:
    """One row per sweep point: point, n, failures, then mean/std/n/ratio/wins/paired per metric."""
    stats = ("mean", "std", "n", "ratio", "wins", "paired")
    head = ["block"] if result.by else []
    head += ["point", "n", "n_failed", "n_missing", "is_baseline"]
    head += [f"{m}/{s}" for m in result.metrics for s in stats]
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(head)
        for row in result.rows:
            out: list[Any] = [row.block] if result.by else []
            out += [row.label, row.n, row.n_failed, row.n_missing, int(row.is_baseline)]
            for m in result.metrics:
                st = row.metrics[m]
                out += ["" if v is None else v for v in (st.mean, st.std, st.n, st.ratio, st.wins)]
                out.append(st.paired if st.wins is not None else "")
            writer.writerow(out)


# ------------------------------------------------------------------------------------ plots
def plot_groups(metrics: Sequence[str], table_metrics: Sequence[str]) -> dict[str, list[str]]:
    """Charts to draw: bucket families (``…/B0``…), nRMSE stats, and the other table metrics."""
    groups: dict[str, list[str]] = {}
    for m in metrics:
        bucket = re.fullmatch(r"(.+)/B\d+", m)
        if bucket and "bucket_count" not in m:
            groups.setdefault(bucket.group(1).rsplit("/", 1)[-1], []).append(m)
    nrmse = [f"eval/nrmse_{s}" for s in NRMSE_STATS if f"eval/nrmse_{s}" in metrics]
    if nrmse:
        groups["nrmse"] = nrmse
    groups = {g: ms for g, ms in groups.items() if set(ms) & set(table_metrics)}
    grouped = {m for ms in groups.values() for m in ms}
    scalars = [m for m in table_metrics if m not in grouped]
    if scalars:
        groups["scalars"] = scalars
    return groups


def _log_scale(values: Iterable[float]) -> bool:
    vals = [v for v in values if v is not None and math.isfinite(v)]
    return bool(vals) and min(vals) > 0 and max(vals) / min(vals) >= 10


def _bars(ax: Any, rows: Sequence[PointRow], metrics: Sequence[str], labels: Sequence[str],
          colours: Sequence[Any], log: bool) -> None:
    width = 0.8 / max(len(rows), 1)
    for i, row in enumerate(rows):
        means = [row.metrics[m].mean for m in metrics]
        heights = [0.0 if v is None else v for v in means]
        stds = [row.metrics[m].std or 0.0 for m in metrics]
        # on a log axis a bar's lower error bar must stay above zero
        lower = [min(s, 0.9 * h) if log and h > 0 else s
                 for s, h in zip(stds, heights, strict=True)]
        xs = [k + (i - (len(rows) - 1) / 2) * width for k in range(len(metrics))]
        ax.bar(xs, heights, width, yerr=[lower, stds], capsize=2, color=colours[i], label=row.label)
    ax.set_xticks(range(len(metrics)), labels)
    if log:
        ax.set_yscale("log")
    ax.grid(axis="y", alpha=0.3, which="both")


def plot_group(result: ComparisonResult, group: str, metrics: Sequence[str], path: Path) -> bool:
    """One grouped bar chart (bars = sweep points, error bars = sample std); False if empty."""
    from matplotlib import colormaps
    from matplotlib.figure import Figure

    rows = [r for r in result.rows if any(r.metrics[m].mean is not None for m in metrics)]
    if not rows:
        return False
    cmap = colormaps["tab10" if len(rows) <= 10 else "tab20"]
    colours = [cmap(i % cmap.N) for i in range(len(rows))]
    if group == "scalars":
        fig = Figure(figsize=(min(4 * len(metrics), 16), 3.8 + 0.25 * len(rows)))
        axes = fig.subplots(1, len(metrics), squeeze=False)[0]
        for ax, m in zip(axes, metrics, strict=True):
            _bars(ax, rows, [m], [short_name(m)], colours,
                  _log_scale(r.metrics[m].mean for r in rows))
    else:
        fig = Figure(figsize=(min(3 + 0.35 * len(metrics) * len(rows), 16), 3.8 + 0.25 * len(rows)))
        ax = fig.subplots()
        labels = [m.rsplit("/", 1)[-1].removeprefix("nrmse_") for m in metrics]
        _bars(ax, rows, metrics, labels, colours,
              _log_scale(r.metrics[m].mean for r in rows for m in metrics))
        ax.set_ylabel(group)
    fig.suptitle(f"{group}: mean ± sample std over seeds")
    handles, labels = fig.axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncols=min(len(rows), 3), fontsize=8,
               frameon=False)
    fig.tight_layout(rect=(0, 0.06 + 0.06 * math.ceil(len(rows) / 3), 1, 1))
    fig.savefig(path, dpi=90)
    return True


# ------------------------------------------------------------------------------------ API
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

    ``baseline``: override(s) such as ``"sampler=uniform"`` naming the reference point; ``by``:
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
    jobs, common = drop_common(jobs)
    notes: list[str] = []
    csv_metrics, table_metrics = select_metrics(available_metrics(jobs), metrics, notes)
    base, by_keys = _tokens(baseline), _keys(by)
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


def print_comparison(result: ComparisonResult, console: Console | None = None) -> None:
    """Print the table, the notes, the failed/missing jobs and where the files went."""
    con = console or Console()
    table = render_table(result)
    if not con.is_terminal:  # pipes, CI and log files: as wide as the table, not rich's 80 columns
        width = Measurement.get(con, con.options.update_width(MAX_WIDTH), table).maximum
        con = Console(file=con.file, width=max(con.width, min(width, MAX_WIDTH)))
    con.print(table)
    for note in result.notes:
        con.print(Text.assemble(("note: ", "yellow"), note))
    for f in result.failures:
        where = f" {f.job_dir} ({f.point}, seed {f.seed}): {f.error}"
        con.print(Text.assemble((f.status, "red"), where))
    if result.paths:
        con.print(Text("written: " + ", ".join(str(p) for p in result.paths.values())))


# ------------------------------------------------------------------------------------ CLI
def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m nearpole_exp.compare",
        description="Compare the sweep points of a Hydra multirun (mean ± std over seeds, ratios).")
    parser.add_argument("sweep_dir", type=Path, help="the multirun directory (hydra.sweep.dir)")
    parser.add_argument("--baseline", nargs="+", metavar="KEY=VALUE",
                        help="override(s) naming the reference point, e.g. sampler=uniform")
    parser.add_argument("--metrics", nargs="+", metavar="NAME",
                        help="metrics (or globs such as 'eval/relerr_median/*') for the table")
    parser.add_argument("--out", type=Path, help="output directory (default: the sweep directory)")
    parser.add_argument("--lower-is-better", action=argparse.BooleanOptionalAction, default=True,
                        help="direction of the metrics for ratios and wins (default: lower)")
    parser.add_argument("--by", metavar="KEY1,KEY2",
                        help="split into blocks by these override keys, one baseline per block")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """CLI: 0 when at least one job completed, 1 when none did, 2 for an empty or absent sweep."""
    args = parse_args(argv)
    con = Console()
    try:
        result = compare_sweep(args.sweep_dir, baseline=args.baseline, metrics=args.metrics,
                               out=args.out, lower_is_better=args.lower_is_better, by=args.by)
    except SweepEmptyError as err:
        con.print(Text.assemble(("nothing to compare: ", "red"), str(err)))
        return 2
    print_comparison(result, con)
    if result.n_completed == 0:
        con.print(Text.assemble(("no job completed", "red"), ": nothing to aggregate"))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
