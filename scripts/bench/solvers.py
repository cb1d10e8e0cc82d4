"""Time our batched ETDRK4 solvers against exponax's jitted steppers, side by side in one process.

Both integrate a batch of trajectories for the same number of steps with the same dt, grid and
equation (ETDRK4, 2/3 dealiasing, float64; exponax with ``jax_enable_x64``, vmapped over the
batch, jit-compiled once before timing) and keep every step. Cases: the 64-point training grid
and the simulation grid the resolution rule picks for the box's hardest row. Prints a markdown
table of the best and the median of ``--repeats`` calls, wall and CPU time, the two solvers'
calls interleaved (so load hits both alike), and the ratio ours / exponax. Needs the ``bench``
extra (exponax, JAX).

    python scripts/bench/solvers.py --batch 64 --steps 250 --repeats 7
    python scripts/bench/solvers.py --quick      # a smoke run
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from common import command_line, interleaved, md_table, provenance

from nearpole_exp.problems import spectral


@dataclass(frozen=True)
class Case:
    """One equation on one grid: ``coef`` is ν (Burgers) or the domain length (KS)."""

    problem: str
    grid: int
    dt: float
    coef: float
    label: str


CASES = [
    Case("burgers", 64, 0.01, 0.05, "training grid"),
    Case("burgers", 1536, 0.1 / 40, 0.01, "simulation grid at ν = 0.01"),
    Case("ks", 64, 0.05, 30.0, "training grid"),
    Case("ks", 192, 0.05, 100.0, "simulation grid at L = 100"),
]


def initial_fields(case: Case, batch: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(0)
    amps = 0.2 + 0.8 * torch.rand(batch, 3, generator=gen, dtype=torch.float64)
    return amps @ spectral.sine_cosine_basis(3, case.grid)


def ours(case: Case, u0: torch.Tensor, steps: int) -> Callable[[], torch.Tensor]:
    length = 2 * math.pi if case.problem == "burgers" else case.coef
    k = spectral.wavenumbers(case.grid, torch.full((len(u0),), length, dtype=torch.float64))
    lin = -case.coef * k * k if case.problem == "burgers" else k * k - k**4
    return lambda: spectral.integrate(u0, lin, k, case.dt, 1, steps)


def exponax_rollout(case: Case, u0: torch.Tensor, steps: int) -> Callable[[], object]:
    import exponax
    import jax
    import jax.numpy as jnp

    if case.problem == "burgers":
        stepper = exponax.stepper.Burgers(1, 2 * math.pi, case.grid, case.dt, diffusivity=case.coef,
                                          order=4)
    else:
        stepper = exponax.stepper.KuramotoSivashinskyConservative(1, case.coef, case.grid, case.dt,
                                                                 order=4)
    roll = jax.jit(jax.vmap(exponax.rollout(stepper, steps, include_init=True)))
    state = jnp.asarray(u0.numpy())[:, None, :]
    return lambda: roll(state).block_until_ready()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=250)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: leave as is)")
    parser.add_argument("--quick", action="store_true", help="4 rows, 20 steps, 2 repeats")
    args = parser.parse_args()
    if args.quick:
        args.batch, args.steps, args.repeats = 4, 20, 2
    import jax

    jax.config.update("jax_enable_x64", True)
    if args.threads:
        torch.set_num_threads(args.threads)
    print("\n".join(provenance(command_line())))
    print(f"jax {jax.__version__}; batch {args.batch}, {args.steps} steps, {args.repeats} "
          "interleaved calls each (best / median, wall and CPU of this process).\n")
    rows = []
    for case in CASES:
        u0 = initial_fields(case, args.batch)
        mine, theirs = ours(case, u0, args.steps), exponax_rollout(case, u0, args.steps)
        a, b = mine(), theirs()
        diff = float((a - torch.from_numpy(jax.device_get(b)[:, :, 0, :].copy())).abs().max())
        t = interleaved({"ours": mine, "exponax": theirs}, args.repeats)
        rows.append([case.problem, case.grid, f"{case.dt:.4g}", case.label,
                     f"{t['ours'].wall_best:.1f} / {t['ours'].wall_median:.1f}",
                     f"{t['exponax'].wall_best:.1f} / {t['exponax'].wall_median:.1f}",
                     f"{t['ours'].wall_best / t['exponax'].wall_best:.2f}",
                     f"{t['ours'].cpu_median / t['exponax'].cpu_median:.2f}", f"{diff:.1e}"])
    print("\n".join(md_table(["problem", "grid", "dt", "case", "ours wall best / median (ms)",
                              "exponax wall best / median (ms)", "ours / exponax (wall best)",
                              "ours / exponax (CPU median)", "max diff"], rows, "lrrlrrrrr")))
    print(f"\nWhole simulations, {args.batch} rows drawn uniformly from the default box "
          "(`problem.simulate`, every frame of the preset's horizon), interleaved:\n")
    rows = []
    for name, (resolved, old) in problem_pairs().items():
        params = resolved.uniform(args.batch, torch.Generator().manual_seed(1))
        t = interleaved({"new": lambda p=resolved, x=params: p.simulate(x),
                         "old": lambda p=old, x=params: p.simulate(x)}, max(1, args.repeats // 3))
        rows.append([name, f"{t['new'].wall_best / 1e3:.2f}", f"{t['old'].wall_best / 1e3:.3f}",
                     f"{t['new'].wall_best / t['old'].wall_best:.0f}"])
    print("\n".join(md_table(["problem", "resolved per row (s)", "fixed 64 points (s)", "ratio"],
                             rows)))


def problem_pairs() -> dict[str, tuple[object, object]]:
    """The presets' problems, resolved and as the old fixed 64-point, 10-substep solve."""
    from nearpole_exp.problems.burgers import Burgers1D
    from nearpole_exp.problems.ks import KuramotoSivashinsky1D

    old = {"sim_grid": 64, "substeps": 10, "allow_under_resolved": True}
    return {"burgers (ν 0.01–0.1)": (Burgers1D(), Burgers1D(**old)),
            "ks (L 10–100)": (KuramotoSivashinsky1D(length_high=100.0),
                              KuramotoSivashinsky1D(length_high=100.0, **old))}


if __name__ == "__main__":
    main()
