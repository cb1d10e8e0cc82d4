"""Sampling speed and memory: the importance sampler's ``select`` against the raw torch draw of
the same law, with a fresh and with a reused |Q|, on pools of 1e4…1e7; peak memory at the largest
pool (child processes); the active sampler's refinement up to its cap. Writes
benchmarks/sampling.md (and .json).

    python scripts/bench/sampling.py            # about 4 min on 2 cores
    python scripts/bench/sampling.py --quick    # a smoke run (small pools)
    python scripts/bench/sampling.py --device cuda

Every timing is the best of k calls, the compared calls interleaved in one process, so the
ratio survives a noisy machine. OMP_WAIT_POLICY is set to PASSIVE for this process unless set
(it must be, before torch is imported).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # after OMP_WAIT_POLICY, which OpenMP reads when torch loads it
from common import (
    BENCHMARKS,
    MB,
    ROOT,
    command_line,
    fmt,
    interleaved_best,
    load_meter,
    merge_json,
    provenance,
)

MULTINOMIAL_LIMIT = 2**24


def proc_kb(field: str) -> float:
    """A ``/proc/self/status`` field in kB (VmRSS, VmHWM)."""
    text = Path("/proc/self/status").read_text()
    return float(re.search(rf"{field}:\s*(\d+)", text).group(1))


def reset_peak_rss() -> bool:
    """Reset this process's VmHWM (Linux ``clear_refs`` 5); False where not possible."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def make_pool_q(n: int, device: torch.device) -> torch.Tensor:
    """|Q| of a 1D pool with a pole at 0.3 (float32, as the runner passes it)."""
    gen = torch.Generator(device=device).manual_seed(0)
    return (torch.rand(n, generator=gen, device=device) * 2 - 1 - 0.3).abs()


class RawLaw:
    """The sampler's default law written as plain torch, the minimum any code must compute:
    u = 1/((a/median a)^p + 1/max_weight), a = max(|q|, floor), plus the uniform share; in buffers
    reused from call to call (as the sampler's are), drawn either way raw torch can draw it."""

    def __init__(self, n: int, device: torch.device, share: float = 0.1, power: float = 2.0,
                 max_weight: float = 100.0, floor: float = 1e-6) -> None:
        self.share, self.power, self.max_weight, self.floor = share, power, max_weight, floor
        self.u = torch.empty(n, device=device)
        self.cdf = torch.empty(n, dtype=torch.float64, device=device)

    def weights(self, q: torch.Tensor) -> torch.Tensor:
        a = torch.clamp_min(q.abs(), self.floor, out=self.u)
        ref = a[:: max(1, a.numel() // 1024)].median()
        u = a.div_(ref).pow_(self.power).add_(1.0 / self.max_weight).reciprocal_()
        return u.add_(u.sum() * self.share / ((1.0 - self.share) * u.numel()))

    def multinomial(self, q: torch.Tensor, batch: int, gen: torch.Generator) -> torch.Tensor:
        return torch.multinomial(self.weights(q), batch, replacement=True, generator=gen)

    def searchsorted(self, q: torch.Tensor, batch: int, gen: torch.Generator) -> torch.Tensor:
        cdf = self.cdf.copy_(self.weights(q)).cumsum_(0)  # no float64 temporary of the pool
        u = torch.rand(batch, generator=gen, device=cdf.device, dtype=torch.float64) * cdf[-1]
        return torch.searchsorted(cdf, u, right=True)


def raw_fresh(q: torch.Tensor, batch: int, gen: torch.Generator) -> torch.Tensor:
    """The raw draw from a fresh |Q| with new buffers (the memory comparison's reference)."""
    law = RawLaw(q.numel(), q.device)
    if q.numel() <= MULTINOMIAL_LIMIT:
        return law.multinomial(q, batch, gen)
    return law.searchsorted(q, batch, gen)


def raw_reused(cdf: torch.Tensor, batch: int, gen: torch.Generator) -> torch.Tensor:
    """Raw limit with a reused |Q|: searchsorted into the law's cached cumulative sum."""
    u = torch.rand(batch, generator=gen, device=cdf.device, dtype=torch.float64) * cdf[-1]
    return torch.searchsorted(cdf, u, right=True)


def time_pool(n: int, batch: int, repeats: int, device: torch.device) -> dict[str, Any]:
    """Best-of-k ms of the raw draws and the sampler's, interleaved: a fresh |Q| each call (the
    raw reference is the faster of multinomial and cumulative sum + searchsorted, both in reused
    buffers), ZeroProofML's ``sample_batch`` (its batch of inputs gathered too) and a reused |Q|."""
    from nearpole_exp.sampling.importance import ImportanceSampler
    from nearpole_exp.sampling.zeroproof import ZeroProofSampler

    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
    q = make_pool_q(n, device)
    x = q[:, None]  # a 1-D pool's inputs, for the gather of sample_batch
    gen = torch.Generator(device=device).manual_seed(1)
    law = RawLaw(n, device)
    cdf = torch.cumsum(law.weights(q), 0, dtype=torch.float64).clone()
    fresh, reused, seed_api = ImportanceSampler(), ImportanceSampler(), ZeroProofSampler()
    table = reused.prepare(q)
    fns = {
        "raw_multinomial": lambda: law.multinomial(q, batch, gen),
        "raw_searchsorted": lambda: law.searchsorted(q, batch, gen),
        "fresh": lambda: fresh.select(n, batch, values=q, device=device),
        "sample_batch": lambda: seed_api.sample_batch(x, q, batch),
        "raw_reused": lambda: raw_reused(cdf, batch, gen),
        "reused": lambda: reused.select(n, batch, values=table, device=device),
    }
    if n > MULTINOMIAL_LIMIT:
        fns.pop("raw_multinomial")
    best = interleaved_best(fns, repeats, sync)
    raw = {k: v for k, v in best.items() if k.startswith("raw_") and k != "raw_reused"}
    method = min(raw, key=raw.get)
    return {**best, "raw_fresh": raw[method], "raw_method": method.removeprefix("raw_")}


def sampling_throughput(sizes: list[int], batch: int, repeats: int,
                        device: torch.device) -> list[dict[str, float]]:
    """:func:`time_pool` per pool size: best of many calls where a call takes microseconds (a
    best of 7 at 1e4 is still mostly noise), fewer at 1e7."""
    rows = []
    for n in sizes:
        k = repeats * 40 if n <= 10**5 else repeats * 4 if n <= 10**6 else max(3, repeats // 2)
        rows.append({"n": n, **time_pool(n, batch, k, device)})
        gc.collect()
    return rows


def child_memory(n: int, batch: int, device: torch.device, draw: str) -> dict[str, Any]:
    """Peak extra memory of 3 draws of kind ``draw`` on a pool of ``n``, in a fresh process
    (``fresh``: a new |Q| tensor each draw, as after every refresh)."""
    from nearpole_exp.sampling.importance import ImportanceSampler

    gen = torch.Generator(device=device).manual_seed(1)
    sampler = ImportanceSampler()
    qs = [make_pool_q(n, device) for _ in range(3)]  # built before the measurement starts
    fn = {"raw_fresh": lambda q: raw_fresh(q, batch, gen),
          "fresh": lambda q: sampler.select(n, batch, values=q, device=device)}[draw]
    out: dict[str, Any] = {"n": n, "draw": draw, "pool_q_mb": qs[0].numel() * qs[0].element_size() / MB}
    if device.type == "cuda":
        out["method"] = "torch.cuda.max_memory_allocated after reset_peak_memory_stats"
        torch.cuda.synchronize(device)
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        for q in qs:
            fn(q)
        torch.cuda.synchronize(device)
        out["extra_mb"] = (torch.cuda.max_memory_allocated(device) - base) / MB
        out["kept_mb"] = (torch.cuda.memory_allocated(device) - base) / MB
        return out
    gc.collect()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    exact = reset_peak_rss()
    base = proc_kb("VmRSS") / 1024
    for q in qs:
        fn(q)
    gc.collect()
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if exact:
        out["method"] = "VmHWM − VmRSS, peak reset via /proc/self/clear_refs after building the pools"
        out["extra_mb"] = proc_kb("VmHWM") / 1024 - base
    else:
        out["method"] = "ru_maxrss after − before (undercounts if building the pool peaked higher)"
        out["extra_mb"] = after - before
    out["kept_mb"] = proc_kb("VmRSS") / 1024 - base
    out["process_rss_mb"] = base
    return out


def sampling_memory(n: int, batch: int, device: torch.device) -> list[dict[str, Any]]:
    """:func:`child_memory` for each draw kind, each in its own child process (a fresh heap)."""
    rows = []
    for draw in ("raw_fresh", "fresh"):
        cmd = [sys.executable, __file__, "--child-memory", str(n), "--child-draw", draw,
               "--batch", str(batch), "--device", str(device)]
        res = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
        rows.append(json.loads(res.stdout.strip().splitlines()[-1]) if res.returncode == 0
                    else {"n": n, "draw": draw, "error": res.stderr.strip()[-300:]})
    return rows


def active_refinement(cases: list[tuple[int, int, int]], time_cap_s: float) -> list[dict[str, Any]]:
    """ActiveSampler.propose on rational1d until the grid cap (or no new points): per-call times."""
    from nearpole_exp.pool import Pool
    from nearpole_exp.problems.rational1d import Rational1D
    from nearpole_exp.sampling.active import ActiveSampler, ActiveSamplerConfig

    problem = Rational1D()
    rows = []
    for cap, per_round, level in cases:
        sampler = ActiveSampler(ActiveSamplerConfig(max_grid_points=cap, points_per_round=per_round,
                                                    max_refinement_level=level))
        times: list[float] = []
        round_idx = 0
        while sum(times) < time_cap_s:
            start = time.perf_counter()
            new = sampler.propose(problem, Pool(), round_idx)
            times.append(time.perf_counter() - start)
            round_idx += 1
            if new is None or len(new) == 0:
                break
        rows.append({"cap": cap, "points_per_round": per_round, "max_level": level,
                     "calls": len(times), "points": len(sampler.points),
                     "first_ms": times[0] * 1e3, "median_ms": statistics.median(times) * 1e3,
                     "last_ms": times[-1] * 1e3, "total_s": sum(times),
                     "stopped_by_time_cap": sum(times) >= time_cap_s})
    return rows


def measure(args: argparse.Namespace) -> dict[str, Any]:
    device = torch.device(args.device)
    sizes = [10**4, 10**5] if args.quick else [10**4, 10**5, 10**6, 10**7]
    out: dict[str, Any] = {"batch": args.batch, "device": str(device)}
    out["throughput"] = sampling_throughput(sizes, args.batch, args.repeats, device)
    out["memory"] = sampling_memory(sizes[-1], args.batch, device)
    if device.type != "cpu":
        return out  # ActiveSampler refines on the CPU: measured by the CPU run
    cases = [(4096, 256, 6), (4096, 256, 30)] if args.quick else [
        (4096, 256, 6), (4096, 256, 30), (65536, 4096, 30), (65536, 256, 30)]
    out["active"] = active_refinement(cases, time_cap_s=10.0 if args.quick else 90.0)
    return out


def render(r: dict[str, Any]) -> list[str]:
    lines = [f"Batch {r['batch']}, device {r['device']}, float32 |Q| of a 1D pool, best of "
             "k interleaved calls, ImportanceSampler defaults. Each ratio is against the best raw "
             "draw of the same law (the default soft-capped, median-referenced 1/|Q|² plus the "
             "10 % uniform share, written as plain torch in buffers reused between calls): "
             "**fresh** = a new |Q| tensor every call, the faster of weights + `torch.multinomial` "
             "and weights + cumulative sum + searchsorted (named) vs `select(q=tensor)`; "
             "**sample_batch** = ZeroProofML's seed API (`ZeroProofSampler.sample_batch`: the "
             "draw, its counts and the batch of inputs gathered) vs the same raw draw; "
             "**reused** = the same |Q| (searchsorted into the cached cumulative sum) vs "
             "`select(q=sampler.prepare(q))`. The sampler also returns the correction weights "
             "and keeps its statistics.", "",
             "| pool | best raw (fresh) | raw (ms) | select fresh (ms) | vs raw | sample_batch (ms) "
             "| vs raw | raw reused (ms) | select reused (ms) | vs raw |",
             "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for row in r["throughput"]:
        lines.append(f"| {row['n']:.0e} | {row['raw_method']} | {fmt(row['raw_fresh'])} | "
                     f"{fmt(row['fresh'])} | {row['fresh'] / row['raw_fresh']:.2f}× | "
                     f"{fmt(row['sample_batch'])} | {row['sample_batch'] / row['raw_fresh']:.2f}× | "
                     f"{fmt(row['raw_reused'])} | {fmt(row['reused'])} | "
                     f"{row['reused'] / row['raw_reused']:.2f}× |")
    mem = r["memory"]
    first = mem[0]
    peak = {m["draw"]: m.get("extra_mb") for m in mem}
    ratio = (f"{peak['fresh'] / peak['raw_fresh']:.2f}×" if peak.get("fresh") and
             peak.get("raw_fresh") else "n/a")
    lines += ["", f"Memory of 3 draws, each from a new |Q| tensor, on a pool of {first['n']:.0e}, "
              f"each kind in a fresh child process (method: {first.get('method', 'n/a')}; one "
              f"float32 |Q| tensor is {fmt(first.get('pool_q_mb'))} MB). Peak = the most extra "
              "memory resident at once; kept = still resident afterwards (the sampler keeps its "
              f"float32 weights and float64 cumulative sum to reuse): sampler peak / raw peak = "
              f"{ratio}.", "", "| draw | peak extra (MB) | kept (MB) |", "|---|---:|---:|"]
    for row in mem:
        lines.append(f"| {row['draw']} | {fmt(row.get('extra_mb'))} | {fmt(row.get('kept_mb'))} |")
    if "active" not in r:
        return lines
    lines += ["", "ActiveSampler.propose on rational1d until the grid cap or no new points "
              "(`max_level` = max_refinement_level; the conf default is 6):", "",
              "| cap | points/round | max_level | calls | points | first (ms) | median (ms) "
              "| last (ms) | total (s) |", "|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for a in r["active"]:
        stop = " (time cap)" if a["stopped_by_time_cap"] else ""
        lines.append(f"| {a['cap']} | {a['points_per_round']} | {a['max_level']} | {a['calls']} | "
                     f"{a['points']}{stop} | {fmt(a['first_ms'])} | {fmt(a['median_ms'])} | "
                     f"{fmt(a['last_ms'])} | {fmt(a['total_s'])} |")
    return lines


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="small pools, a smoke run")
    p.add_argument("--repeats", type=int, default=7, help="k of best-of-k")
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", type=Path, default=BENCHMARKS / "sampling.md")
    p.add_argument("--child-memory", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--child-draw", default="raw_fresh", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child_memory:
        print(json.dumps(child_memory(args.child_memory, args.batch, torch.device(args.device),
                                        args.child_draw)))
        return
    torch.manual_seed(0)
    record: dict[str, Any] = {"command": command_line()}
    with load_meter(record):
        record["data"] = measure(args)
    merge_json(args.out.with_suffix(".json"), args.device, record)
    lines = ["# Sampling speed and memory", "", *provenance(record["command"], record),
             *render(record["data"])]
    args.out.write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
