"""Measured costs of nearpole_exp, so that a large run can be predicted; writes benchmarks/scaling.md.

Sections (all when none is named):

* ``--sampling``: ImportanceSampler ``select`` vs the raw vectorised draw of the same law, with a
  fresh and with a reused |Q|, on pools of 1e4…1e7; peak memory at the largest pool (child
  process); ActiveSampler refinement to its cap.
* ``--ogas``: DDPM training steps/s, ``next_parameters`` latency, the background thread's
  overhead on a main training loop, cost vs parameter dimension.
* ``--e2e``: the default run (wall, peak RSS) and a 12-job sweep, basic launcher vs joblib.
* ``--online``: an online run (experiment=landscape) as the simulation budget grows.

Every timing is the best of ``--repeats`` calls; where two things are compared their calls are
interleaved in one process, so the ratio survives a noisy machine. Each section records its
command, machine, date and the CPU time other processes used while it ran (the load). Results
are merged into ``benchmarks/scaling.json`` and the markdown is rebuilt from it, so a section can
be re-measured alone.

    python scripts/bench_scaling.py                     # everything, about 10 min on 2 cores
    python scripts/bench_scaling.py --sampling --quick  # a quick look at one section
    python scripts/bench_scaling.py --merge gpu/scaling.json  # add a GPU run's sections, re-render

The script sets ``OMP_WAIT_POLICY=PASSIVE`` for itself unless the variable is already set (it must
be set before torch is imported), so the in-process sections measure the code rather than OpenMP
spin-waits on a shared machine; section c measures runs with and without it.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import gc
import json
import math
import os
import platform
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # after OMP_WAIT_POLICY, which OpenMP reads when torch loads it
from bench_common import cpu_model

ROOT = Path(__file__).resolve().parents[1]
MULTINOMIAL_LIMIT = 2**24
SECTIONS = ("sampling", "ogas", "e2e", "online")
MB = 1024.0 * 1024.0


# ------------------------------------------------------------------------------- measuring
def interleaved_best(fns: dict[str, Callable[[], object]], repeats: int,
                     sync: Callable[[], None] = lambda: None) -> dict[str, float]:
    """Best wall time (ms) of each function over ``repeats`` rounds, the functions taking turns."""
    for fn in fns.values():
        fn()
    sync()
    best = dict.fromkeys(fns, math.inf)
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            sync()
            best[name] = min(best[name], time.perf_counter() - start)
    return {k: v * 1e3 for k, v in best.items()}


def cpu_busy() -> tuple[float, float]:
    """(busy CPU-seconds of the whole machine, CPU-seconds of this process and its children)."""
    with open("/proc/stat") as fh:
        fields = [float(v) for v in fh.readline().split()[1:]]
    tick = os.sysconf("SC_CLK_TCK")
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0.0)
    t = os.times()
    return (sum(fields[:8]) - idle) / tick, t.user + t.system + t.children_user + t.children_system


@contextlib.contextmanager
def load_meter(record: dict[str, Any]) -> Iterator[None]:
    """Record the 1-min load average and the cores other processes kept busy during the block."""
    record["loadavg_before"] = os.getloadavg()[0]
    have_proc = Path("/proc/stat").exists()
    busy0, own0 = cpu_busy() if have_proc else (0.0, 0.0)
    start = time.perf_counter()
    yield
    wall = time.perf_counter() - start
    record["section_wall_s"] = wall
    record["loadavg_after"] = os.getloadavg()[0]
    if have_proc:
        busy1, own1 = cpu_busy()
        record["other_cores_busy"] = max(0.0, (busy1 - busy0) - (own1 - own0)) / max(wall, 1e-9)


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    model = cpu_model()
    mem = ""
    if Path("/proc/meminfo").exists():
        kb = int(re.search(r"MemTotal:\s*(\d+)", Path("/proc/meminfo").read_text()).group(1))
        mem = f"{kb / MB:.1f} GiB"
    nproc = subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip() \
        if shutil.which("nproc") else str(os.cpu_count())
    return {"cpu": model, "nproc": nproc, "memory": mem, "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(), "python": platform.python_version(),
            "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "unset"),
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"}


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


# ----------------------------------------------------------------------------- a. sampling
def make_pool_q(n: int, device: torch.device) -> torch.Tensor:
    """|Q| of a 1D pool with a pole at 0.3 (float32, as the runner passes it)."""
    gen = torch.Generator(device=device).manual_seed(0)
    return (torch.rand(n, generator=gen, device=device) * 2 - 1 - 0.3).abs()


def raw_weights(q: torch.Tensor, share: float = 0.1, power: float = 2.0,
                max_weight: float = 100.0, floor: float = 1e-6) -> torch.Tensor:
    """The sampler's default law written as plain torch, the minimum any code must compute:
    u = 1/((a/median a)^p + 1/max_weight), a = max(|q|, floor), plus the uniform share."""
    a = q.abs().clamp_min(floor)
    ref = a[:: max(1, a.numel() // 1024)].median()
    u = 1.0 / ((a / ref) ** power + 1.0 / max_weight)
    return u + u.sum() * share / ((1.0 - share) * u.numel())


def raw_fresh(q: torch.Tensor, batch: int, gen: torch.Generator) -> torch.Tensor:
    """Raw limit with a fresh |Q|: the law's weights, then multinomial (≤ 2^24) or
    cumulative sum + searchsorted (above)."""
    w = raw_weights(q)
    if w.numel() <= MULTINOMIAL_LIMIT:
        return torch.multinomial(w, batch, replacement=True, generator=gen)
    cdf = torch.cumsum(w, 0, dtype=torch.float64)
    u = torch.rand(batch, generator=gen, device=w.device, dtype=torch.float64) * cdf[-1]
    return torch.searchsorted(cdf, u, right=True)


def raw_reused(cdf: torch.Tensor, batch: int, gen: torch.Generator) -> torch.Tensor:
    """Raw limit with a reused |Q|: searchsorted into the law's cached cumulative sum."""
    u = torch.rand(batch, generator=gen, device=cdf.device, dtype=torch.float64) * cdf[-1]
    return torch.searchsorted(cdf, u, right=True)


def time_pool(n: int, batch: int, repeats: int, device: torch.device) -> dict[str, float]:
    """Best-of-k ms of each raw limit and the sampler's ``select`` (indices, correction weights,
    statistics) with a fresh |Q| tensor and with a prepared table, interleaved."""
    from nearpole_exp.sampling.importance import ImportanceSampler

    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
    q = make_pool_q(n, device)
    gen = torch.Generator(device=device).manual_seed(1)
    cdf = torch.cumsum(raw_weights(q), 0, dtype=torch.float64)
    fresh, reused = ImportanceSampler(), ImportanceSampler()
    table = reused.prepare(q)
    return interleaved_best({
        "raw_fresh": lambda: raw_fresh(q, batch, gen),
        "fresh": lambda: fresh.select(n, batch, q=q, device=device),
        "raw_reused": lambda: raw_reused(cdf, batch, gen),
        "reused": lambda: reused.select(n, batch, q=table, device=device),
    }, repeats, sync)


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
          "fresh": lambda q: sampler.select(n, batch, q=q, device=device)}[draw]
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


def section_sampling(args: argparse.Namespace) -> dict[str, Any]:
    device = torch.device(args.device)
    sizes = [10**4, 10**5] if args.quick else [10**4, 10**5, 10**6, 10**7]
    out: dict[str, Any] = {"batch": args.batch, "device": str(device)}
    out["throughput"] = sampling_throughput(sizes, args.batch, args.repeats, device)
    out["memory"] = sampling_memory(sizes[-1], args.batch, device)
    if device.type != "cpu":
        return out  # ActiveSampler refines on the CPU: measured by the CPU run
    cases = [(4096, 256, 6), (4096, 256, 30), (65536, 4096, 30)]
    if not args.quick:
        cases.append((65536, 256, 30))
    out["active"] = active_refinement(cases, time_cap_s=20.0 if args.quick else 90.0)
    return out


# --------------------------------------------------------------------------------- b. OGAS
def conf_ddpm() -> dict[str, Any]:
    """The ogas/model values of conf/ogas/model/ddpm.yaml (the ``defaults`` list dropped)."""
    import yaml

    node = yaml.safe_load((ROOT / "conf/ogas/model/ddpm.yaml").read_text())
    node.pop("defaults", None)
    return node


def ddpm_steps_per_s(cfg: Any, dim: int, threads: int, repeats: int, steps: int) -> dict[str, float]:
    """Synchronous DDPM training and full breeder steps (ratio MLP + DDPM) per second."""
    from nearpole_exp.acquisition.ogas.ddpm import ConditionalDDPM

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    gen = torch.Generator().manual_seed(0)
    ddpm = ConditionalDDPM(dim, cfg)
    unit, cond = torch.rand(128, dim, generator=gen), torch.rand(128, generator=gen)
    breeder = warm_breeder(dim, cfg, synchronous=True)

    def ddpm_steps() -> None:
        for _ in range(steps):
            ddpm.train_step(unit, cond, None, gen)

    def breeder_steps() -> None:
        breeder.trainer.run_inline(steps)

    t = interleaved_best({"ddpm": ddpm_steps, "breeder": breeder_steps}, repeats)
    torch.set_num_threads(before)
    return {k: steps / (v / 1e3) for k, v in t.items()}


def warm_breeder(dim: int, cfg: Any, synchronous: bool, **breeder: Any) -> Any:
    """An OGAS breeder past generation 0 with a scored reservoir (2000 sims, half of them bred)."""
    from nearpole_exp.acquisition.ogas import DataConfig, OGASBreeder

    opts = dict(synchronous=synchronous, train_steps_per_ask=0, min_train_steps=0,
                start_breed_ratio=0.5, end_breed_ratio=0.7, breakpoint=1)
    opts.update(breeder)
    b = OGASBreeder(torch.tensor([[0.0, 1.0]] * dim), model=cfg, data=DataConfig(), **opts)
    gen = torch.Generator().manual_seed(0)
    for _ in range(2):
        x = b.ask(1000)
        ids = torch.arange(b.n_asked - len(x), b.n_asked)
        b.tell(ids, x[:, 0] + 0.1 * torch.rand(len(x), generator=gen))
    if synchronous:
        b.trainer.run_inline(20)
    return b


def next_parameters_ms(cfg: Any, dim: int, sizes: list[int], repeats: int) -> dict[str, float]:
    """Best-of-k latency of ``next_parameters(n)`` (70 % bred, DDIM) with training excluded."""
    b = warm_breeder(dim, cfg, synchronous=True)
    out = {}
    for n in sizes:
        k = repeats if n <= 1000 else max(2, repeats // 3)
        out[str(n)] = interleaved_best({"np": lambda n=n: b.next_parameters(n)}, k)["np"]
    return out


def main_loop_rate(window_s: float, breeder: Any | None) -> tuple[float, float]:
    """(main MLP steps/s, breeder DDPM steps/s) over a window of ``window_s`` seconds."""
    from nearpole_exp.models.mlp import MLP

    gen = torch.Generator().manual_seed(0)
    model = MLP(3, 1, hidden=64, depth=3)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x = torch.rand(4096, 3, generator=gen)
    y = torch.sin(6 * x).sum(dim=1, keepdim=True)
    for _ in range(5):
        idx = torch.randint(0, 4096, (256,), generator=gen)
        loss = ((model(x[idx]) - y[idx]) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    b0 = breeder.trainer.steps if breeder is not None else 0
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < window_s:
        idx = torch.randint(0, 4096, (256,), generator=gen)
        loss = ((model(x[idx]) - y[idx]) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        steps += 1
    wall = time.perf_counter() - start
    b1 = breeder.trainer.steps if breeder is not None else 0
    return steps / wall, (b1 - b0) / wall


def thread_overhead(cfg: Any, window_s: float, repeats: int) -> list[dict[str, float]]:
    """Main-loop steps/s alone and beside a running OGAS trainer thread, main at 2 and 1 threads."""
    before = torch.get_num_threads()
    best: dict[tuple[int, bool], tuple[float, float]] = {}
    for _ in range(repeats):
        for threads in (before, 1):
            torch.set_num_threads(threads)
            for with_breeder in (False, True):
                b = None
                if with_breeder:
                    b = warm_breeder(2, cfg, synchronous=False, max_train_steps_between_asks=10**9)
                    b.start()
                    b.trainer.refill()
                    time.sleep(0.2)
                rate = main_loop_rate(window_s, b)
                if b is not None:
                    b.close()
                key = (threads, with_breeder)
                if key not in best or rate[0] > best[key][0]:
                    best[key] = rate
    torch.set_num_threads(before)
    rows = []
    for threads in (before, 1):
        alone, beside = best[(threads, False)], best[(threads, True)]
        rows.append({"main_threads": threads, "alone": alone[0], "with_breeder": beside[0],
                     "ratio": beside[0] / alone[0], "breeder_steps_per_s": beside[1]})
    return rows


def section_ogas(args: argparse.Namespace) -> dict[str, Any]:
    from nearpole_exp.acquisition.ogas import DDPMConfig

    yaml_cfg = DDPMConfig(**conf_ddpm())
    configs = {"DDPMConfig()": DDPMConfig(), "conf/ogas/model/ddpm.yaml": yaml_cfg}
    threads = sorted({torch.get_num_threads(), 1}, reverse=True)
    steps = 10 if args.quick else 25
    out: dict[str, Any] = {"conf_ddpm": conf_ddpm()}
    out["train"] = [{"config": name, "main_threads": t,
                     **ddpm_steps_per_s(cfg, 2, t, args.repeats, steps)}
                    for name, cfg in configs.items() for t in threads]
    sizes = [100, 1000] if args.quick else [100, 1000, 10000]
    out["next_parameters"] = [{"config": name, "ms": next_parameters_ms(cfg, 2, sizes, args.repeats)}
                              for name, cfg in configs.items()]
    out["threads"] = thread_overhead(yaml_cfg, 1.0 if args.quick else 2.5,
                                     1 if args.quick else 2)
    dims = [2, 8] if args.quick else [2, 4, 8, 16, 32, 64]
    out["dims"] = []
    for d in dims:
        rate = ddpm_steps_per_s(yaml_cfg, d, 1, max(2, args.repeats // 2), steps)
        lat = next_parameters_ms(yaml_cfg, d, [1000], max(2, args.repeats // 2))
        out["dims"].append({"d": d, "ddpm_ms": 1e3 / rate["ddpm"],
                            "breeder_ms": 1e3 / rate["breeder"], "next_parameters_ms": lat["1000"]})
    return out


# ----------------------------------------------------------------------------- c. end to end
def child_env(policy: str | None) -> dict[str, str]:
    """Environment of a ``python -m nearpole_exp`` child: no W&B; OMP_WAIT_POLICY as asked."""
    env = dict(os.environ)
    env.update({"WANDB_MODE": "disabled", "WANDB_SILENT": "true", "HYDRA_FULL_ERROR": "1"})
    env.pop("OMP_WAIT_POLICY", None)
    if policy:
        env["OMP_WAIT_POLICY"] = policy
    return env


def timed_cli(overrides: list[str], policy: str | None) -> dict[str, Any]:
    """Wall time and peak RSS of one ``python -m nearpole_exp`` process (and its children)."""
    cmd = [sys.executable, "-m", "nearpole_exp", *overrides]
    gnu_time = Path("/usr/bin/time").exists()
    if gnu_time:
        cmd = ["/usr/bin/time", "-v", *cmd]
    start = time.perf_counter()
    res = subprocess.run(cmd, capture_output=True, text=True, env=child_env(policy), cwd=ROOT)
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


def summaries(root: Path) -> list[dict[str, Any]]:
    """summary.json of every job directory under ``root``."""
    return [json.loads(p.read_text()) for p in sorted(root.rglob("summary.json"))]


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


# ------------------------------------------------------------------------------- d. online
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


# ------------------------------------------------------------------------------- rendering
def fmt(v: Any, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "n/a"
    if isinstance(v, float):
        return f"{v:.{digits}g}" if abs(v) < 1000 else f"{v:.0f}"
    return str(v)


def header(rec: dict[str, Any]) -> list[str]:
    m = rec["machine"]
    load = (f"load average {rec['loadavg_before']:.2f} → {rec['loadavg_after']:.2f}; other "
            f"processes kept {fmt(rec.get('other_cores_busy'), 2)} of {m['nproc']} cores busy")
    return [f"Command: `{rec['command']}`  ",
            f"Machine: {m['cpu']}, {m['nproc']} cores (`nproc`), {m['memory']}, torch {m['torch']} "
            f"({m['torch_threads']} threads), Python {m['python']}, GPU {m['gpu']}, "
            f"OMP_WAIT_POLICY {m['omp_wait_policy']}  ",
            f"Date: {rec['date']}; section wall {rec['section_wall_s']:.0f} s; {load}.", ""]


def render_sampling(r: dict[str, Any]) -> list[str]:
    lines = [f"Batch {r['batch']}, device {r['device']}, float32 |Q| of a 1D pool, best of "
             "k interleaved calls, ImportanceSampler defaults. Each ratio is against the raw "
             "limit of the same law (the default soft-capped, median-referenced 1/|Q|² plus the "
             "10 % uniform share, written as plain torch): **fresh** = a new |Q| tensor every "
             "call (weights + `torch.multinomial`, or cumulative sum + searchsorted above 2^24) "
             "vs `select(q=tensor)`; **reused** = the same |Q| (searchsorted into the cached "
             "cumulative sum) vs `select(q=sampler.prepare(q))`. The sampler also returns the "
             "correction weights and keeps its statistics.", "",
             "| pool | raw fresh (ms) | select fresh (ms) | vs raw | raw reused (ms) "
             "| select reused (ms) | vs raw |", "|---:|---:|---:|---:|---:|---:|---:|"]
    for row in r["throughput"]:
        lines.append(f"| {row['n']:.0e} | {fmt(row['raw_fresh'])} | {fmt(row['fresh'])} | "
                     f"{row['fresh'] / row['raw_fresh']:.2f}× | {fmt(row['raw_reused'])} | "
                     f"{fmt(row['reused'])} | {row['reused'] / row['raw_reused']:.2f}× |")
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


def render_ogas(r: dict[str, Any]) -> list[str]:
    lines = ["Synchronous training on a reservoir batch of 128 (DataConfig default), d = 2. "
             "`breeder` = one full breeder step (ratio-MLP step + weighted DDPM step). "
             f"conf/ogas/model/ddpm.yaml = {r['conf_ddpm']}.", "",
             "| DDPM config | torch threads | DDPM steps/s | breeder steps/s |",
             "|---|---:|---:|---:|"]
    for t in r["train"]:
        lines.append(f"| {t['config']} | {t['main_threads']} | {fmt(t['ddpm'])} | "
                     f"{fmt(t['breeder'])} |")
    sizes = sorted({int(k) for n in r["next_parameters"] for k in n["ms"]})
    lines += ["", "`next_parameters(n)` latency (70 % bred by guided DDIM, 30 % design points; "
              "training excluded), best of k:", "",
              "| DDPM config | " + " | ".join(f"n = {n} (ms)" for n in sizes) + " | µs / point at "
              f"n = {sizes[-1]} |", "|---|" + "---:|" * (len(sizes) + 1)]
    for row in r["next_parameters"]:
        ms = {int(k): v for k, v in row["ms"].items()}
        lines.append(f"| {row['config']} | " + " | ".join(fmt(ms[n]) for n in sizes)
                     + f" | {fmt(ms[sizes[-1]] * 1e3 / sizes[-1])} |")
    lines += ["", "Background-thread overhead: a small MLP training loop (3→64×3→1, batch 256, "
              "AdamW) alone and beside an OGAS breeder whose trainer thread trains continuously "
              "(ddpm.yaml, trainer_num_threads=1), best window of each:", "",
              "| main-loop torch threads | alone (steps/s) | beside breeder (steps/s) | ratio "
              "| breeder DDPM steps/s meanwhile |", "|---:|---:|---:|---:|---:|"]
    for t in r["threads"]:
        lines.append(f"| {t['main_threads']} | {fmt(t['alone'])} | {fmt(t['with_breeder'])} | "
                     f"{t['ratio']:.2f} | {fmt(t['breeder_steps_per_s'])} |")
    lines += ["", "Cost vs parameter dimension d (ddpm.yaml; training at 1 thread as in the "
              "trainer thread, generation in the caller's threads):", "",
              "| d | DDPM step (ms) | breeder step (ms) | next_parameters(1000) (ms) |",
              "|---:|---:|---:|---:|"]
    for d in r["dims"]:
        lines.append(f"| {d['d']} | {fmt(d['ddpm_ms'])} | {fmt(d['breeder_ms'])} | "
                     f"{fmt(d['next_parameters_ms'])} |")
    return lines


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


def predict_paragraph(results: dict[str, Any]) -> list[str]:
    """The cost model, with the measured coefficients where the sections were run."""
    lines = ["## How to predict a large run", "",
             "wall ≈ start-up (~5 s: imports, config) + steps × (per-step cost) + simulations × "
             "(per-simulation cost) + generations × (per-generation cost) + evaluations × "
             "(per-evaluation cost).", ""]
    online = results.get("online", {}).get("data")
    if online and online.get("jobs"):
        for breeder in sorted({j["breeder"] for j in online["jobs"]}):
            jobs = [j for j in online["jobs"] if j["breeder"] == breeder and j["wall_s"]]
            if len(jobs) < 2:
                continue
            a, b = fit_line([float(j["sims"]) for j in jobs], [float(j["wall_s"]) for j in jobs])
            steps = jobs[0]["steps"]
            breeder_s = statistics.fmean(float(j["breeder_s"]) for j in jobs)
            lines.append(f"* landscape, breeder {breeder}: time/wall_s ≈ {a:.2f} s + "
                         f"{b * 1e3:.2f} ms × simulations at {steps} steps (least squares over "
                         f"{len(jobs)} budgets), i.e. about {a / max(steps, 1) * 1e3:.1f} ms per "
                         f"gradient step all in (evaluation included); time/breeder_s averaged "
                         f"{breeder_s:.2f} s.")
            if breeder == "ogas":
                lines.append("  For OGAS the intercept also holds the wait for min_train_steps "
                             "before the first bred generation (most of breeder_s) and the trainer "
                             "thread's competition for the cores (section b: the main loop runs "
                             "at about half speed beside it on 2 cores).")
    e2e = results.get("e2e", {}).get("data")
    if e2e and e2e.get("default"):
        best = min(e2e["default"], key=lambda d: d["job_wall_s"] or math.inf)
        if best.get("steps"):
            lines.append(f"* default pole run: {best['job_wall_s'] / best['steps'] * 1e3:.1f} ms per "
                         f"step all in ({best['label']}), evaluation and checkpoints included.")
    samp = results.get("sampling", {}).get("data")
    if samp and samp.get("throughput"):
        big = samp["throughput"][-1]
        lines.append(f"* importance batches on a pool of N: about {big['fresh'] * 1e6 / big['n']:.0f} "
                     "ns × N at each |Q| refresh (weights and cumulative sum), then "
                     f"{big['reused']:.2f} ms per step between refreshes, on top of the model's step.")
    ogas = results.get("ogas", {}).get("data")
    if ogas and ogas.get("next_parameters"):
        row = ogas["next_parameters"][-1]
        n = max(int(k) for k in row["ms"])
        lines.append(f"* OGAS: a generation of n points costs about {row['ms'][str(n)]:.0f} ms at "
                     f"n = {n} (linear in n), and the trainer thread takes about one core "
                     "while it trains.")
    lines += ["", "Scale each term by the measured coefficient. For a real simulator "
              "(burgers1d, ks1d) the per-simulation term is the solver's time per trajectory, "
              "which dwarfs the landscape's; time `problem.label` on one generation to get it. "
              "On a CPU shared with other jobs, first make sure torch does not spin (see the "
              "OpenMP note above): that alone changed the per-step cost by an order of magnitude "
              "here.", "", PROFILES]
    return lines


PROFILES = """## Profiles (cProfile / torch.profiler, 2026-11-22, this machine)

* Default run (`python -m nearpole_exp`): on a loaded machine ~70 % of the wall was OpenMP
  spin-waiting inside backward and small ops (fixed by the policy or one thread, section c).
  With that fixed, a step is ~2 ms: backward ~11 %, OmegaConf attribute reads of
  `cfg.trainer` in `Runner.train_step` ~15 %, the diagnostic monitor ~15 %, the rest small ops.
  Start-up: torch ~2.5 s, torch._dynamo imported by the first optimiser ~1.5–3 s, matplotlib
  ~1 s (now imported only when plotting).
* Pool of 10^6–10^7 with importance batches: per step the sampler recomputed the weights and a
  float64 cumulative sum of the whole pool (O(N), ~14 ns per sample), and the draw counter
  (then `Pool.record_draws`) did an O(N) bincount (now the sampler's `DrawCounts`, O(batch)).
  Since session 2 the weights and their cumulative sum are
  cached per |Q| tensor (recomputed when |Q| is refreshed or changed in place), so a draw
  between refreshes is O(batch · log N); section a times the steady state.
* ActiveSampler at tens of thousands of points: `first_new`'s `torch.unique(dim=0)` over every
  known point was ~85 % of each `propose`, so refining to 65536 points 256 at a time is O(N²);
  it is now a column-wise stable sort (exact, 5.5× faster at 10^6 keys: 7.6 s → 1.4 s).
* DDPM step (width 64): ~40 small tensors, so AdamW's per-tensor kernels (`foreach` loops per
  tensor on the CPU) take ~25 % of the step; `next_parameters` is compute in the denoiser
  (25 DDIM steps × 2 guidance passes), linear in n.
"""

TITLES = {"sampling": "a. Sampling throughput", "sampling_cuda": "a′. Sampling throughput on a GPU",
          "ogas": "b. OGAS",
          "e2e": "c. End to end", "online": "d. Online runs: cost vs simulation budget"}
RENDER = {"sampling": render_sampling, "sampling_cuda": render_sampling, "ogas": render_ogas,
          "e2e": render_e2e, "online": render_online}
INTRO = """# Scaling benchmarks

Written by `scripts/bench_scaling.py` (see its docstring; sections can be re-run alone with
`--sampling`, `--ogas`, `--e2e`, `--online`). Timings are best-of-k; comparisons are ratios of
interleaved calls in one process. Each section states the load while it ran: this is a shared
2-core machine, so absolute numbers move with other jobs; ratios move less.

**OpenMP note.** With torch's default OpenMP threads (2 here) and another busy process on the
machine, each small parallel op waits for a descheduled worker thread, and a small model's step
becomes an order of magnitude slower (section c, the table with a busy-loop process beside the
run). `OMP_WAIT_POLICY=PASSIVE` (set before torch is imported) or `trainer.num_threads=1` avoid
it. Sweeps with the joblib launcher are hit less because joblib limits each worker to
cores / n_jobs threads.
"""


def render(results: dict[str, Any]) -> str:
    lines = [INTRO]
    for name in RENDER:
        rec = results.get(name)
        if rec is None:
            continue
        lines += [f"## {TITLES[name]}", "", *header(rec), *RENDER[name](rec["data"]), ""]
    lines += predict_paragraph(results)
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------- main
def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for name in SECTIONS:
        p.add_argument(f"--{name}", action="store_true", help=f"run section {name}")
    p.add_argument("--quick", action="store_true", help="small sizes (a smoke run, ~2 min)")
    p.add_argument("--repeats", type=int, default=7, help="k of best-of-k")
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--device", default="cpu", help="device of the sampling section")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "scaling.md")
    p.add_argument("--merge", type=Path, action="append", default=[],
                   help="merge the sections of another scaling.json (e.g. from a GPU machine)")
    p.add_argument("--child-memory", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--child-draw", default="raw", help=argparse.SUPPRESS)
    return p.parse_args()


def main() -> None:
    args = parse_args()
    if args.child_memory:
        print(json.dumps(child_memory(args.child_memory, args.batch, torch.device(args.device),
                                        args.child_draw)))
        return
    torch.manual_seed(0)
    chosen = [s for s in SECTIONS if getattr(args, s)] or ([] if args.merge else list(SECTIONS))
    store = args.out.with_suffix(".json")
    results = json.loads(store.read_text()) if store.exists() else {}
    for other in args.merge:
        results.update(json.loads(other.read_text()))
    command = "python scripts/bench_scaling.py " + " ".join(sys.argv[1:])
    run = {"sampling": section_sampling, "ogas": section_ogas, "e2e": section_e2e,
           "online": section_online}
    for name in chosen:
        print(f"[bench_scaling] {name} …", flush=True)
        rec: dict[str, Any] = {"command": command.strip(), "machine": machine(),
                               "date": dt.datetime.now().astimezone().isoformat(timespec="seconds")}
        with load_meter(rec):
            rec["data"] = run[name](args)
        results[name if name != "sampling" or args.device == "cpu" else "sampling_cuda"] = rec
        args.out.parent.mkdir(parents=True, exist_ok=True)
        store.write_text(json.dumps(results, indent=1, default=str))
        args.out.write_text(render(results))
        print(f"[bench_scaling] {name} done in {rec['section_wall_s']:.0f} s", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    store.write_text(json.dumps(results, indent=1, default=str))
    args.out.write_text(render(results))
    print(f"wrote {args.out} and {store} (threads alive: {threading.active_count()})")


if __name__ == "__main__":
    main()
