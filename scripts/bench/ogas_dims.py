"""What OGAS's generator is worth as the configuration space grows: every proposal at equal
simulations and gradient steps, on the high-dimensional set landscapes and on the PDEs with
d = 1 + ic_terms parameters, per dimension.

    python scripts/bench/ogas_dims.py                                  # every problem, d 4 16 64
    python scripts/bench/ogas_dims.py --problems tube slab --dims 16 64 --seeds 2
    python scripts/bench/ogas_dims.py --cases slab:4,16,64 burgers:16 kdv:16   # the published table
    python scripts/bench/ogas_dims.py --cases slab:4,16,64 --arms uniform "breed adaptive" \
        "gaussian children" "recombination children" --report benchmarks/ogas_mixture.md
                                                           # the mixture against its two parts
    python scripts/bench/ogas_dims.py --cases ks2d:4,16,64 --seeds 2 --arms uniform \
        "breed adaptive" "ogas preset" --report benchmarks/ogas_2d.md    # the 2-D PDE
    python scripts/bench/ogas_dims.py --quick                          # a smoke run

Arms (``ogas/breeder`` and its keys): uniform, Sobol, Breed (the paper's preset), Breed with the
yield rule, reflected children and parents ∝ fitness² (the best DDPM-free variant measured in 3
dimensions), OGAS's DDPM alone (``proposal_mix=generator``), its local children alone
(``proposal_mix=fixed local_share=1``), the OGAS preset, OGAS with recombination children as a
third proposal, and the DDPM-free ``breed_adaptive`` preset (Gaussian and recombination children
split by yield). Ratios are uniform / arm of the held-out
nRMSE statistics, per seed (same seed, same design draws for round 0), > 1 better; the table gives
their mean ± std over seeds. On the landscapes the placement diagnostic's hard mass (the share of a
generation's points in the hard set, averaged over the bred generations; uniform: 0.05) stands
beside the ideal's. Every (problem, d, arm) is one Hydra multirun over the seeds, cached under
``--out``; writes benchmarks/ogas_dims.md and .json.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from common import (
    BENCHMARKS,
    ROOT,
    cached_multirun,
    command_line,
    fmt,
    load_meter,
    md_table,
    median,
    provenance,
)

ARMS: dict[str, list[str]] = {
    "uniform": ["ogas/breeder=uniform"],
    "sobol": ["ogas/breeder=sobol"],
    "breed": ["ogas/breeder=breed"],
    "breed+yield": ["ogas/breeder=breed", "ogas.breeder.adaptive_ratio=yield",
                    "ogas.breeder.oob=reflect", "ogas.breeder.fitness_power=2"],
    "ddpm only": ["ogas/breeder=ogas", "ogas.breeder.proposal_mix=generator"],
    "local only": ["ogas/breeder=ogas", "ogas.breeder.proposal_mix=fixed",
                   "ogas.breeder.local_share=1.0"],
    "ogas preset": ["ogas/breeder=ogas"],
    "ogas + recombination": ["ogas/breeder=ogas", "ogas.breeder.local_share=0.33",
                             "ogas.breeder.recombination_share=0.33"],
    "breed adaptive": ["ogas/breeder=breed_adaptive"],
    # the two parts of breed_adaptive's children mixture, each alone (--arms; not in the default)
    "gaussian children": ["ogas/breeder=breed_adaptive", "ogas.breeder.children=gaussian"],
    "recombination children": ["ogas/breeder=breed_adaptive",
                               "ogas.breeder.children=recombination"],
}
DEFAULT_ARMS = [arm for arm in ARMS if not arm.endswith(" children")]
LANDSCAPES = ("tube", "shell", "slab")
PDES = ("burgers", "kdv", "ks")
PDES_2D = ("ks2d", "gray_scott2d")  # on request (--cases ks2d:4,16,64): a run takes minutes, not seconds
STATS = ("max", "p99", "mean")
PAPER = {"max": 1.64, "p99": 1.42, "mean": 0.97}
IC_DECAY = 1.5  # every term of wave m over [amp_low, amp_high]·m^−1.5: bounded fields at any d
COMMON = ["logger=none", "trainer.progress=false", "trainer.plots=false", "trainer.num_threads=1",
          "resume=never"]


def parse_cases(specs: list[str]) -> dict[str, list[int]]:
    """``["slab:4,16", "burgers:16"]`` → ``{"slab": [4, 16], "burgers": [16]}``."""
    cases: dict[str, list[int]] = {}
    for spec in specs:
        problem, _, dims = spec.partition(":")
        if problem not in (*LANDSCAPES, *PDES, *PDES_2D) or not dims:
            raise SystemExit(f"--cases: expected PROBLEM:D[,D...] with PROBLEM one of "
                             f"{(*LANDSCAPES, *PDES, *PDES_2D)}, got {spec!r}")
        cases[problem] = [int(d) for d in dims.split(",")]
    return cases


def problem_overrides(problem: str, dim: int) -> list[str]:
    """The experiment and problem keys of ``problem`` with ``dim`` parameters."""
    if problem in LANDSCAPES:
        return ["experiment=landscape", "problem=landscape_set", f"problem.hard_set={problem}",
                f"problem.dim={dim}"]
    terms = dim - 1
    if problem in PDES_2D:  # the 32² training grid's band holds 372 2-D terms
        return [f"experiment={problem}", f"problem.ic_terms={terms}", f"problem.ic_decay={IC_DECAY}"]
    grid = 64 if (terms + 1) // 2 <= 21 else 128  # the training grid's dealiased band holds them
    return [f"experiment={problem}", f"problem.ic_terms={terms}", f"problem.ic_decay={IC_DECAY}",
            f"problem.grid={grid}"]


def num(s: dict[str, Any], key: str) -> float:
    v = s.get(key)
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else math.nan


def ratios(base: list[dict[str, Any]], arm: list[dict[str, Any]], stat: str) -> list[float]:
    """uniform / arm of ``eval/nrmse_<stat>``, seed by seed."""
    key = f"eval/nrmse_{stat}"
    return [num(b, key) / num(a, key) for b, a in zip(base, arm, strict=True)]


def mean_std(vals: list[float]) -> tuple[float, float]:
    vals = [v for v in vals if math.isfinite(v)]
    if not vals:
        return math.nan, math.nan
    return statistics.fmean(vals), statistics.stdev(vals) if len(vals) > 1 else 0.0


def cell(vals: list[float]) -> str:
    m, s = mean_std(vals)
    return f"{fmt(m)} ± {fmt(s, 2)}"


def learnability(problem: str, dim: int, shares: tuple[float, ...], seed: int) -> list[list[Any]]:
    """What any proposal could gain on a set landscape: the landscape experiment's MLP and budget
    (1664 points, 3000 steps of 256 at lr 3e-3) trained on points of which a share lies in H
    (drawn by rejection) and the rest uniform; held-out nRMSE inside and outside H, max, p99."""
    import torch

    from nearpole_exp.models.mlp import MLP
    from nearpole_exp.problems.landscape_set import SetLandscape

    p = SetLandscape(dim=dim, hard_set=problem)
    ev = p.eval_params()
    hard = p.hard_region_mask(ev)
    ev_in, ev_t = p.pairs(ev)
    rows = []
    for share in shares:
        gen = torch.Generator().manual_seed(seed)
        torch.manual_seed(seed)
        n_in = round(1664 * share)
        inside = []
        while sum(len(h) for h in inside) < n_in:
            cand = torch.rand(100_000, dim, generator=gen, dtype=torch.float64)
            inside.append(cand[p.hard_region_mask(cand)])
        x = torch.cat([torch.rand(1664 - n_in, dim, generator=gen, dtype=torch.float64),
                       *inside])[:1664].float()
        inputs, targets = p.pairs(x)
        inputs, targets = inputs.reshape(-1, dim + 1), targets.reshape(-1, 1)
        model = MLP(**p.model_dims(), hidden=128)
        opt = torch.optim.Adam(model.parameters(), 3e-3)
        for _ in range(3000):
            idx = torch.randint(0, len(inputs), (256,), generator=gen)
            loss = (model(inputs[idx]) - targets[idx]).pow(2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            pred = model(ev_in.reshape(-1, dim + 1)).reshape(ev_t.shape)
        err = (pred - ev_t).pow(2).mean(dim=(1, 2)).sqrt() / ev_t.pow(2).mean(dim=(1, 2)).sqrt()
        rows.append([problem, dim, share, float(err[hard].mean()), float(err[~hard].mean()),
                     float(err.max()), float(err.quantile(0.99))])
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "outputs" / "bench_ogas_dims")
    parser.add_argument("--problems", nargs="*", default=[*LANDSCAPES, *PDES],
                        choices=[*LANDSCAPES, *PDES])
    parser.add_argument("--dims", nargs="*", type=int, default=[4, 16, 64])
    parser.add_argument("--cases", nargs="*", default=None, metavar="PROBLEM:D,D",
                        help="problem and dimensions pairs instead of --problems × --dims, "
                             "e.g. slab:4,16,64 burgers:16")
    parser.add_argument("--arms", nargs="*", default=DEFAULT_ARMS, choices=list(ARMS))
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument("--jobs", type=int, default=2, help="multiruns at once (one thread each)")
    parser.add_argument("--report", type=Path, default=BENCHMARKS / "ogas_dims.md")
    parser.add_argument("--quick", action="store_true", help="a smoke run: tube at d 8, one seed, "
                        "3 rounds")
    parser.add_argument("--learnability", action="store_true",
                        help="only the learnability table of the set landscapes (no runs)")
    args = parser.parse_args(argv)
    if args.learnability:
        return learnability_report(args)
    if args.quick:
        args.problems, args.dims, args.seeds = ["tube"], [8], 1
        COMMON.extend(["trainer.rounds=3", "trainer.steps_per_round=50", "trainer.eval_every=3"])
        if args.report == BENCHMARKS / "ogas_dims.md":
            args.report = args.out / "report.md"
    if "uniform" not in args.arms:
        args.arms.insert(0, "uniform")
    seeds = list(range(args.seeds))
    import torch  # noqa: F401  (so that the machine line names its version)

    cases = parse_cases(args.cases) if args.cases else {p: list(args.dims) for p in args.problems}
    jobs = [((p, d, a), [*problem_overrides(p, d), *ARMS[a], *COMMON],
             args.out / p / f"d{d}" / a.replace(" ", "_").replace("+", "_"))
            for p, dims in cases.items() for d in dims for a in args.arms]
    record: dict[str, Any] = {}
    with load_meter(record), ThreadPoolExecutor(args.jobs) as pool:
        futures = {key: pool.submit(cached_multirun, ov, seeds, sweep) for key, ov, sweep in jobs}
        results = {key: f.result() for key, f in futures.items()}

    lines = ["# OGAS as the configuration space grows", "", *provenance(command_line(), record),
             f"{len(seeds)} seeds; ratios uniform / arm of the held-out nRMSE statistic, mean ± "
             "std over seeds of the per-seed ratio (> 1: the arm is better). Hard mass: share of "
             "the bred generations' points in the hard set (landscapes; uniform 0.05). One torch "
             "thread per run, two runs at once. Time is not compared here (cached arms ran at "
             "other times under other loads): scripts/bench/ogas_cost.py measures what each "
             "costs, side by side.", ""]
    data: dict[str, Any] = {}
    for p, dims in cases.items():
        lines += [f"## {p}", ""]
        for d in dims:
            base = results[(p, d, "uniform")]
            rows = []
            for a in args.arms:
                runs = results[(p, d, a)]
                r = {s: ratios(base, runs, s) for s in STATS}
                hard = [num(x, "placement/hard_mass") for x in runs]
                wall = median([num(x, "time/wall_s") for x in runs])
                data[f"{p} | d{d} | {a}"] = {**r, "hard_mass": hard, "wall_s": wall,
                                             "nrmse_max": [num(x, "eval/nrmse_max") for x in runs]}
                rows.append([a, *(cell(r[s]) for s in STATS),
                             fmt(statistics.fmean(hard)) if all(map(math.isfinite, hard)) else "n/a"])
            ideal = num(base[0], "placement/ideal_hard_mass")
            title = f"**d = {d}**" + (f" (ideal hard mass {fmt(ideal)})" if math.isfinite(ideal) else "")
            lines += [title, "", *md_table(["arm", "max", "p99", "mean", "hard mass"], rows,
                                           "lrrrr"), ""]
    pde_dims = sorted({d for p, dims in cases.items() if p in PDES for d in dims})
    if pde_dims:
        lines += ["## Averaged over the PDEs", "",
                  "Mean over the PDEs run at each d of the per-problem mean ratio; the Melissa "
                  "paper's OGAS-Loss: max 1.64, p99 1.42, mean 0.97.", ""]
        for d in pde_dims:
            pdes = [p for p, dims in cases.items() if p in PDES and d in dims]
            rows = []
            for a in args.arms:
                rows.append([a, *(fmt(statistics.fmean(mean_std(data[f"{p} | d{d} | {a}"][s])[0]
                                                       for p in pdes)) for s in STATS)])
            lines += [f"**d = {d}** ({', '.join(pdes)})", "",
                      *md_table(["arm", "max", "p99", "mean"], rows), ""]
    args.report.parent.mkdir(parents=True, exist_ok=True)
    args.report.write_text("\n".join(lines), encoding="utf-8")
    args.report.with_suffix(".json").write_text(json.dumps(data, indent=1, default=str))
    print(f"wrote {args.report}")
    return 0


def learnability_report(args: argparse.Namespace) -> int:
    """The learnability table of the set landscapes among ``--problems`` at ``--dims``."""
    import torch

    torch.set_num_threads(1)
    record: dict[str, Any] = {}
    rows = []
    with load_meter(record):
        for p in [p for p in args.problems if p in LANDSCAPES]:
            for d in args.dims:
                rows += learnability(p, d, (0.0, 0.3, 0.6), seed=0)
    report = args.report if args.report != BENCHMARKS / "ogas_dims.md" else \
        BENCHMARKS / "ogas_learnability.md"
    lines = ["# Can a proposal win on the set landscapes?", "", *provenance(command_line(), record),
             "The landscape experiment's MLP and budget trained on points of which a share lies "
             "in the hard set H (an ideal proposal would put ~0.7–0.9 there) and the rest uniform; "
             "held-out nRMSE. Where max and p99 do not fall as the share grows, no breeder can win "
             "on them at this budget: the surrogate, not the sampling, is the limit.", "",
             *md_table(["set", "d", "share in H", "error in H", "error outside", "max", "p99"],
                       rows, "lrrrrrr")]
    report.parent.mkdir(parents=True, exist_ok=True)
    report.write_text("\n".join(lines), encoding="utf-8")
    print(f"wrote {report}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
