"""Time importance/hybrid batch selection against a raw vectorised torch draw, same process.

Raw draw: ``w = |q|^-p; torch.multinomial(w, B, replacement=True)`` (no floor, cap, mixture,
corrections or statistics). "select, new q" recomputes the weights and their cumulative sum on
every call (a pool whose |Q| changed); "select" is the steady state between |Q| refreshes, where
the sampler reuses them. It fails above 2^24 categories, where the table says so; the
samplers use an inverse CDF (cumsum + searchsorted) with no such limit. Prints a markdown
table of best-of-``--repeats`` times and ratios to the raw draw.

    python scripts/bench_sampling_speed.py --sizes 1e4 1e5 1e6 1e7 --device cpu
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch

from nearpole_exp.sampling.hybrid import HybridSampler, HybridSamplerConfig
from nearpole_exp.sampling.importance import ImportanceSampler, ImportanceSamplerConfig

MULTINOMIAL_LIMIT = 2**24


def best_time(fn: Callable[[], object], repeats: int, device: torch.device) -> float:
    """Best wall time in ms over ``repeats`` calls after one warm-up call."""
    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    fn()
    sync()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync()
        best = min(best, time.perf_counter() - start)
    return best * 1e3


def bench_size(n: int, batch: int, power: float, repeats: int, device: torch.device) -> dict[str, float]:
    """Times (ms) of the raw draw and of the samplers on one pool of ``n`` samples."""
    gen = torch.Generator(device=device).manual_seed(0)
    x = torch.rand(n, 1, generator=gen, device=device) * 2 - 1
    q = x[:, 0] - 0.3
    importance = ImportanceSampler(ImportanceSamplerConfig(weight_power=power))
    hybrid = HybridSampler(HybridSamplerConfig(weight_power=power, active_every=0))

    def raw() -> torch.Tensor:
        w = q.abs().pow(-power)
        return torch.multinomial(w, batch, replacement=True, generator=gen)

    out = {"raw": float("nan")}
    if n <= MULTINOMIAL_LIMIT:
        out["raw"] = best_time(raw, repeats, device)
    def cold() -> object:
        importance.clear_cache()
        return importance.select(n, batch, q=q, device=device)

    out["cold"] = best_time(cold, repeats, device)
    out["select"] = best_time(lambda: importance.select(n, batch, q=q, device=device), repeats, device)
    out["sample_batch"] = best_time(lambda: importance.sample_batch(x, q, batch), repeats, device)
    out["hybrid"] = best_time(lambda: hybrid.select(n, batch, q=q, device=device), repeats, device)
    return out


def ratio(value: float, raw: float) -> str:
    return "n/a" if raw != raw else f"{value / raw:.2f}x"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", type=float, default=[1e4, 1e5, 1e6, 1e7])
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--power", type=float, default=2.0)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    print(speed_table([int(v) for v in args.sizes], args.batch, args.power, args.repeats, device),
          flush=True)


def speed_table(sizes: list[int], batch: int, power: float, repeats: int,
                device: torch.device) -> str:
    """The markdown timing table (with its heading line) for pools of ``sizes``."""
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else \
        f"cpu ({torch.get_num_threads()} threads)"
    lines = [f"Batch selection, batch {batch}, p = {power}, best of {repeats}, {name}, "
             f"torch {torch.__version__}", "",
             "| pool | raw multinomial (ms) | select, new q (ms) | vs raw | select (ms) | vs raw "
             "| sample_batch (ms) | vs raw | hybrid select (ms) | vs raw |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for n in sizes:
        t = bench_size(n, batch, power, repeats, device)
        raw = "fails (> 2^24)" if t["raw"] != t["raw"] else f"{t['raw']:.3f}"
        lines.append(f"| {n:.0e} | {raw} | {t['cold']:.3f} | {ratio(t['cold'], t['raw'])} "
                     f"| {t['select']:.3f} | {ratio(t['select'], t['raw'])} "
                     f"| {t['sample_batch']:.3f} | {ratio(t['sample_batch'], t['raw'])} "
                     f"| {t['hybrid']:.3f} | {ratio(t['hybrid'], t['raw'])} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
