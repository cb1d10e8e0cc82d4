"""The framework's training step against a plain PyTorch loop; writes benchmarks/step_overhead.md.

The plain loop trains the same model (a deep copy of the runner's, after its first round) on the
same pool tensors, with the same batch size, loss, AdamW, learning-rate schedule and gradient
clipping: ``idx = randint``, forward, weighted loss, backward, clip, step, schedule. The runner's
step is ``Runner.train_step`` (selection, the step, the breeder's ``tell``, the diagnostic
monitor). Both run in this process on one torch thread, in interleaved blocks of steps, CPU time
per step beside wall time; the ratio is per configuration.

    python scripts/bench/step_overhead.py                  # about 1 minute on 2 cores
    python scripts/bench/step_overhead.py --profile        # also the runner step's top functions
"""

from __future__ import annotations

import argparse
import copy
import cProfile
import io
import pstats
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from common import BENCHMARKS, command_line, load_line, load_meter, md_table, provenance

from nearpole_exp.models.base import loss_function

CONFIGS = {
    "default job": [],
    "sampler=importance": ["sampler=importance"],
    "diagnostics=none": ["diagnostics=none"],
    "model=mlp": ["model=mlp"],
}


def build_runner(overrides: list[str], out: Path) -> Any:
    """A runner of the packaged config with ``overrides``, its first round acquired."""
    from hydra import compose, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict

    import nearpole_exp.app  # noqa: F401  (registers the schemas)
    from nearpole_exp.runner import Runner

    GlobalHydra.instance().clear()
    with initialize_config_module("nearpole_exp.conf", version_base="1.3"):
        cfg = compose("config", overrides=[*overrides, "logger=none", "trainer.progress=false",
                                           f"hydra.run.dir={out}"], return_hydra_config=True)
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(out)
        cfg.hydra.job.num = 0
    HydraConfig.instance().set_config(cfg)
    runner = Runner(cfg, out)
    runner.acquisition.acquire(0)
    return runner


class PlainLoop:
    """The same optimisation written directly in PyTorch."""

    def __init__(self, runner: Any) -> None:
        self.model = copy.deepcopy(runner.model)
        self.x, self.y = runner.pool.inputs, runner.pool.targets
        self.batch = runner.tc.batch_size
        self.clip = runner.tc.grad_clip
        self.loss = loss_function(self.model)  # the copy's own loss (not the runner's model)
        self.kind = runner.loss_kind
        self.opt = runner.optim_option.build(self.model.parameters(), runner.tc.lr)
        total = runner.total_steps
        self.sched = torch.optim.lr_scheduler.LambdaLR(
            self.opt, lambda step: runner.schedule.factor(step, total))

    def step(self) -> float:
        idx = torch.randint(0, len(self.x), (self.batch,))
        out = self.loss(self.x[idx], self.y[idx], self.kind, None)
        loss = out.losses.mean()
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        if self.clip > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.clip)
        self.opt.step()
        self.sched.step()
        return float(loss.detach())


def timed_blocks(fns: dict[str, Any], blocks: int, steps: int) -> dict[str, tuple[float, float]]:
    """Median (CPU ms, wall ms) per step over ``blocks`` interleaved blocks of ``steps`` steps."""
    cpu: dict[str, list[float]] = {k: [] for k in fns}
    wall: dict[str, list[float]] = {k: [] for k in fns}
    for fn in fns.values():
        for _ in range(steps):
            fn()
    for _ in range(blocks):
        for name, fn in fns.items():
            c0, w0 = time.process_time(), time.perf_counter()
            for _ in range(steps):
                fn()
            cpu[name].append((time.process_time() - c0) / steps * 1e3)
            wall[name].append((time.perf_counter() - w0) / steps * 1e3)

    def med(v: list[float]) -> float:
        return sorted(v)[len(v) // 2]

    return {k: (med(cpu[k]), med(wall[k])) for k in fns}


def profile_step(runner: Any, steps: int) -> str:
    prof = cProfile.Profile()
    prof.enable()
    for _ in range(steps):
        runner.train_step()
    prof.disable()
    text = io.StringIO()
    pstats.Stats(prof, stream=text).sort_stats("tottime").print_stats(18)
    return text.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blocks", type=int, default=15)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--out", type=Path, default=BENCHMARKS / "step_overhead.md")
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--quick", action="store_true", help="3 blocks of 10 steps")
    args = parser.parse_args()
    if args.quick:
        args.blocks, args.steps = 3, 10
    torch.set_num_threads(1)
    record: dict = {}
    rows, profiles = [], []
    with load_meter(record), tempfile.TemporaryDirectory() as tmp:
        for label, overrides in CONFIGS.items():
            runner = build_runner(overrides, Path(tmp) / label.replace(" ", "_").replace("=", "-"))
            plain = PlainLoop(runner)
            t = timed_blocks({"runner": runner.train_step, "plain": plain.step}, args.blocks, args.steps)
            (rc, rw), (pc, pw) = t["runner"], t["plain"]
            rows.append([label, f"{pc:.3f}", f"{rc:.3f}", f"{rc / pc:.2f}", f"{pw:.3f}", f"{rw:.3f}",
                         f"{rw / pw:.2f}"])
            if args.profile:
                profiles.append(f"### {label}\n\n```\n{profile_step(runner, 200)}```")
            runner.acquisition.close()
    lines = ["# The training step against a plain PyTorch loop", "", *provenance(command_line(), record),
             f"Per step, median of {args.blocks} interleaved blocks of {args.steps} steps, one torch "
             "thread, the default job's model and pool (rational1d, batch 256) unless the row says:", "",
             *md_table(["configuration", "plain CPU ms", "runner CPU ms", "CPU ratio", "plain wall ms",
                        "runner wall ms", "wall ratio"], rows),
             "", f"Load: {load_line(record)}.", *(["", *profiles] if profiles else [])]
    text = "\n".join(lines) + "\n"
    args.out.write_text(text, encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
