"""What a breeder costs: whole ``python -m nearpole_exp`` runs of each breeder at equal simulations
and gradient steps, wall and CPU time (the process and its children, from ``os.wait4``), the
DDPM's own CPU (``breeder/train_cpu_s``) and the main loop's wait for it, against uniform.

    python scripts/bench/ogas_cost.py                       # landscape and burgers, 2 seeds
    python scripts/bench/ogas_cost.py --experiments landscape --seeds 3
    python scripts/bench/ogas_cost.py --quick               # a smoke run
    python scripts/bench/ogas_cost.py --report benchmarks/ogas_budget.md --seeds 4 --arms \
        uniform "ogas, 25 steps/ask" "ogas, 50 steps/ask" "ogas, 100 steps/ask" ogas
                                                            # the DDPM's budget per generation

Runs take turns arm by arm within each seed (the order rotated per seed), so a burst of load
hits every arm; every run has one torch thread (``trainer.num_threads=1``) but the arm that
checks this against torch's default count, so ratios compare like with like. Writes
benchmarks/ogas_cost.md (and .json).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from common import BENCHMARKS, ROOT, cli_env, command_line, fmt, load_meter, md_table, provenance

ONE = "trainer.num_threads=1"
ARMS: dict[str, list[str]] = {
    "uniform": ["ogas/breeder=uniform", ONE],
    # torch's default thread count (2 here): is one thread really the faster setting?
    "uniform, default threads": ["ogas/breeder=uniform", "trainer.num_threads=0"],
    "breed_adaptive": ["ogas/breeder=breed_adaptive", ONE],
    "ogas": ["ogas/breeder=ogas", ONE],
    "ogas synchronous": ["ogas/breeder=ogas", "ogas.breeder.synchronous=true", ONE],
    # the DDPM's steps on a thread of the run's process (the default is a child process)
    "ogas, thread": ["ogas/breeder=ogas", "ogas.breeder.trainer_process=false", ONE],
}
# the DDPM's budget per generation (ogas.breeder.train_steps_per_ask), for the quality-vs-budget
# curve: `--arms uniform "ogas, 25 steps/ask" ...`
for _steps in (25, 50, 100, 400):
    ARMS[f"ogas, {_steps} steps/ask"] = ["ogas/breeder=ogas",
                                         f"ogas.breeder.train_steps_per_ask={_steps}", ONE]
COMMON = ["logger=none", "trainer.progress=false", "trainer.plots=false", "resume=never"]
QUICK = ["trainer.rounds=3"]


def timed_run(overrides: list[str], job_dir: Path) -> dict[str, Any]:
    """One CLI run: process wall, user+system CPU of the process tree, and its summary."""
    cmd = [sys.executable, "-m", "nearpole_exp", *overrides, f"hydra.run.dir={job_dir}"]
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env=cli_env(), cwd=ROOT)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    stderr = proc.stderr.read().decode() if proc.stderr else ""
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"run failed ({' '.join(cmd)}):\n{stderr[-2000:]}")
    summary = json.loads((job_dir / "summary.json").read_text())
    return {"wall_s": wall, "cpu_s": usage.ru_utime + usage.ru_stime,
            "loop_s": summary["time/wall_s"],
            "ddpm_cpu_s": summary.get("breeder/train_cpu_s", 0.0),
            "wait_s": summary.get("breeder/train_wait_s", 0.0),
            **{s: summary[f"eval/nrmse_{s}"] for s in ("max", "p99", "mean")}}


def mean_sd(vals: list[float]) -> str:
    sd = statistics.stdev(vals) if len(vals) > 1 else 0.0
    return f"{fmt(statistics.fmean(vals))} ± {fmt(sd, 2)}"


def table(runs: dict[str, list[dict[str, Any]]]) -> list[str]:
    """Per arm: means ± std over seeds, and cost ratios to uniform seed by seed."""
    base = runs["uniform"]
    rows = []
    for arm, rs in runs.items():
        wall_ratio = [r["wall_s"] / b["wall_s"] for r, b in zip(rs, base, strict=True)]
        cpu_ratio = [r["cpu_s"] / b["cpu_s"] for r, b in zip(rs, base, strict=True)]
        rows.append([arm, mean_sd([r["wall_s"] for r in rs]), mean_sd([r["cpu_s"] for r in rs]),
                     mean_sd(wall_ratio), mean_sd(cpu_ratio),
                     mean_sd([r["ddpm_cpu_s"] for r in rs]), mean_sd([r["wait_s"] for r in rs]),
                     *(mean_sd([r[s] for r in rs]) for s in ("max", "p99", "mean"))])
    return md_table(["arm", "wall s", "CPU s", "wall / uniform", "CPU / uniform", "DDPM CPU s",
                     "loop waits s", "nRMSE max", "p99", "mean"], rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiments", nargs="*", default=["landscape", "burgers"])
    parser.add_argument("--arms", nargs="*", default=list(ARMS)[:6], choices=list(ARMS))
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--report", type=Path, default=BENCHMARKS / "ogas_cost.md")
    parser.add_argument("--quick", action="store_true", help="3 rounds, one seed, landscape")
    args = parser.parse_args(argv)
    if args.quick:
        args.experiments, args.seeds = ["landscape"], 1
    arms = ["uniform", *[a for a in args.arms if a != "uniform"]]
    record: dict[str, Any] = {"runs": {}}
    lines = ["# What a breeder costs", "", "",
             "Each run is one `python -m nearpole_exp` process with one torch thread (but `uniform, "
             "default threads`), arms taking turns seed by seed; wall and CPU (user + system, the "
             "whole process) as mean ± std over seeds, ratios to uniform per seed; `DDPM CPU s` is "
             "the DDPM's training (on its thread), `loop waits s` the main loop's wait for it "
             "before a generation.", ""]
    with tempfile.TemporaryDirectory() as tmp, load_meter(record):
        for exp in args.experiments:
            runs: dict[str, list[dict[str, Any]]] = {a: [] for a in arms}
            for seed in range(args.seeds):
                order = arms[seed % len(arms):] + arms[:seed % len(arms)]
                for arm in order:
                    job = Path(tmp) / f"{exp}_{re.sub(r'[^a-z0-9]+', '_', arm)}_{seed}"
                    overrides = [f"experiment={exp}", *ARMS[arm], *COMMON, f"seed={seed}",
                                 *(QUICK if args.quick else [])]
                    runs[arm].append(timed_run(overrides, job))
                    print(f"{exp:10s} seed {seed} {arm:18s} {runs[arm][-1]['wall_s']:7.1f} s wall "
                          f"{runs[arm][-1]['cpu_s']:7.1f} s CPU", flush=True)
            record["runs"][exp] = runs
            lines += [f"## experiment={exp}", "", *table(runs), ""]
    lines[2:3] = provenance(command_line(), record)
    args.report.parent.mkdir(parents=True, exist_ok=True)
    args.report.write_text("\n".join(lines).rstrip() + "\n")
    args.report.with_suffix(".json").write_text(json.dumps(record, indent=1, default=str))
    print(f"wrote {args.report}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
