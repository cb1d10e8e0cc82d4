"""OGAS breeder speed: DDPM and breeder training steps/s, the latency of a generation, the
background thread's overhead on a main training loop, and the cost against the parameter
dimension. Writes benchmarks/breeder_speed.md (and .json).

    python scripts/bench/breeder_speed.py            # about 5 min on 2 cores
    python scripts/bench/breeder_speed.py --quick    # a smoke run
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # after OMP_WAIT_POLICY, which OpenMP reads when torch loads it
from common import BENCHMARKS, ROOT, command_line, fmt, interleaved_best, load_meter, merge_json, provenance


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
        breeder.train_now(steps)

    t = interleaved_best({"ddpm": ddpm_steps, "breeder": breeder_steps}, repeats)
    torch.set_num_threads(before)
    return {k: steps / (v / 1e3) for k, v in t.items()}


def warm_breeder(dim: int, cfg: Any, synchronous: bool, **breeder: Any) -> Any:
    """An OGAS breeder past generation 0 with a scored reservoir (2000 sims, half of them bred)."""
    from nearpole_exp.acquisition.ogas import DataConfig, OGASBreeder

    opts = dict(synchronous=synchronous, train_steps_per_ask=0, min_train_steps=0,
                start_breed_ratio=0.5, end_breed_ratio=0.7, breakpoint=1, adaptive_ratio="off")
    opts.update(breeder)
    b = OGASBreeder(torch.tensor([[0.0, 1.0]] * dim), model=cfg, data=DataConfig(), **opts)
    gen = torch.Generator().manual_seed(0)
    for _ in range(2):
        x = b.ask(1000)
        ids = torch.arange(b.n_asked - len(x), b.n_asked)
        b.tell(ids, x[:, 0] + 0.1 * torch.rand(len(x), generator=gen))
    if synchronous:
        b.train_now(20)
    return b


def next_parameters_ms(cfg: Any, dim: int, sizes: list[int], repeats: int) -> dict[str, float]:
    """Best-of-k latency of ``next_parameters(n)`` (70 % bred, DDIM) with training excluded."""
    b = warm_breeder(dim, cfg, synchronous=True)
    out = {}
    for n in sizes:
        k = repeats if n <= 1000 else max(2, repeats // 3)
        out[str(n)] = interleaved_best({"np": lambda n=n: b.next_generation(n)}, k)["np"]
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
                    b = warm_breeder(2, cfg, synchronous=False)
                    b.train_in_background(10**9)
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


def measure(args: argparse.Namespace) -> dict[str, Any]:
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


def render(r: dict[str, Any]) -> list[str]:
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


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="small sizes, a smoke run")
    p.add_argument("--repeats", type=int, default=7, help="k of best-of-k")
    p.add_argument("--out", type=Path, default=BENCHMARKS / "breeder_speed.md")
    args = p.parse_args()
    torch.manual_seed(0)
    record: dict[str, Any] = {"command": command_line()}
    with load_meter(record):
        record["data"] = measure(args)
    merge_json(args.out.with_suffix(".json"), "cpu", record)
    lines = ["# OGAS breeder speed", "", *provenance(record["command"], record),
             *render(record["data"])]
    args.out.write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
