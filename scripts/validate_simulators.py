"""Check the simulators against independent references over their whole parameter box.

Burgers against the exact Cole–Hopf solution; KS against a scipy Radau method-of-lines solve on
4× the training grid; diffusive KdV against the same kind of solve on twice the grid the
resolution rule gives the row. Points: every corner of the box plus ``--points`` uniform draws (seeded);
for each, the worst relative L2 error over the saved frames at the training grid. Prints a
markdown table per problem and setting: the default (resolved per row) and, for contrast, the
old fixed 64-point, 10-substep solve. Needs scipy (the ``dev`` extra).

    python scripts/validate_simulators.py --points 48
    python scripts/validate_simulators.py --problems kdv --points 8
    python scripts/validate_simulators.py --problems burgers --ic-terms 15 --ic-decay 1 --points 16
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time

import numpy as np
import torch

from nearpole_exp.problems import references
from nearpole_exp.problems.burgers import Burgers1D
from nearpole_exp.problems.kdv import KdV1D
from nearpole_exp.problems.ks import KuramotoSivashinsky1D
from nearpole_exp.problems.pseudospectral import PseudoSpectralProblem

TOL = 1e-3
PRESETS = {"burgers": {"nu_low": 0.01, "nu_high": 0.1},
           "ks": {"length_low": 10.0, "length_high": 100.0},
           "kdv": {"dispersion_low": 5e-4, "dispersion_high": 5e-3}}
PROBLEMS = {"burgers": Burgers1D, "ks": KuramotoSivashinsky1D, "kdv": KdV1D}


def box_points(problem: PseudoSpectralProblem, n: int, seed: int) -> torch.Tensor:
    """Every corner of the box, then ``n`` seeded uniform draws."""
    b = problem.bounds.double()
    corners = torch.tensor(list(itertools.product(*b.tolist()[:8])), dtype=torch.float64)
    if len(b) > 8:  # 2^d corners are too many: the first 8 axes' corners, the rest at their top
        corners = torch.cat([corners, b[8:, 1].expand(len(corners), -1)], dim=1)
    gen = torch.Generator().manual_seed(seed)
    draws = b[:, 0] + torch.rand(n, len(b), generator=gen, dtype=torch.float64) * (b[:, 1] - b[:, 0])
    return torch.cat([corners, draws]).float()


def relative_l2(frames: np.ndarray, ref: np.ndarray) -> float:
    """Worst relative L2 error over the frames ``[T+1, grid]``."""
    err = np.sqrt(((frames - ref) ** 2).mean(axis=1)) / np.sqrt((ref**2).mean(axis=1))
    return float(err.max())


def reference(problem: PseudoSpectralProblem, row: torch.Tensor) -> np.ndarray:
    """The independent solution at the training grid for one parameter row."""
    cfg = problem.config
    times = np.arange(cfg.n_steps + 1) * cfg.dt_save
    if isinstance(problem, Burgers1D):
        x = 2 * np.pi * np.arange(cfg.grid) / cfg.grid
        nu = float(problem.viscosity(row[None])[0])
        return references.cole_hopf(row[1:].double().numpy(), nu, x, times)
    if isinstance(problem, KdV1D):
        fine = 2 * int(problem.plan(row[None]).multiple[0]) * cfg.grid
        u0 = problem.initial_condition(row[None], fine)[0].numpy()
        return references.kdv_method_of_lines(u0, float(row[0]), cfg.viscosity,
                                              times)[:, :: fine // cfg.grid]
    fine = 4 * cfg.grid
    u0 = problem.initial_condition(row[None], fine)[0].numpy()
    return references.ks_method_of_lines(u0, float(row[0]), times)[:, ::4]


def validate(problem: PseudoSpectralProblem, points: torch.Tensor,
             refs: list[np.ndarray]) -> tuple[np.ndarray, float]:
    """Per-point worst error of ``problem``'s frames and the solve time."""
    start = time.perf_counter()
    frames = problem.solve(points).numpy()
    elapsed = time.perf_counter() - start
    return np.array([relative_l2(f, r) for f, r in zip(frames, refs, strict=True)]), elapsed


def report(name: str, problem: PseudoSpectralProblem, points: torch.Tensor) -> None:
    start = time.perf_counter()
    refs = []
    for i, row in enumerate(points):
        refs.append(reference(problem, row))
        print(f"reference {i + 1}/{len(points)} at {time.perf_counter() - start:.0f} s",
              file=sys.stderr, flush=True)
    print(f"\n### {name}: {len(points)} points (references {time.perf_counter() - start:.0f} s)\n")
    print("| setting | within 1e-3 | worst error | at | median | solve time |")
    print("|---|---:|---:|---|---:|---:|")
    cfg = problem.config
    old = type(problem)(**PRESETS[name], ic_terms=cfg.ic_terms, ic_decay=cfg.ic_decay,
                        grid=cfg.grid, sim_grid=cfg.grid, substeps=10, allow_under_resolved=True)
    for label, p in (("resolved per row (default)", problem), (f"fixed {cfg.grid} points, 10 substeps", old)):
        errors, elapsed = validate(p, points, refs)
        worst = int(errors.argmax())
        at = ", ".join(f"{v:.3g}" for v in points[worst].tolist())
        print(f"| {label} | {np.mean(errors < TOL):.0%} | {errors.max():.2e} | ({at}) | "
              f"{np.median(errors):.1e} | {elapsed:.2f} s |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=48, help="uniform draws beside the corners")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--problems", nargs="+", default=["burgers", "ks"], choices=list(PRESETS))
    parser.add_argument("--ic-terms", type=int, default=3, help="initial-condition terms (d − 1)")
    parser.add_argument("--ic-decay", type=float, default=0.0)
    parser.add_argument("--grid", type=int, default=64, help="the training grid")
    args = parser.parse_args()
    torch.set_num_threads(1)
    for name in args.problems:
        problem = PROBLEMS[name](**PRESETS[name], ic_terms=args.ic_terms, ic_decay=args.ic_decay,
                                 grid=args.grid)
        report(name, problem, box_points(problem, args.points, args.seed))


if __name__ == "__main__":
    main()
