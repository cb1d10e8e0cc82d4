"""What every benchmark script shares: the machine it ran on, the load while it ran, interleaved
timing (wall and CPU), markdown tables, and running the CLI. The scripts in this folder import it
by name (``python scripts/bench/<name>.py`` puts the folder on ``sys.path``)."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import math
import os
import platform
import re
import shlex
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
BENCHMARKS = ROOT / "benchmarks"
MB = 1024.0 * 1024.0


# ------------------------------------------------------------------------------ the machine
def cpu_model() -> str:
    """The CPU model name from /proc/cpuinfo, else what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> dict[str, Any]:
    """What the numbers were measured on (torch is read only if it is already imported)."""
    mem = ""
    if Path("/proc/meminfo").exists():
        kb = int(re.search(r"MemTotal:\s*(\d+)", Path("/proc/meminfo").read_text()).group(1))
        mem = f"{kb / MB:.1f} GiB"
    out: dict[str, Any] = {"cpu": cpu_model(), "nproc": os.cpu_count(), "memory": mem,
                           "python": platform.python_version(),
                           "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "unset")}
    torch = sys.modules.get("torch")
    if torch is not None:
        out.update(torch=torch.__version__, torch_threads=torch.get_num_threads(),
                   gpu=torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none")
    return out


def machine_line(m: dict[str, Any] | None = None) -> str:
    """The machine as one line of a report."""
    m = m or machine()
    torch = f", torch {m['torch']} ({m['torch_threads']} threads)" if "torch" in m else ""
    gpu = f", GPU {m['gpu']}" if m.get("gpu", "none") != "none" else ", no GPU"
    return (f"{m['cpu']}, {m['nproc']} cores, {m['memory']}{torch}{gpu}, Python {m['python']}, "
            f"OMP_WAIT_POLICY {m['omp_wait_policy']}")


def today() -> str:
    return dt.datetime.now().astimezone().isoformat(timespec="seconds")


def git_commit() -> str:
    """The checkout's commit (short), with ``+`` when the tree has uncommitted changes."""
    try:
        sha = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True, timeout=5).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return sha + ("+" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


# ------------------------------------------------------------------------------ the load
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


def load_line(record: dict[str, Any]) -> str:
    """What :func:`load_meter` recorded, as a sentence."""
    busy = record.get("other_cores_busy")
    return (f"load average {record['loadavg_before']:.2f} → {record['loadavg_after']:.2f}"
            + (f"; other processes kept {busy:.2f} cores busy" if busy is not None else ""))


# ------------------------------------------------------------------------------ timing
@dataclass
class Timing:
    """Best and median of one function's calls, wall and CPU time of this process (ms)."""

    wall_best: float
    wall_median: float
    cpu_best: float
    cpu_median: float


def interleaved(fns: dict[str, Callable[[], object]], repeats: int,
                sync: Callable[[], None] = lambda: None) -> dict[str, Timing]:
    """Each function called ``repeats`` times, the functions taking turns call by call (so a
    burst of load hits all of them), after one warm-up call each."""
    for fn in fns.values():
        fn()
    sync()
    walls: dict[str, list[float]] = {k: [] for k in fns}
    cpus: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            c0, w0 = time.process_time(), time.perf_counter()
            fn()
            sync()
            walls[name].append(time.perf_counter() - w0)
            cpus[name].append(time.process_time() - c0)

    def med(v: list[float]) -> float:
        return sorted(v)[len(v) // 2]

    return {k: Timing(min(walls[k]) * 1e3, med(walls[k]) * 1e3, min(cpus[k]) * 1e3,
                      med(cpus[k]) * 1e3) for k in fns}


def interleaved_best(fns: dict[str, Callable[[], object]], repeats: int,
                     sync: Callable[[], None] = lambda: None) -> dict[str, float]:
    """Best wall time (ms) of each function over ``repeats`` interleaved rounds."""
    return {k: t.wall_best for k, t in interleaved(fns, repeats, sync).items()}


# ------------------------------------------------------------------------------ reports
def fmt(v: Any, digits: int = 3) -> str:
    """A number for a table: ``n/a`` for missing or non-finite values."""
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "n/a"
    if isinstance(v, float):
        return f"{v:.{digits}g}" if abs(v) < 1000 else f"{v:.0f}"
    return str(v)


def md_table(header: Sequence[str], rows: Sequence[Sequence[Any]], align: str = "") -> list[str]:
    """A markdown table; ``align`` one character per column (``l`` or ``r``; default: the first
    column left, the rest right)."""
    align = align or "l" + "r" * (len(header) - 1)
    rule = "|" + "|".join("---" if a == "l" else "---:" for a in align) + "|"
    return ["| " + " | ".join(map(str, header)) + " |", rule,
            *("| " + " | ".join(fmt(c) if isinstance(c, float) else str(c) for c in row) + " |"
              for row in rows)]


def provenance(command: str, record: dict[str, Any] | None = None) -> list[str]:
    """The command, machine, date and load lines every report section starts with."""
    lines = [f"Command: `{command}`  ", f"Machine: {machine_line()}  ",
             f"Date: {today()}, code at commit {git_commit()}"]
    if record is not None and "loadavg_before" in record:
        lines[-1] += f"; {load_line(record)}"
    return [*lines, ""]


def command_line() -> str:
    """How this script was invoked, relative to the repository root, quoted for bash; an
    ``--out`` cache folder is left out (it only says where runs are cached on this machine)."""
    script = Path(sys.argv[0]).resolve()
    with contextlib.suppress(ValueError):
        script = script.relative_to(ROOT)
    args, rest = [], list(sys.argv[1:])
    while rest:
        arg = rest.pop(0)
        if arg == "--out" and rest:
            rest.pop(0)
        elif not arg.startswith("--out="):
            args.append(arg)
    return shlex.join(["python", str(script), *args])


def merge_json(path: Path, key: str, value: Any) -> dict[str, Any]:
    """Store ``value`` under ``key`` in the JSON file ``path`` (created if missing)."""
    data = json.loads(path.read_text()) if path.exists() else {}
    data[key] = value
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1, default=str))
    return data


# ------------------------------------------------------------------------------ the CLI
def cli_env(policy: str | None = "keep") -> dict[str, str]:
    """Environment of a ``python -m nearpole_exp`` child: no W&B; OMP_WAIT_POLICY as given
    (``keep``: as in this process)."""
    env = dict(os.environ)
    env.update({"WANDB_MODE": "disabled", "WANDB_SILENT": "true"})
    if policy != "keep":
        env.pop("OMP_WAIT_POLICY", None)
        if policy:
            env["OMP_WAIT_POLICY"] = policy
    return env


def run_cli(overrides: Sequence[str], log: Path | None = None,
            policy: str | None = "keep") -> subprocess.CompletedProcess[str]:
    """One ``python -m nearpole_exp`` process from the repository root (output to ``log``)."""
    cmd = [sys.executable, "-m", "nearpole_exp", *overrides]
    res = subprocess.run(cmd, capture_output=True, text=True, env=cli_env(policy), cwd=ROOT)
    if log is not None:
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text(" ".join(cmd) + "\n" + res.stdout + res.stderr)
    return res


def summaries(root: Path) -> list[dict[str, Any]]:
    """summary.json of every job directory under ``root``, with its directory as ``_dir``."""
    return [{**json.loads(p.read_text()), "_dir": str(p.parent)} for p in sorted(root.rglob("summary.json"))]


def seed_of(summary: dict[str, Any]) -> int:
    """The seed of a multirun job, from its directory name (``…_seed<n>``)."""
    return int(re.search(r"_seed(\d+)$", summary["_dir"]).group(1))


def finished(sweep: Path, seeds: Sequence[int]) -> list[dict[str, Any]] | None:
    """The sweep's summaries in the order of ``seeds`` if every seed has one, else None."""
    if not sweep.exists():
        return None
    found = {seed_of(s): s for s in summaries(sweep)}
    return [found[s] for s in seeds] if all(s in found for s in seeds) else None


def cached_multirun(overrides: Sequence[str], seeds: Sequence[int], sweep: Path) -> list[dict[str, Any]]:
    """One Hydra multirun of ``python -m nearpole_exp`` over ``seeds`` into ``sweep``, skipped when
    every seed already finished there (an interrupted benchmark continues where it stopped);
    its output goes to ``sweep/multirun.log``. Returns the summaries in seed order."""
    done = finished(sweep, seeds)
    if done is not None:
        return done
    if sweep.exists():
        subprocess.run(["rm", "-rf", str(sweep)], check=True)
    cmd = [sys.executable, "-m", "nearpole_exp", "-m", *overrides,
           "seed=" + ",".join(map(str, seeds)), f"hydra.sweep.dir={sweep}"]
    env = {**cli_env(), "PYTHONPATH": str(ROOT)}
    start = time.perf_counter()
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
    print(f"  {time.perf_counter() - start:6.0f} s  {'/'.join(sweep.parts[-3:])}", flush=True)
    sweep.mkdir(parents=True, exist_ok=True)
    (sweep / "multirun.log").write_text(" ".join(cmd) + "\n" + res.stdout + res.stderr)
    done = finished(sweep, seeds)
    if done is None:
        raise RuntimeError(f"{sweep}: a job did not finish (see multirun.log)\n{res.stderr[-2000:]}")
    return done


# ------------------------------------------------------------------------------ statistics
def gmean(vals: Sequence[float]) -> float:
    """Geometric mean of the finite values (nan when there are none)."""
    vals = [max(v, 1e-300) for v in vals if math.isfinite(v)]
    return math.exp(sum(map(math.log, vals)) / len(vals)) if vals else math.nan


def median(vals: Sequence[float]) -> float:
    vals = [v for v in vals if not math.isnan(v)]
    return statistics.median(vals) if vals else math.nan


def paired_ratio(base: Sequence[dict[str, Any]], arm: Sequence[dict[str, Any]],
                 metric: Callable[[dict[str, Any]], float]) -> tuple[float, int, int]:
    """Geometric mean over seeds of metric(base)/metric(arm) (> 1: the arm's error is lower),
    the seeds on which the arm won, and the pairs compared."""
    pairs = [(metric(b), metric(a)) for b, a in zip(base, arm, strict=True)]
    pairs = [(b, a) for b, a in pairs if math.isfinite(b) and math.isfinite(a)]
    if not pairs:
        return math.nan, 0, 0
    ratio = gmean([b / max(a, 1e-300) for b, a in pairs])
    return ratio, sum(a < b for b, a in pairs), len(pairs)
