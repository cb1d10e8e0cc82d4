"""Where a short run's wall time goes before and around training; writes benchmarks/startup.md.

Two measurements, each in fresh child processes (best of ``--repeats``):

* end to end: ``python -c "import torch"`` against ``python -m nearpole_exp logger=none`` with
  one gradient step and no plots (and with ``logger=wandb`` offline), so "the project's own
  overhead" is the difference;
* the phases of one run, timed inside a child: imports (torch, then the project), composing the
  config, building the runner, W&B start-up (offline), the first round's labelling and first
  step, one evaluation, the plots.

    python scripts/bench/startup.py                 # about 1 minute on 2 cores
    python scripts/bench/startup.py --quick         # one repeat
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import BENCHMARKS, ROOT, command_line, provenance

RUN = ["logger=none", "trainer.rounds=1", "trainer.steps_per_round=1", "trainer.plots=false",
       "trainer.progress=false"]

PHASES = r"""
import json, os, sys, time
from pathlib import Path
marks = {}
t = time.perf_counter()
import torch
marks["import torch"] = time.perf_counter() - t
t = time.perf_counter()
import nearpole_exp.app  # noqa: F401  (schemas, resolvers, runner, reporting)
from hydra import compose, initialize_config_module
from hydra.core.hydra_config import HydraConfig
from omegaconf import open_dict
from nearpole_exp.config.validate import validate
from nearpole_exp.reporting.reporter import Reporter
from nearpole_exp.runner import Runner
marks["import nearpole_exp"] = time.perf_counter() - t
out = Path(sys.argv[1])
def composed(extra):
    with initialize_config_module("nearpole_exp.conf", version_base="1.3"):
        cfg = compose("config", overrides=[*extra, f"hydra.run.dir={out}"], return_hydra_config=True)
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(out)
        cfg.hydra.job.num = 0
    HydraConfig.instance().set_config(cfg)
    return cfg
t = time.perf_counter()
cfg = composed(["trainer.plots=true", "trainer.progress=false", "logger=none"])
validate(cfg)
marks["compose + validate"] = time.perf_counter() - t
t = time.perf_counter()
runner = Runner(cfg, out)
marks["build (problem, model, sampler, optimizer)"] = time.perf_counter() - t
from hydra.core.global_hydra import GlobalHydra
GlobalHydra.instance().clear()
wandb_cfg = composed(["logger=wandb", "logger.mode=offline"])
t = time.perf_counter()
reporter = Reporter(wandb_cfg, out / "wandb_probe", None)
marks["W&B start-up (offline; logger=wandb only)"] = time.perf_counter() - t
t = time.perf_counter()
reporter.wandb.finish(exit_code=0)
marks["W&B finish (offline; logger=wandb only)"] = time.perf_counter() - t
t = time.perf_counter()
runner.acquisition.acquire(0)
runner.train_step()
marks["first round's labelling + first step"] = time.perf_counter() - t
t = time.perf_counter()
for _ in range(20):
    runner.train_step()
marks["a later step (mean of 20)"] = (time.perf_counter() - t) / 20
t = time.perf_counter()
metrics = runner.evaluate()
marks["one evaluation"] = time.perf_counter() - t
t = time.perf_counter()
(out / "plots").mkdir(parents=True, exist_ok=True)
runner.make_plots(metrics)
marks["plots (trainer.plots=true)"] = time.perf_counter() - t
print(json.dumps(marks))
"""


def best_wall(cmd: list[str], repeats: int, cwd: Path) -> float:
    """Best wall time of a command over ``repeats`` fresh runs."""
    best = float("inf")
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as tmp:
            full = [part.replace("{tmp}", tmp) for part in cmd]
            start = time.perf_counter()
            subprocess.run(full, cwd=cwd, check=True, capture_output=True)
            best = min(best, time.perf_counter() - start)
    return best


def phases(repeats: int) -> dict[str, float]:
    """Per-phase seconds, the best of ``repeats`` children for each phase."""
    best: dict[str, float] = {}
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as tmp:
            res = subprocess.run([sys.executable, "-c", PHASES, tmp], cwd=ROOT, check=True,
                                 capture_output=True, text=True)
        marks = json.loads(res.stdout.strip().splitlines()[-1])
        for key, value in marks.items():
            best[key] = min(best.get(key, float("inf")), value)
    return best


def render(record: dict) -> str:
    e2e = record["end_to_end"]
    lines = ["# Start-up breakdown", "", *record["provenance"],
             "## End to end (fresh processes, best of k)", "",
             "| command | wall (s) | beyond `import torch` (s) |", "|---|---:|---:|"]
    torch_s = e2e["python -c 'import torch'"]
    for name, wall in e2e.items():
        lines.append(f"| `{name}` | {wall:.2f} | {wall - torch_s:+.2f} |")
    lines += ["", "The run is the default job (rational1d, rational model, 4096 labelled points) "
              "with one gradient step, so nearly all of its time is start-up: the project's own "
              "overhead is the last column (the aim: `logger=none` ≤ 2 s beyond "
              "`import torch`).", "",
              "## Phases of one run (inside one process, best of k)", "",
              "| phase | s |", "|---|---:|"]
    for name, value in record["phases"].items():
        lines.append(f"| {name} | {value:.3f} |")
    lines += ["", "Notes: every `torch.optim` step imports `torch._dynamo` (about 1 s here, as "
              "much as `import torch`); the runner's optimiser is `nearpole_exp.optim.adamw.AdamW`, the "
              "same algorithm op for op (bit-identical on the CPU) without that import. W&B "
              "start-up (the service process) is paid only with `logger=wandb` and is not "
              "overlapped with building: it is listed above so it can be weighed; offline it is "
              "the row shown, online it adds the network round trip. Plots are drawn at the end "
              "of a run (matplotlib is imported then)."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=BENCHMARKS / "startup.md")
    parser.add_argument("--quick", action="store_true", help="one repeat")
    args = parser.parse_args()
    if args.quick:
        args.repeats = 1
    py = sys.executable
    e2e = {
        "python -c 'import torch'": best_wall([py, "-c", "import torch"], args.repeats, ROOT),
        "python -m nearpole_exp logger=none (1 step, no plots)": best_wall(
            [py, "-m", "nearpole_exp", *RUN, "hydra.run.dir={tmp}"], args.repeats, ROOT),
        "python -m nearpole_exp logger=wandb, offline (1 step, no plots)": best_wall(
            [py, "-m", "nearpole_exp", *RUN[1:], "logger=wandb", "logger.mode=offline",
             "hydra.run.dir={tmp}"], args.repeats, ROOT),
    }
    import torch  # noqa: F401  (so that the machine line names its version)

    record = {"repeats": args.repeats, "end_to_end": e2e, "phases": phases(args.repeats),
              "provenance": provenance(command_line())}
    args.out.write_text(render(record), encoding="utf-8")
    print(render(record))


if __name__ == "__main__":
    main()
