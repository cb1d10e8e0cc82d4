"""Benchmark simulation executors with a solver that sleeps to emulate cost.

Three tables (markdown on stdout):

1. executor throughput: ``--sims`` simulations of ``--cost`` seconds each, submitted at once to
   a warm executor and drained (simulations/s), in-process vs process pool with 1, 2, 4 workers;
2. asynchronous training (:func:`measure_async_training`): a SimulationFeed keeps the executor
   busy while a 1D CNN surrogate trains on whatever has arrived; simulations/s, training
   steps/s and the trainer's idle fraction (share of wall time not spent in training steps);
3. in-process overhead: the in-process executor (split per simulation, merge, one pool.add)
   against a direct ``problem.label`` + ``pool.add`` on cheap batched problems, to show the
   default path is not slowed down.

Usage: ``python scripts/bench/executors.py [--cost 0.2] [--sims 40] [--workers 1 2 4]``
(``--quick``: a smoke run of a few cheap simulations).
:func:`measure_async_training` is the function the runner integration can be compared with.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from common import ROOT, command_line, provenance

sys.path.insert(0, str(ROOT))  # tests.sleep_solver

from nearpole_exp.acquisition.feed import SimulationFeed
from nearpole_exp.acquisition.static import StaticBreeder
from nearpole_exp.execution import (
    Executor,
    InProcessExecutor,
    ProcessPoolExecutor,
    merge_results,
)
from nearpole_exp.execution.solvers import CallableSimulator
from nearpole_exp.models.cnn import CNN1D
from nearpole_exp.pool import Pool
from nearpole_exp.problems.base import Problem
from nearpole_exp.problems.burgers import Burgers1D
from nearpole_exp.problems.landscape import Landscape
from nearpole_exp.problems.rational1d import Rational1D
from tests.sleep_solver import SleepSolver


def sleeping_problem(cost_s: float) -> CallableSimulator:
    """A 2-parameter simulator whose runs sleep ``cost_s · speed`` s; speed fixed to 1 here."""
    return CallableSimulator(fn=SleepSolver(cost_s, n_steps=10, grid=32), low=[0.999, -0.8],
                             high=[1.0, 0.8], grid=32, n_steps=10, n_eval=4)


def make_executor(kind: str, problem: Problem, workers: int) -> Executor:
    """A warm executor: pool workers have built the problem before timing starts."""
    if kind == "inprocess":
        return InProcessExecutor(problem=problem)
    ex = ProcessPoolExecutor(problem=problem, workers=workers)
    while ex.n_ready < workers:
        time.sleep(0.02)
    return ex


def executor_throughput(kind: str, workers: int, cost_s: float, n_sims: int) -> float:
    """Simulations per second for ``n_sims`` submitted at once and drained."""
    problem = sleeping_problem(cost_s)
    params = problem.uniform(n_sims, torch.Generator().manual_seed(0))
    with make_executor(kind, problem, workers) as ex:
        start = time.perf_counter()
        ex.submit(torch.arange(n_sims), params)
        results = ex.drain()
        wall = time.perf_counter() - start
    assert len(results) == n_sims and all(r.ok for r in results)
    return n_sims / wall


@dataclass
class AsyncStats:
    """What :func:`measure_async_training` measured."""

    sims_per_s: float
    steps_per_s: float
    idle_fraction: float
    steps: int
    wall_s: float


def measure_async_training(executor: Executor, problem: Problem, budget: int, generation_size: int,
                           batch_size: int = 64, seed: int = 0,
                           train_step: Callable[[Pool], None] | None = None) -> AsyncStats:
    """Train while ``budget`` simulations stream in through a SimulationFeed; the trainer waits
    only while the pool is empty. Idle fraction = 1 − (time inside training steps) / wall."""
    torch.manual_seed(seed)
    breeder = StaticBreeder(problem.bounds, design="uniform")
    feed = SimulationFeed(executor, breeder, budget, generation_size=generation_size,
                          regenerate_after=generation_size)
    pool = Pool()
    step_fn = train_step or cnn_trainer(problem, batch_size)
    steps, train_s = 0, 0.0
    start = time.perf_counter()
    while not feed.done:
        merged, ids = merge_results(feed.pump(timeout=0.0 if len(pool) else 0.5))
        if merged is not None:
            pool.add(merged, n_points=len(ids))
        if len(pool):
            t0 = time.perf_counter()
            step_fn(pool)
            train_s += time.perf_counter() - t0
            steps += 1
    wall = time.perf_counter() - start
    return AsyncStats(budget / wall, steps / wall, 1 - train_s / wall, steps, wall)


def cnn_trainer(problem: Problem, batch_size: int) -> Callable[[Pool], None]:
    """One AdamW step of a small periodic CNN on a uniform batch of the pool."""
    model = CNN1D(**problem.model_dims(), width=16, depth=2)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)

    def step(pool: Pool) -> None:
        idx = torch.randint(len(pool), (batch_size,))
        loss = (model(pool.inputs[idx]) - pool.targets[idx]).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()

    return step


def inprocess_overhead(problem: Problem, n: int, repeats: int = 5) -> tuple[float, float]:
    """Best-of wall seconds of (direct label + pool.add, in-process executor + merge + pool.add)."""
    params = problem.uniform(n, torch.Generator().manual_seed(0))

    def direct() -> None:
        Pool().add(problem.label(params), n_points=n)

    def executor() -> None:
        ex = InProcessExecutor(problem=problem, nonfinite="keep")
        ex.submit(torch.arange(n), params)
        merged, ids = merge_results(ex.poll())
        Pool().add(merged, n_points=len(ids))

    times = {}
    for name, fn in (("direct", direct), ("executor", executor)):
        fn()
        best = float("inf")
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            best = min(best, time.perf_counter() - t0)
        times[name] = best
    return times["direct"], times["executor"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cost", type=float, default=0.2, help="seconds per simulation")
    parser.add_argument("--sims", type=int, default=40, help="simulations per measurement")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--quick", action="store_true", help="8 simulations of 0.05 s, 1-2 workers")
    args = parser.parse_args()
    if args.quick:
        args.cost, args.sims, args.workers = 0.05, 8, [1, 2]
    torch.set_num_threads(1)
    configs = [("inprocess", 1)] + [("process_pool", w) for w in args.workers]
    print("\n".join(provenance(command_line())))
    print(f"Cost {args.cost} s per simulation, {args.sims} simulations.\n")
    print("| executor | workers | sims/s | ideal sims/s |\n|---|---|---|---|")
    for kind, w in configs:
        rate = executor_throughput(kind, w, args.cost, args.sims)
        print(f"| {kind} | {w} | {rate:.2f} | {w / args.cost:.2f} |")
    print("\n| executor | workers | sims/s | train steps/s | trainer idle | steps |\n"
          "|---|---|---|---|---|---|")
    for kind, w in configs:
        problem = sleeping_problem(args.cost)
        with make_executor(kind, problem, w) as ex:
            stats = measure_async_training(ex, problem, args.sims, generation_size=8)
        print(f"| {kind} | {w} | {stats.sims_per_s:.2f} | {stats.steps_per_s:.1f} | "
              f"{stats.idle_fraction:.1%} | {stats.steps} |")
    print("\n| problem | points | direct label + pool.add (ms) | in-process executor (ms) | "
          "overhead per point (µs) |\n|---|---|---|---|---|")
    cases = (("burgers1d", Burgers1D(n_eval=2), 64), ("landscape", Landscape(), 128),
             ("rational1d", Rational1D(), 4096), ("rational1d", Rational1D(), 20000))
    for name, problem, n in cases[2:3] if args.quick else cases:
        direct, via = inprocess_overhead(problem, n)
        print(f"| {name} | {n} | {1e3 * direct:.2f} | {1e3 * via:.2f} | "
              f"{1e6 * (via - direct) / n:.1f} |")


if __name__ == "__main__":
    main()
