"""Whole runs: the default job's wall time and peak memory under each thread setting, alone and
beside a busy process; a 12-job sweep with the basic and the joblib launcher; online runs as the
simulation budget grows. Writes benchmarks/runs.md (and .json).

    python scripts/bench/runs.py            # about 8 min on 2 cores
    python scripts/bench/runs.py --quick    # a smoke run (shorter runs, one seed)
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from common import BENCHMARKS, ROOT, cli_env, command_line, fmt, load_meter, merge_json, provenance, summaries


def timed_cli(overrides: list[str], policy: str | None) -> dict[str, Any]:
    """Wall time and peak RSS of one ``python -m nearpole_exp`` process (and its children)."""
    cmd = [sys.executable, "-m", "nearpole_exp", *overrides]
    gnu_time = Path("/usr/bin/time").exists()
    if gnu_time:
        cmd = ["/usr/bin/time", "-v", *cmd]
    start = time.perf_counter()
    res = subprocess.run(cmd, capture_output=True, text=True, env=cli_env(policy), cwd=ROOT)
    wall = time.perf_counter() - start
    out: dict[str, Any] = {"wall_s": wall, "rc": res.returncode}
    if gnu_time:
        found = re.search(r"Maximum resident set size \(kbytes\): (\d+)", res.stderr)
        out["peak_rss_mb"] = int(found.group(1)) / 1024 if found else math.nan
        out["rss_method"] = "/usr/bin/time -v (largest single process)"
    else:
        out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        out["rss_method"] = "RUSAGE_CHILDREN ru_maxrss (largest child so far)"
    if res.returncode != 0:
        out["error"] = (res.stdout + res.stderr).strip().splitlines()[-3:]
    return out


@contextlib.contextmanager
def busy_loop() -> Iterator[None]:
    """One extra CPU-bound process for the duration of the block (a controlled "other job")."""
    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        yield
    finally:
        hog.terminate()
        hog.wait()


def default_run(run_dir: Path, overrides: list[str], policy: str | None,
                label: str) -> dict[str, Any]:
    """:func:`timed_cli` of one run plus its summary's loop time and step count."""
    res = timed_cli([*overrides, f"hydra.run.dir={run_dir}"], policy)
    done = summaries(run_dir)
    res.update(label=label, job_wall_s=done[0].get("time/wall_s") if done else math.nan,
               steps=done[0].get("step") if done else 0)
    return res


def section_e2e(args: argparse.Namespace) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="bench_scaling_"))
    base = ["logger=none", "trainer.progress=false", "resume=never"]
    out: dict[str, Any] = {"default": []}
    variants = [("OMP_WAIT_POLICY unset", None, []), ("OMP_WAIT_POLICY=PASSIVE", "PASSIVE", []),
                ("trainer.num_threads=1", None, ["trainer.num_threads=1"])]
    if args.quick:
        base += ["trainer.rounds=2"]
    for i, (label, policy, extra) in enumerate(variants):
        out["default"].append(default_run(tmp / f"default{i}", [*base, *extra], policy, label))
    out["contended"] = []
    with busy_loop():
        for i, (label, policy, extra) in enumerate(variants):
            out["contended"].append(default_run(tmp / f"busy{i}", [*base, "trainer.rounds=2", *extra],
                                                policy, label))
    budget = ["trainer.rounds=2", "trainer.steps_per_round=100", "trainer.initial_points=1024",
              "trainer.plots=false"]
    seeds = "seed=0" if args.quick else "seed=0,1,2"
    grid = ["sampler=uniform,importance,active,hybrid", seeds]
    out["sweep_budget"] = budget
    out["sweep"] = []
    launchers = [("basic", []),
                 ("joblib n_jobs=2", ["hydra/launcher=parallel", "hydra.launcher.n_jobs=2"])]
    for policy in (None, "PASSIVE"):
        for name, extra in launchers:
            sweep_dir = tmp / f"sweep_{name.split()[0]}_{policy}"
            res = timed_cli(["-m", *grid, *base, *budget, *extra, f"hydra.sweep.dir={sweep_dir}"],
                            policy)
            jobs = summaries(sweep_dir)
            res.update(launcher=name, policy=policy or "unset", jobs=len(jobs),
                       completed=sum(j.get("status") == "completed" for j in jobs),
                       job_wall_mean_s=statistics.fmean(j["time/wall_s"] for j in jobs)
                       if jobs else math.nan)
            out["sweep"].append(res)
    shutil.rmtree(tmp, ignore_errors=True)
    return out


def section_online(args: argparse.Namespace) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="bench_online_"))
    per_round = "32,128" if args.quick else "32,128,512"
    rounds, steps = (3, 50) if args.quick else (6, 100)
    overrides = ["-m", "experiment=landscape", "ogas/breeder=uniform,ogas",
                 f"trainer.points_per_round={per_round}", f"trainer.rounds={rounds}",
                 f"trainer.steps_per_round={steps}", f"trainer.eval_every={rounds}",
                 "trainer.plots=false", "logger=none", "trainer.progress=false",
                 f"hydra.sweep.dir={tmp}"]
    policy = os.environ.get("OMP_WAIT_POLICY")
    res = timed_cli(overrides, policy)
    jobs = []
    for s in summaries(tmp):
        jobs.append({"breeder": s["choices"]["ogas/breeder"], "sims": s.get("breeder/simulations"),
                     "steps": s.get("step"), "wall_s": s.get("time/wall_s"),
                     "breeder_s": s.get("time/breeder_s"),
                     "ddpm_steps": s.get("breeder/train_steps", 0.0),
                     "nrmse_mean": s.get("eval/nrmse_mean")})
    jobs.sort(key=lambda j: (j["breeder"], j["sims"]))
    shutil.rmtree(tmp, ignore_errors=True)
    return {"overrides": overrides[1:-1], "sweep_wall_s": res["wall_s"], "rc": res["rc"],
            "policy": policy or "unset", "jobs": jobs, "error": res.get("error")}


def render_e2e(r: dict[str, Any]) -> list[str]:
    lines = ["The default run (`python -m nearpole_exp logger=none trainer.progress=false`: "
             "rational1d, rational model, uniform batches, 10 rounds × 200 steps, 4096 points, "
             "plots on), one process each, one repeat (run order as listed):", "",
             "| variant | wall (s) | job time/wall_s | steps | peak RSS (MB) |",
             "|---|---:|---:|---:|---:|"]
    for d in r["default"]:
        lines.append(f"| {d['label']} | {fmt(d['wall_s'])} | {fmt(d['job_wall_s'])} | "
                     f"{d['steps']} | {fmt(d['peak_rss_mb'])} |")
    if r.get("contended"):
        lines += ["", "The same run cut to 2 rounds (400 steps) with one busy-loop process "
                  "(`python -c 'while True: pass'`) started beside it, the controlled version "
                  "of a shared machine:", "",
                  "| variant | wall (s) | job time/wall_s | ms / step (loop) | peak RSS (MB) |",
                  "|---|---:|---:|---:|---:|"]
        for d in r["contended"]:
            per_step = d["job_wall_s"] / d["steps"] * 1e3 if d.get("steps") else math.nan
            lines.append(f"| {d['label']} | {fmt(d['wall_s'])} | {fmt(d['job_wall_s'])} | "
                         f"{fmt(per_step)} | {fmt(d['peak_rss_mb'])} |")
    method = r["default"][0].get("rss_method", "")
    lines += ["", f"Peak RSS: {method}. Wall includes interpreter start, imports and config "
              "composition; time/wall_s is the loop alone.", "",
              "A 12-job sweep `-m sampler=uniform,importance,active,hybrid seed=0,1,2` with "
              f"`{' '.join(r['sweep_budget'])}` (the hydra compare callback included):", "",
              "| launcher | OMP_WAIT_POLICY | wall (s) | jobs completed | mean job time/wall_s (s) "
              "| peak RSS (MB) |", "|---|---|---:|---:|---:|---:|"]
    for s in r["sweep"]:
        lines.append(f"| {s['launcher']} | {s['policy']} | {fmt(s['wall_s'])} | "
                     f"{s['completed']}/{s['jobs']} | {fmt(s['job_wall_mean_s'])} | "
                     f"{fmt(s['peak_rss_mb'])} |")
    by = {(s["launcher"], s["policy"]): s["wall_s"] for s in r["sweep"]}
    for policy in ("unset", "PASSIVE"):
        basic, par = by.get(("basic", policy)), by.get(("joblib n_jobs=2", policy))
        if basic and par:
            lines.append(f"\nBasic / joblib wall ratio with OMP_WAIT_POLICY {policy}: "
                         f"{basic / par:.2f}.")
    return lines


def fit_line(xs: list[float], ys: list[float]) -> tuple[float, float]:
    """Least-squares (intercept, slope)."""
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    var = sum((x - mx) ** 2 for x in xs)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / var if var else 0.0
    return my - slope * mx, slope


def render_online(r: dict[str, Any]) -> list[str]:
    lines = [f"One multirun, basic launcher, OMP_WAIT_POLICY {r['policy']}: "
             f"`{' '.join(r['overrides'])}`; sweep wall {fmt(r['sweep_wall_s'])} s. "
             "Simulations = initial_points + (rounds − 1) · points_per_round. "
             "breeder_s counts ask/tell in the loop only (OGAS's thread trains beside it).", "",
             "| breeder | simulations | steps | time/wall_s | time/breeder_s | DDPM steps "
             "| eval/nrmse_mean |", "|---|---:|---:|---:|---:|---:|---:|"]
    for j in r["jobs"]:
        lines.append(f"| {j['breeder']} | {j['sims']} | {j['steps']} | {fmt(j['wall_s'])} | "
                     f"{fmt(j['breeder_s'])} | {fmt(j['ddpm_steps'])} | {fmt(j['nrmse_mean'])} |")
    return lines


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="shorter runs, a smoke run")
    p.add_argument("--out", type=Path, default=BENCHMARKS / "runs.md")
    args = p.parse_args()
    results: dict[str, Any] = {}
    for name, measure in (("e2e", section_e2e), ("online", section_online)):
        record: dict[str, Any] = {"command": command_line()}
        with load_meter(record):
            record["data"] = measure(args)
        results[name] = record
        merge_json(args.out.with_suffix(".json"), name, record)
    lines = ["# Whole runs", "", "## The default job and a sweep", "",
             *provenance(results["e2e"]["command"], results["e2e"]), *render_e2e(results["e2e"]["data"]),
             "", "## Online runs: cost against the simulation budget", "",
             *provenance(results["online"]["command"], results["online"]),
             *render_online(results["online"]["data"])]
    args.out.write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
