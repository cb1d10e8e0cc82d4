"""The project's AdamW against torch's, on the two models that use it; writes
benchmarks/optimizer.md.

* one optimizer step (after the gradients exist), interleaved call by call, wall and CPU time:
  the runner's default model (the rational model, single-tensor path) and the OGAS DDPM's
  denoiser (the multi-tensor ``foreach`` path it uses);
* the first step in a fresh process, where torch's optimizers import ``torch._dynamo``.

    python scripts/bench/optimizer.py               # about 30 s on 2 cores
"""

from __future__ import annotations

import argparse
import copy
import json
import subprocess
import sys
from pathlib import Path

import torch
from common import BENCHMARKS, ROOT, command_line, interleaved, load_line, load_meter, md_table, provenance

from nearpole_exp.acquisition.ogas.config import DDPMConfig
from nearpole_exp.acquisition.ogas.ddpm import ConditionalDDPM
from nearpole_exp.models.rational import RationalModel
from nearpole_exp.optim.adamw import AdamW

FIRST_STEP = r"""
import json, sys, time
import torch
from nearpole_exp.optim.adamw import AdamW
kind, foreach = sys.argv[1], sys.argv[2] == "1"
model = torch.nn.Sequential(torch.nn.Linear(8, 64), torch.nn.GELU(), torch.nn.Linear(64, 1))
model(torch.ones(4, 8)).sum().backward()
make = AdamW if kind == "ours" else torch.optim.AdamW
c0, w0 = time.process_time(), time.perf_counter()
opt = make(model.parameters(), lr=1e-3, foreach=foreach)
opt.step(); opt.zero_grad()
print(json.dumps({"cpu": time.process_time() - c0, "wall": time.perf_counter() - w0,
                  "dynamo": "torch._dynamo" in sys.modules}))
"""


def step_fns(model: torch.nn.Module, foreach: bool) -> dict[str, object]:
    """One step of each optimizer on its own copy of ``model`` (gradients filled once)."""
    fns = {}
    for name, make in (("torch.optim.AdamW", torch.optim.AdamW), ("nearpole_exp AdamW", AdamW)):
        copy_ = copy.deepcopy(model)
        for p in copy_.parameters():
            p.grad = torch.randn_like(p)
        opt = make(copy_.parameters(), lr=1e-4, foreach=foreach)
        fns[name] = opt.step
    return fns


def first_step(repeats: int) -> dict[str, dict[str, float]]:
    out = {}
    for kind in ("torch", "ours"):
        runs = [json.loads(subprocess.run([sys.executable, "-c", FIRST_STEP, kind, "1"], cwd=ROOT,
                                          check=True, capture_output=True, text=True).stdout)
                for _ in range(repeats)]
        out[kind] = {"cpu": min(r["cpu"] for r in runs), "wall": min(r["wall"] for r in runs),
                     "dynamo": any(r["dynamo"] for r in runs)}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=300)
    parser.add_argument("--out", type=Path, default=BENCHMARKS / "optimizer.md")
    parser.add_argument("--quick", action="store_true", help="20 calls, one fresh process each")
    args = parser.parse_args()
    if args.quick:
        args.repeats = 20
    torch.set_num_threads(1)
    record: dict = {}
    models = {"rational model (P 14 / Q 12), single-tensor":
              (RationalModel(1, 1, p_degree=14, q_degree=12).double(), False),
              "OGAS DDPM denoiser (d = 8), foreach": (ConditionalDDPM(8, DDPMConfig()).model, True)}
    rows = []
    with load_meter(record):
        for label, (model, foreach) in models.items():
            t = interleaved(step_fns(model, foreach), args.repeats)
            ours, theirs = t["nearpole_exp AdamW"], t["torch.optim.AdamW"]
            rows.append([label, sum(p.numel() for p in model.parameters()),
                         len(list(model.parameters())), f"{theirs.wall_median * 1e3:.1f}",
                         f"{ours.wall_median * 1e3:.1f}", f"{ours.cpu_median / theirs.cpu_median:.2f}"])
        first = first_step(1 if args.quick else 3)
    lines = ["# AdamW: the project's against torch's", "", *provenance(command_line(), record),
             f"One `step()` (median of {args.repeats} interleaved calls, one torch thread; µs):", "",
             *md_table(["model", "parameters", "tensors", "torch µs", "ours µs", "CPU ours/torch"], rows),
             "", "The first step in a fresh process (best of 3; the optimizer's construction, step "
             "and `zero_grad`):", "",
             *md_table(["optimizer", "CPU s", "wall s", "imports torch._dynamo"],
                       [["torch.optim.AdamW(foreach=True)", f"{first['torch']['cpu']:.2f}",
                         f"{first['torch']['wall']:.2f}", str(first["torch"]["dynamo"])],
                        ["nearpole_exp AdamW(foreach=True)", f"{first['ours']['cpu']:.3f}",
                         f"{first['ours']['wall']:.3f}", str(first["ours"]["dynamo"])]]),
             "", "Both are the same update op for op (tests/test_gradient.py checks bit-identical "
             "parameters on both paths); the project's binds the undecorated base-class methods "
             "for itself, so torch's own optimizers are untouched. " + load_line(record) + "."]
    text = "\n".join(lines) + "\n"
    args.out.write_text(text, encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
