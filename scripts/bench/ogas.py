"""OGAS benchmark: static uniform, Sobol, Breed and OGAS at equal simulation budget and equal
gradient steps, on burgers1d, ks1d and the landscapes, over seeds; plus cost and pole checks.

Jobs run through the real entry point, one Hydra multirun per problem::

    python -m nearpole_exp -m experiment=burgers ogas/breeder=uniform,sobol,breed,ogas seed=0,1,2 \
        hydra.sweep.dir=<root>/burgers logger=none trainer.progress=false

(``--jobs N`` runs the same jobs as N parallel single-job multiruns into the same sweep
directory, with ``hydra.sweep.subdir=<breeder>_s<seed>``). Each sweep is aggregated with
``nearpole_exp.reporting.comparison.compare_sweep`` (baseline ``ogas/breeder=uniform``) and the
markdown report goes to ``--out`` (default ``benchmarks/ogas.md``). Ratios are uniform/method,
so > 1 is better: "ratio of means" divides the seed means, "per-seed" is the mean ± std over
seeds of the ratio of the runs with the same seed.

    python scripts/bench/ogas.py --jobs 2              # the whole benchmark
    python scripts/bench/ogas.py --skip-runs           # re-aggregate existing sweeps
    python scripts/bench/ogas.py --cost --pole --no-bench   # only the cost and pole sections
    python scripts/bench/ogas.py --quick               # a smoke run (landscape, one seed, short)
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import torch
from common import ROOT, machine_line, today

PROBLEMS = ("burgers", "ks", "landscape", "landscape_multi")
PDE_PROBLEMS = ("burgers", "ks")
BREEDERS = ("uniform", "sobol", "breed", "ogas")
STATS = ("max", "p99", "std", "mean")
TARGETS = {"max": 1.64, "p99": 1.42, "mean": 1.0}
PAPER = {"max": 1.64, "p99": 1.42, "std": 1.66, "mean": 0.97}
COMMON = ("logger=none", "trainer.progress=false", "trainer.plots=false")


# --------------------------------------------------------------------------- jobs
def job_command(problem: str, breeders: Sequence[str], seeds: Sequence[int], sweep: Path,
                extra: Sequence[str], subdir: str | None = None) -> list[str]:
    """The ``python -m nearpole_exp -m ...`` command of one multirun."""
    cmd = [sys.executable, "-m", "nearpole_exp", "-m", f"experiment={problem}",
           f"ogas/breeder={','.join(breeders)}", f"seed={','.join(map(str, seeds))}",
           f"hydra.sweep.dir={sweep}", *COMMON, *extra]
    if subdir is not None:
        cmd.append(f"hydra.sweep.subdir={subdir}")
    return cmd


def run_logged(cmd: list[str], log: Path) -> int:
    """Run ``cmd`` from the repository root with its output in ``log``; return the exit code."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as fh:
        return subprocess.call(cmd, cwd=ROOT, stdout=fh, stderr=subprocess.STDOUT)


def run_problems(problems: Sequence[str], args: argparse.Namespace,
                 extra: Sequence[str]) -> float:
    """All breeders × seeds of ``problems`` into ``<root>/<problem>``; returns the wall time.

    With ``--jobs N`` every job of every problem shares one pool of N workers, so a many-core
    machine stays busy across problems instead of draining the pool at each problem's end.
    """
    start = time.perf_counter()
    if args.jobs <= 1:
        for problem in problems:
            cmd = job_command(problem, args.breeders, args.seeds, args.root / problem, extra)
            print(" ".join(cmd[2:]), flush=True)
            run_logged(cmd, args.root / f"{problem}.log")
        return time.perf_counter() - start
    todo = [(p, b, s) for p in problems for s in args.seeds for b in args.breeders]
    with ThreadPoolExecutor(args.jobs) as pool:
        list(pool.map(lambda pbs: run_logged(
            job_command(pbs[0], [pbs[1]], [pbs[2]], args.root / pbs[0], extra,
                        f"{pbs[1]}_s{pbs[2]}"),
            args.root / f"{pbs[0]}_{pbs[1]}_s{pbs[2]}.log"), todo))
    return time.perf_counter() - start


# --------------------------------------------------------------------------- aggregation
def fmt(x: float | None, digits: int = 3) -> str:
    if x is None or not math.isfinite(x):
        return "—"
    return f"{x:.{digits}g}"


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    vals = [v for v in values if v is not None and math.isfinite(v)]
    if not vals:
        return float("nan"), float("nan")
    return statistics.fmean(vals), (statistics.stdev(vals) if len(vals) > 1 else 0.0)


def per_seed(sweep: Path) -> dict[str, dict[str, dict[str, Any]]]:
    """{breeder: {seed: summary}} of the completed jobs of a sweep directory."""
    from nearpole_exp.reporting.comparison import DEFAULT_EXCLUDE, find_job_dirs, read_job, sweep_excludes

    dirs = find_job_dirs(sweep)
    exclude = (*DEFAULT_EXCLUDE, *sweep_excludes(sweep, dirs[0])) if dirs else DEFAULT_EXCLUDE
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for d in dirs:
        job = read_job(d, sweep, exclude)
        if job.status != "completed":
            continue
        breeder = next((o.split("=", 1)[1] for o in job.point if o.startswith("ogas/breeder=")),
                       "uniform")
        out.setdefault(breeder, {})[str(job.seed)] = job.summary
    return out


def problem_section(problem: str, sweep: Path) -> tuple[list[str], dict[str, dict[str, float]]]:
    """Markdown for one problem and the per-seed ratio means {breeder: {stat: ratio}}."""
    from nearpole_exp.reporting.comparison import compare_sweep

    result = compare_sweep(sweep, baseline="ogas/breeder=uniform",
                           metrics=[f"eval/nrmse_{s}" for s in STATS] + ["time/*", "breeder/*"])
    runs = per_seed(sweep)
    base = runs.get("uniform", {})
    lines = [f"### {problem}", "", f"Sweep `{sweep}`; {len(result.failures)} failed or missing "
             "job(s).", "",
             "Ratios uniform/method (> 1 better): ratio of seed means, then per-seed mean ± std "
             "[min, max].", "",
             "| breeder | seeds | " + " | ".join(f"{s} ratio" for s in STATS) + " |",
             "|---|---|" + "---|" * len(STATS)]
    summary: dict[str, dict[str, float]] = {}
    for row in result.rows:
        breeder = next((o.split("=", 1)[1] for o in row.overrides if o.startswith("ogas/breeder=")),
                       None)
        if breeder is None:
            continue
        seeds = runs.get(breeder, {})
        cells, summary[breeder] = [], {}
        for stat in STATS:
            key = f"eval/nrmse_{stat}"
            ratios = [base[s][key] / seeds[s][key] for s in seeds
                      if s in base and seeds[s].get(key) and base[s].get(key)]
            m, sd = mean_std(ratios)
            summary[breeder][stat] = m
            of_means = row.metrics[key].ratio if key in row.metrics else None
            span = f" [{fmt(min(ratios))}, {fmt(max(ratios))}]" if ratios else ""
            cells.append(f"**{fmt(of_means)}**; {fmt(m)} ± {fmt(sd, 2)}{span}")
        lines.append(f"| {breeder} | {len(seeds)} | " + " | ".join(cells) + " |")
    lines += ["", "Absolute per-trajectory nRMSE (mean ± std over seeds), wall time per job and "
              "time inside the breeder (ask/tell, incl. waiting for the DDPM):", "",
              "| breeder | " + " | ".join(STATS) + " | wall s/job | breeder s/job | DDPM steps |",
              "|---|" + "---|" * (len(STATS) + 3)]
    for breeder, seeds in runs.items():
        cells = []
        for key in [f"eval/nrmse_{s}" for s in STATS] + ["time/wall_s", "time/breeder_s",
                                                         "breeder/train_steps"]:
            m, sd = mean_std([v.get(key, float("nan")) for v in seeds.values()])
            cells.append(f"{fmt(m)} ± {fmt(sd, 2)}" if math.isfinite(m) else "—")
        lines.append(f"| {breeder} | " + " | ".join(cells) + " |")
    lines += placement_table(runs)
    for breeder, seeds in runs.items():
        wall, base_wall = mean_std([v.get("time/wall_s", float("nan")) for v in seeds.values()]), \
            mean_std([v.get("time/wall_s", float("nan")) for v in base.values()])
        summary.setdefault(breeder, {})["wall"] = wall[0] / base_wall[0] if base else float("nan")
    return [*lines, ""], summary


PLACEMENT = (("placement_bred/hard_mass", "bred hard mass"), ("placement_bred/tv", "bred TV"),
             ("placement_bred/hard_tv", "bred TV inside"), ("placement/hard_mass", "all hard mass"),
             ("placement/regions_found", "regions found"))


def placement_table(runs: dict[str, dict[str, dict[str, Any]]]) -> list[str]:
    """Where the points went against the ideal tilted density (problems that know it): means
    over generations ≥ 1 and seeds, with the ideal's hard mass and the TV noise floor."""
    rows = [(b, seeds) for b, seeds in runs.items()
            if any("placement/hard_mass" in v for v in seeds.values())]
    if not rows:
        return []
    first = next(iter(rows[0][1].values()))
    regions = sorted(k.rsplit("/", 1)[1] for k in first if k.startswith("placement/region_mass/"))
    head = [label for _, label in PLACEMENT] + [f"region {r} mass" for r in regions]
    lines = ["", "Placement against the ideal tilted density p* (mean over generations ≥ 1, "
             f"then mean ± std over seeds; ideal hard mass {fmt(first['placement/ideal_hard_mass'])}"
             f", TV floor of a generation's bred points ≈ {fmt(first.get('placement_bred/tv_floor'))}; "
             "region masses of all points, ideal "
             + ", ".join(fmt(first.get(f"placement/ideal_region_mass/{r}")) for r in regions)
             + "):", "",
             "| breeder | " + " | ".join(head) + " |", "|---|" + "---|" * len(head)]
    for breeder, seeds in rows:
        keys = [k for k, _ in PLACEMENT] + [f"placement/region_mass/{r}" for r in regions]
        cells = []
        for key in keys:
            m, sd = mean_std([v.get(key, float("nan")) for v in seeds.values()])
            cells.append(f"{fmt(m)} ± {fmt(sd, 2)}" if math.isfinite(m) else "—")
        lines.append(f"| {breeder} | " + " | ".join(cells) + " |")
    return lines


def verdict(label: str, ratios: dict[str, float], breed: dict[str, float] | None = None) -> str:
    """One line: OGAS's ratios (``ratios[stat]``) against the targets, against Breed's max and
    p99 ratios where given, and its wall time against uniform's."""
    parts = []
    for stat, target in TARGETS.items():
        value = ratios.get(stat, float("nan"))
        ok = "met" if value >= target else "NOT met"
        parts.append(f"{stat} {fmt(value)} (target ≥ {target}: {ok})")
    for stat in ("max", "p99") if breed else ():
        ok = "met" if ratios.get(stat, float("nan")) >= breed.get(stat, float("nan")) else "NOT met"
        parts.append(f"{stat} vs Breed's {fmt(breed.get(stat))} ({ok})")
    if "wall" in ratios:
        ok = "met" if ratios["wall"] <= 1.2 else "NOT met"
        parts.append(f"wall {fmt(ratios['wall'])}× uniform's in this sweep's concurrent jobs "
                     f"(target ≤ 1.2: {ok}; the clean reading is --cost --wall's)")
    return f"- **{label}**: " + "; ".join(parts)


def across_problems(summaries: list[dict[str, dict[str, float]]]) -> dict[str, float]:
    """OGAS's per-problem ratios averaged over the PDE problems (the paper's headline is such an
    average, over 9 PDE × architecture pairs)."""
    return {stat: statistics.fmean([s.get("ogas", {}).get(stat, float("nan")) for s in summaries])
            for stat in TARGETS}


# --------------------------------------------------------------------------- cost
def compose(overrides: list[str]) -> Any:
    """The packaged config composed with ``overrides`` (no Hydra run)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_module
    from hydra.core.global_hydra import GlobalHydra

    import nearpole_exp.app  # noqa: F401  (registers the schemas)

    GlobalHydra.instance().clear()
    with initialize_config_module("nearpole_exp.conf", version_base="1.3"):
        return hydra_compose("config", overrides=overrides)


def breeder_costs(n_params: int = 1000, repeats: int = 5) -> list[str]:
    """Time of a generation of ``n_params`` points and DDPM training steps/s of the configured OGAS
    breeder (burgers1d box) on one CPU thread, after 400 training steps on a filled reservoir."""
    from hydra.utils import instantiate

    from nearpole_exp.build import build_breeder
    from nearpole_exp.rng import seed_everything

    torch.set_num_threads(1)
    seed_everything(0)
    cfg = compose(["experiment=burgers", "ogas/breeder=ogas", "ogas.breeder.synchronous=true",
                   "ogas.breeder.train_steps_per_ask=0"])
    problem = instantiate(cfg.problem, _convert_="all")
    breeder = build_breeder(cfg.ogas, problem.bounds)
    gen = torch.Generator().manual_seed(0)
    for n in (64, 256, 256, 256):
        breeder.ask(n)
        ids = torch.arange(breeder.n_asked)
        breeder.tell(ids, torch.rand(len(ids), generator=gen))
    start = time.perf_counter()
    steps = breeder.train_now(400)
    steps_per_s = steps / (time.perf_counter() - start)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        breeder.next_generation(n_params)
        times.append(time.perf_counter() - start)
    ratio, by_ddpm = breeder.stats["ratio"], 1.0 - breeder.stats["local_share"]
    m = cfg.ogas.model
    sampling = (f"DDIM {m.sample_steps} steps" if m.sampler == "ddim"
                else f"ancestral, {m.timesteps} steps")
    return [f"- `next_generation({n_params})` on the CPU (1 thread; {ratio:.0%} bred, "
            f"{by_ddpm:.0%} of them by the DDPM, {sampling}, guidance {m.guidance_scale}): median "
            f"{statistics.median(times):.3f} s, max {max(times):.3f} s over {repeats} calls "
            f"(target < 1 s).",
            f"- DDPM + ratio-MLP training: {steps_per_s:.0f} steps/s on one CPU thread "
            f"(batch {cfg.ogas.data.batch_size}, model_dim {cfg.ogas.model.model_dim}, "
            f"depth {cfg.ogas.model.depth})."]


def wall_costs(root: Path, extra: Sequence[str] = (), problem: str = "burgers") -> list[str]:
    """Wall time of one OGAS and one uniform job (seed 0) on two cores, trainer.num_threads 0
    (torch default) and 1, run one after another (pinned to cores 0-1 when more exist); ``ogas.*``
    overrides go to the OGAS job only."""
    pin = ["taskset", "-c", "0,1"] if (os.cpu_count() or 1) > 2 and shutil.which("taskset") else []
    rows = ["| trainer.num_threads | uniform wall s | OGAS wall s | OGAS / uniform | "
            "OGAS breeder s |", "|---|---|---|---|---|"]
    walls: dict[tuple[str, int], float] = {}
    for threads in (0, 1):
        cells = {}
        for breeder in ("uniform", "ogas"):
            out = root / "cost" / f"{problem}_{breeder}_t{threads}"
            shutil.rmtree(out, ignore_errors=True)
            cmd = [*pin, sys.executable, "-m", "nearpole_exp", f"experiment={problem}",
                   f"ogas/breeder={breeder}", "seed=0", f"trainer.num_threads={threads}",
                   "trainer.device=cpu", f"hydra.run.dir={out}", *COMMON,
                   *(o for o in extra if breeder == "ogas" or not o.startswith("ogas."))]
            run_logged(cmd, root / "cost" / f"{problem}_{breeder}_t{threads}.log")
            summary = json.loads((out / "summary.json").read_text())
            cells[breeder] = summary
            walls[(breeder, threads)] = summary["time/wall_s"]
        u, o = cells["uniform"]["time/wall_s"], cells["ogas"]["time/wall_s"]
        rows.append(f"| {threads} | {u:.1f} | {o:.1f} | {o / u:.2f} | "
                    f"{cells['ogas']['time/breeder_s']:.1f} |")
    best_u = min(walls[("uniform", 0)], walls[("uniform", 1)])
    best_o = min(walls[("ogas", 0)], walls[("ogas", 1)])
    pinned = "pinned to cores 0-1 with taskset" if pin else "on this machine's cores"
    return [f"Wall time of one {problem} job (seed 0), {pinned}, jobs run one after another:", "",
            *rows, "", f"Best OGAS / best uniform: {best_o / best_u:.2f} (target ≤ 1.2)."]


# --------------------------------------------------------------------------- near-pole problems
def pole_concentration(root: Path, problem: str = "rational1d", radius: float = 1e-2) -> list[str]:
    """OGAS on a pole problem with the per-sample loss as its only signal: the share of its bred
    points within ``radius`` of a pole, against a uniform draw's share."""
    overrides = [f"problem={problem}", "model=mlp", "trainer.initial_points=256",
                 "trainer.points_per_round=128", "trainer.rounds=10", "trainer.steps_per_round=200",
                 "trainer.eval_every=10", "trainer.device=cpu", "trainer.num_threads=1"]
    lines = [f"OGAS on `{problem}` (`{' '.join(overrides)}`, loss `relative` as the only "
             f"signal; the breeder never sees Q). Share of points within {radius:g} of a pole:",
             "", "| seed | OGAS bred points | all OGAS points | uniform expectation | "
             "bred / uniform | eval/relerr_median/B3 OGAS vs uniform |", "|---|---|---|---|---|---|"]
    for seed in (0, 1):
        runs = {}
        for breeder in ("uniform", "ogas"):
            out = root / "pole" / f"{breeder}_s{seed}"
            shutil.rmtree(out, ignore_errors=True)
            cmd = [sys.executable, "-m", "nearpole_exp", f"ogas/breeder={breeder}",
                   f"seed={seed}", *overrides, f"hydra.run.dir={out}", *COMMON]
            run_logged(cmd, root / "pole" / f"{breeder}_s{seed}.log")
            runs[breeder] = out
        state = torch.load(runs["ogas"] / "checkpoints" / "last.pt", weights_only=True)
        history = state["breeder"]["history"]
        bounds = state["breeder"]["bounds"]
        params = bounds[:, 0] + history["unit"] * (bounds[:, 1] - bounds[:, 0])
        prob = pole_problem(problem)
        near = prob.distance(params) < radius
        n_poles = len(prob.poles())
        bred = history["is_bred"]
        width = float(bounds[0, 1] - bounds[0, 0])
        expect = min(1.0, 2 * radius * n_poles / width)
        share_bred = float(near[bred].float().mean()) if bool(bred.any()) else float("nan")
        b3 = [json.loads((runs[b] / "summary.json").read_text()).get("eval/relerr_median/B3")
              for b in ("ogas", "uniform")]
        lines.append(f"| {seed} | {share_bred:.3f} ({int(bred.sum())} pts) | "
                     f"{float(near.float().mean()):.3f} | {expect:.3f} | "
                     f"{share_bred / expect:.1f}× | {fmt(b3[0])} vs {fmt(b3[1])} |")
    return lines


def pole_problem(problem: str) -> Any:
    """The configured pole problem (for its distance to the nearest pole and its poles)."""
    from hydra.utils import instantiate

    return instantiate(compose([f"problem={problem}"]).problem, _convert_="all")


# --------------------------------------------------------------------------- report
def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--problems", nargs="+", default=list(PROBLEMS))
    p.add_argument("--breeders", nargs="+", default=list(BREEDERS))
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--jobs", type=int, default=1, help="parallel single-job multiruns (1: one "
                   "multirun per problem)")
    p.add_argument("--threads", type=int, default=1, help="trainer.num_threads of every job")
    p.add_argument("--root", type=Path, default=ROOT / "outputs" / "bench_ogas")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "ogas.md")
    p.add_argument("--override", nargs="*", default=[], help="extra overrides for every job")
    p.add_argument("--skip-runs", action="store_true", help="aggregate existing sweeps only")
    p.add_argument("--no-bench", action="store_true", help="skip the breeder comparison")
    p.add_argument("--cost", action="store_true", help="measure the cost section")
    p.add_argument("--wall", action="store_true",
                   help="with --cost: time one uniform and one OGAS job per problem, one after another")
    p.add_argument("--pole", action="store_true", help="run the near-pole concentration check")
    p.add_argument("--notes", type=Path, help="markdown appended to the report (e.g. numbers "
                   "measured on another machine)")
    p.add_argument("--quick", action="store_true",
                   help="a smoke run: the landscape, uniform and OGAS, one seed, 3 short rounds")
    args = p.parse_args(argv)
    if args.quick:
        args.problems, args.breeders, args.seeds = ["landscape"], ["uniform", "ogas"], [0]
        args.override = [*args.override, "trainer.rounds=3", "trainer.steps_per_round=30"]
    args.root = args.root.resolve()
    extra = [f"trainer.num_threads={args.threads}", "trainer.device=cpu", *args.override]
    lines = ["# OGAS benchmark", "", f"Date: {today()}. Machine: {machine_line()}.", "",
             "Command: `python scripts/bench/ogas.py " + " ".join(
                 sys.argv[1:] if argv is None else argv) + "`", ""]
    if not args.no_bench:
        lines += ["Every job: `python -m nearpole_exp -m experiment=<problem> "
                  f"ogas/breeder={','.join(args.breeders)} seed={','.join(map(str, args.seeds))} "
                  f"hydra.sweep.dir={args.root}/<problem> {' '.join(COMMON)} {' '.join(extra)}`"
                  + (f" (as {args.jobs} parallel single-job multiruns)" if args.jobs > 1 else ""),
                  "", "Equal budget: every breeder labels initial_points + (rounds − 1) · "
                  "points_per_round simulations and runs rounds · steps_per_round gradient "
                  "steps (trainer=online and the experiment presets).", ""]
        verdicts, sections, summaries = [], [], []
        if not args.skip_runs:
            wall = run_problems(args.problems, args, extra)
            print(f"{' '.join(args.problems)}: {wall:.0f} s", flush=True)
        for problem in args.problems:
            section, summary = problem_section(problem, args.root / problem)
            sections += section
            verdicts.append(verdict(problem, summary.get("ogas", {}), summary.get("breed")))
            if problem in PDE_PROBLEMS:
                summaries.append(summary)
        if len(summaries) > 1:
            verdicts.append(verdict(f"average over the {len(summaries)} PDE problems",
                                    across_problems(summaries)))
        lines += ["## Verdict (OGAS, per-seed mean ratios)", "", *verdicts,
                  f"- Melissa paper (OGAS-Loss, 9 PDE × architecture pairs): max {PAPER['max']}, "
                  f"p99 {PAPER['p99']}, std {PAPER['std']}, mean {PAPER['mean']}.", "",
                  "## Per problem", "", *sections]
    if args.cost:
        lines += ["## Cost", "", *breeder_costs(), ""]
        if args.wall:
            for problem in args.problems:
                lines += [*wall_costs(args.root, args.override, problem), ""]
    if args.pole:
        lines += ["## OGAS on a near-pole problem", "", *pole_concentration(args.root), ""]
    if args.notes is not None:
        lines += [args.notes.read_text().rstrip(), ""]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
