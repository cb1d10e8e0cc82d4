"""Centred discrepancy of the space-filling designs against i.i.d. points; writes
benchmarks/designs.md.

Each cell is the mean over ``--replicates`` seeds of ``scipy.stats.qmc.discrepancy`` (centred L2,
lower is better) of the first n points of a fresh stream, for the designs a breeder or the
held-out set can use, beside the shifted unscrambled Halton the project used before (written
here as the reference arm).

    python scripts/bench/designs.py                 # about 1 minute on 2 cores
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
import torch
from common import BENCHMARKS, command_line, provenance
from scipy.stats import qmc

from nearpole_exp.designs import UnitDesign

DIMS = (2, 4, 8, 16, 32)
SIZES = (64, 256, 1024)


def shifted_halton(n: int, dim: int, generator: torch.Generator) -> np.ndarray:
    """The reference arm: radical inverses in the first ``dim`` primes, shifted modulo 1."""
    primes = [p for p in range(2, 200) if all(p % q for q in range(2, math.isqrt(p) + 1))][:dim]
    idx = np.arange(1, n + 1)
    cols = []
    for base in primes:
        value, rest, scale = np.zeros(n), idx.copy(), 1.0 / base
        while rest.any():
            value += (rest % base) * scale
            rest //= base
            scale /= base
        cols.append(value)
    return np.remainder(np.stack(cols, 1) + torch.rand(dim, generator=generator).double().numpy(), 1.0)


def cell(dim: int, n: int, replicates: int) -> dict[str, float]:
    arms: dict[str, list[float]] = {"i.i.d.": [], "shifted Halton (before)": [], "halton": [],
                                    "sobol": [], "lhs": []}
    for rep in range(replicates):
        arms["i.i.d."].append(qmc.discrepancy(
            UnitDesign("uniform", dim, torch.Generator().manual_seed(rep)).draw(n).double().numpy()))
        arms["shifted Halton (before)"].append(
            qmc.discrepancy(shifted_halton(n, dim, torch.Generator().manual_seed(rep))))
        for design in ("halton", "sobol", "lhs"):
            points = UnitDesign(design, dim, torch.Generator().manual_seed(rep)).draw(n)
            arms[design].append(qmc.discrepancy(points.double().numpy()))
    return {name: float(np.mean(values)) for name, values in arms.items()}


def render(results: dict[tuple[int, int], dict[str, float]], replicates: int) -> str:
    names = list(next(iter(results.values())))
    lines = ["# Space-filling designs", "", *provenance(command_line()),
             f"Centred L2 discrepancy (`scipy.stats.qmc.discrepancy`), mean of {replicates} seeds, "
             "relative to i.i.d. points of the same size (< 1: better spread; the i.i.d. column is "
             "the absolute value).", "",
             "| d | n | " + " | ".join(names) + " |", "|---:|---:|" + "---:|" * len(names)]
    for (dim, n), row in results.items():
        iid = row["i.i.d."]
        cells = [f"{iid:.3g}"] + [f"{row[name] / iid:.3f}" for name in names[1:]]
        lines.append(f"| {dim} | {n} | " + " | ".join(cells) + " |")
    before = [row["shifted Halton (before)"] / row["halton"] for row in results.values()]
    lines += ["", f"The shifted unscrambled Halton has {min(before):.2f}-{max(before):.2f}x the "
              "discrepancy of scipy's scrambled Halton (`design=halton` now) over these cells; "
              "`lhs` is scipy's Latin hypercube, `sobol` torch's scrambled Sobol. The held-out set "
              "of the simulators is the scrambled Halton design of `problem.eval_seed`."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replicates", type=int, default=20)
    parser.add_argument("--out", type=Path, default=BENCHMARKS / "designs.md")
    parser.add_argument("--quick", action="store_true", help="2 replicates, d = 2 and 16, n = 64")
    args = parser.parse_args()
    dims, sizes = ((2, 16), (64,)) if args.quick else (DIMS, SIZES)
    if args.quick:
        args.replicates = 2
    results = {(dim, n): cell(dim, n, args.replicates) for dim in dims for n in sizes}
    text = render(results, args.replicates)
    args.out.write_text(text, encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
