"""Near-pole sampling strategies at equal gradient steps, 3 seeds, through the real CLI.

Per block (a problem preset plus fixed overrides) it runs Hydra multiruns of
``python -m nearpole_exp`` (one fresh sweep directory per block and arm group, so
``resume=auto`` never continues an older run), then aggregates each block with
``nearpole_exp.reporting.comparison.compare_sweep`` (mean ± std over seeds, ratios to sampler=uniform) and
writes a markdown report.

    python scripts/bench/nearpole.py --out outputs/bench_nearpole \\
        --blocks rational1d rational1d_noisy rr_ik --report benchmarks/nearpole_tables.md
    python scripts/bench/nearpole.py --quick      # a smoke run: one block, one seed, short runs

Sampling speed lives in ``scripts/bench/sampling.py`` (benchmarks/sampling.md).

Every arm of a block runs the same trainer budget (rounds × steps_per_round, batch size) from
the block's preset; only the sampler / curriculum / gradient groups differ.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

from common import machine_line, today

from nearpole_exp.reporting.comparison import ComparisonResult, compare_sweep, render_markdown

BLOCKS: dict[str, list[str]] = {
    "rational1d": ["experiment=nearpole_rational1d"],
    "rational1d_noisy": ["experiment=nearpole_rational1d", "problem.label_noise=1e-6"],
    # a rational model of the truth's degrees (P 3, Q 1): no spare capacity, so how fast the
    # pole is located within the step budget decides the near-pole error
    "rational1d_matched": ["experiment=nearpole_rational1d", "model.p_degree=3", "model.q_degree=1"],
    "rational1d_matched_noisy": ["experiment=nearpole_rational1d", "model.p_degree=3",
                                 "model.q_degree=1", "problem.label_noise=1e-6"],
    "rr_ik": ["experiment=nearpole_rr_ik"],
    "rr_ik_exact": ["experiment=nearpole_rr_ik", "problem.labels=exact"],
    # the structured rational model y = A(θ)·d/q(θ) at ZeroProofML's budget order (10 000 steps;
    # their appendix: 200 epochs of 16 000 samples at batch 256, 12 500 steps)
    "rr_ik_structured": ["experiment=nearpole_rr_ik", "model=linear_rational", "trainer.rounds=50",
                         "trainer.eval_every=50"],
}
# Arm groups, one multirun each (comma lists sweep inside the group).
ARMS: list[list[str]] = [
    ["sampler=uniform,importance,importance_tilted,active,hybrid"],
    ["sampler=uniform", "curriculum=bands"],
    ["sampler=uniform,active", "gradient=hybrid"],
]
# Blocks that run only some arm groups (by index into ARMS).
BLOCK_ARMS: dict[str, list[int]] = {"rr_ik_structured": [0]}
COMMON = ["logger=none", "trainer.progress=false", "trainer.plots=false"]
RELERR = [f"eval/relerr_median/B{b}" for b in range(5)]
MSE = [f"eval/bucket_mse/B{b}" for b in range(5)]
TABLES = {
    "median relative error per bucket, PLE, wall time": [*RELERR, "eval/ple", "time/wall_s"],
    "MSE per bucket and on the bulk (eval/mse)": [*MSE, "eval/mse"],
}
ZEROPROOF_RECIPE = ["eval/recipe_mse/B0", "eval/recipe_mse/B1", "eval/recipe_mse/B2",
                    "eval/recipe_mse/B3", "eval/recipe_mse/B4"]


def run_group(block: list[str], arm: list[str], seeds: str, sweep_dir: Path,
              threads: int) -> float:
    """One Hydra multirun into a fresh ``sweep_dir``; returns its wall time in seconds."""
    if sweep_dir.exists() and any(sweep_dir.iterdir()):
        raise SystemExit(f"{sweep_dir} is not empty: use a fresh --out")
    cmd = [sys.executable, "-m", "nearpole_exp", "-m", *block, *arm, f"seed={seeds}",
           f"hydra.sweep.dir={sweep_dir}", *COMMON, f"trainer.num_threads={threads}"]
    print("$", " ".join(cmd[1:]), flush=True)
    env = {**os.environ, "WANDB_MODE": "disabled", "HYDRA_FULL_ERROR": "1"}
    start = time.perf_counter()
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def block_tables(name: str, sweep: Path) -> str:
    """The markdown tables of one block (one compare_sweep per table's metric set).

    The baseline is the point made of the block's common overrides plus sampler=uniform alone
    (the curriculum and gradient arms also name sampler=uniform, so the token alone is
    ambiguous).
    """
    common = compare_sweep(sweep, metrics=["eval/mse"], write=False).common
    baseline = [*common, "sampler=uniform"]
    parts = [f"### {name}", ""]
    tables = dict(TABLES)
    if name.startswith("rr_ik"):
        tables["MSE per bucket on the recipe's own test distribution (ZeroProofML's protocol)"] = \
            ZEROPROOF_RECIPE
    for title, metrics in tables.items():
        result: ComparisonResult = compare_sweep(sweep, baseline=baseline, metrics=metrics,
                                                 write=False)
        parts += [f"**{title}**", "", render_markdown(result), ""]
    return "\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("outputs/bench_nearpole"))
    parser.add_argument("--blocks", nargs="*", default=sorted(BLOCKS),
                        choices=sorted(BLOCKS))
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads per job (1 avoids oversubscription on shared CPUs)")
    parser.add_argument("--report", type=Path, default=None,
                        help="markdown file for the tables (default: <out>/report.md)")
    parser.add_argument("--aggregate-only", action="store_true",
                        help="skip the runs; aggregate an existing --out")
    parser.add_argument("--quick", action="store_true",
                        help="a smoke run: rational1d, one seed, 2 rounds of 20 steps")
    args = parser.parse_args(argv)
    if args.quick:
        args.blocks, args.seeds = ["rational1d"], "0"
        COMMON.extend(["trainer.rounds=2", "trainer.steps_per_round=20"])
    import torch  # noqa: F401  (so that the machine line names its version)

    lines = [f"Generated {today()} on {machine_line()}.", ""]
    for name in args.blocks:
        block = BLOCKS[name]
        sweep = args.out / name
        if not args.aggregate_only:
            for i, arm in enumerate(ARMS):
                if i not in BLOCK_ARMS.get(name, range(len(ARMS))):
                    continue
                took = run_group(block, arm, args.seeds, sweep / f"group{i}", args.threads)
                print(f"  {name} group{i}: {took:.0f} s", flush=True)
        lines.append(block_tables(name, sweep))
    report = args.report or args.out / "report.md"
    report.parent.mkdir(parents=True, exist_ok=True)
    report.write_text("\n".join(lines), encoding="utf-8")
    print(f"wrote {report}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
