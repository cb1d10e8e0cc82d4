"""Where OGAS puts its points, and what that does to the error (benchmarks/ogas_dims.md).

Three reports, each printing a markdown table:

    python scripts/ogas_placement.py faces
        a DDPM trained offline on a uniform corner [x0, 1]² (plus a uniform background under
        another condition), generating for the corner's condition: how evenly each
        parametrisation × guidance covers the corner, face included (ideal: equal bins);
    python scripts/ogas_placement.py landscape outputs/bench_ogas3/landscape
        per run of a landscape sweep: share of points in the hard corner, bred and all, and
        how they spread across it (outer fifth of the first axis vs inner fifth);
    python scripts/ogas_placement.py burgers outputs/bench_ogas3/burgers
        per run of a Burgers sweep (preset settings): the pool's share and the held-out mean
        nRMSE in viscosity bins, from the final checkpoint;
    python scripts/ogas_placement.py tails outputs/bench_ogas4/ks
        per breeder of any simulator sweep (each run rebuilt from its own .hydra config): where
        the held-out trajectories above each run's p99 sit, in five bins of the physical
        parameter (ν or L) over its box, summed over seeds.
"""

from __future__ import annotations

import argparse
import itertools
import time
from pathlib import Path

import torch

from nearpole_exp.acquisition.ogas.config import DDPMConfig
from nearpole_exp.acquisition.ogas.ddpm import ConditionalDDPM
from nearpole_exp.models.cnn import CNN1D
from nearpole_exp.problems.burgers import Burgers1D

CORNER = 1 - 0.05**0.5  # the landscape preset's hard corner: λ0, λ1 > CORNER (5 % of the square)
NU_BINS = (-1.0, -0.95, -0.9, -0.8, -0.6, -0.2, 0.4, 1.0)  # box-normalised viscosity


def fifths(values: torch.Tensor, low: float) -> list[int]:
    """Counts of ``values`` in five equal bins of [low, 1]."""
    edges = torch.linspace(low, 1.0, 6)
    return [int(((values >= a) & (values < b if i < 4 else values <= b)).sum())
            for i, (a, b) in enumerate(itertools.pairwise(edges.tolist()))]


def faces(steps: int = 2000, n_gen: int = 2000) -> list[str]:
    """Offline: corner coverage of each parametrisation × guidance scale."""
    torch.set_num_threads(1)
    rows = ["| parametrisation | guidance | in corner | λ0 in fifths of the corner, inner → face |",
            "|---|---:|---:|---|"]
    for param in ("logit", "box", "mirror"):
        for guidance in (1.0, 2.0):
            torch.manual_seed(0)
            gen = torch.Generator().manual_seed(0)
            background = torch.rand(4000, 2, generator=gen)
            corner = CORNER + (1 - CORNER) * torch.rand(2000, 2, generator=gen)
            unit = torch.cat([background, corner])
            cond = torch.cat([(background > CORNER).all(1).float(), torch.ones(2000)])
            model = ConditionalDDPM(2, DDPMConfig(model_dim=64, depth=3, timesteps=100, lr=1e-3,
                                                  guidance_scale=guidance, parametrisation=param))
            start = time.perf_counter()
            for _ in range(steps):
                idx = torch.randint(0, len(unit), (128,), generator=gen)
                model.train_step(unit[idx], cond[idx], None, gen)
            out = model.decode(model.generate(torch.ones(n_gen), gen)).cpu()
            share = float((out > CORNER).all(1).float().mean())
            print(f"{param} {guidance}: {time.perf_counter() - start:.0f} s", flush=True)
            rows.append(f"| {param} | {guidance:g} | {share:.2f} | {fifths(out[:, 0], CORNER)} |")
    return rows


def landscape(root: Path) -> list[str]:
    """Corner shares and spread of every run's simulated points (the breeder's history)."""
    rows = ["| run | corner share, bred | corner share, all | λ0 in fifths of the corner | "
            "within 0.005 of a face |", "|---|---:|---:|---|---:|"]
    for run in sorted(p for p in root.iterdir() if (p / "checkpoints/last.pt").exists()):
        history = torch.load(run / "checkpoints/last.pt", weights_only=True)["breeder"].get("history")
        if history is None:
            continue
        unit, bred = history["unit"][: int(history["size"])], history["is_bred"][: int(history["size"])]
        hard = (unit[:, :2] > CORNER).all(1)
        bred_share = f"{float(hard[bred].float().mean()):.2f}" if bool(bred.any()) else "—"
        near_face = float((unit[:, :2] > 0.995).any(1).float().mean())
        rows.append(f"| {run.name} | {bred_share} | {float(hard.float().mean()):.3f} | "
                    f"{fifths(unit[hard, 0], CORNER)} | {near_face:.3f} |")
    return rows


def burgers(root: Path) -> list[str]:
    """Pool share and held-out mean nRMSE per viscosity bin (Burgers preset: grid 64, CNN 16)."""
    problem = Burgers1D(grid=64, n_steps=25, nu_low=0.01, nu_high=0.1, n_eval=512)
    params = problem.normalized(problem.eval_set()[0])
    bins = list(itertools.pairwise(NU_BINS))
    head = " | ".join(f"[{a:g}, {b:g})" for a, b in bins)
    rows = [f"| run | quantity | {head} |", "|---|---|" + "---:|" * len(bins)]
    for run in sorted(p for p in root.iterdir() if (p / "checkpoints/last.pt").exists()):
        state = torch.load(run / "checkpoints/last.pt", weights_only=True)
        model = CNN1D(**problem.model_dims(), width=16, depth=4, kernel_size=5)
        model.load_state_dict(state["model"])
        model.eval()
        scores, _, _ = problem.eval_scores(lambda x, m=model: m(x.float()))
        pool_nu = state["pool"]["data"]["inputs"][:, 1, 0]
        share = [float(((pool_nu >= a) & (pool_nu < b)).float().mean()) for a, b in bins]
        err = [float(scores[(params[:, 0] >= a) & (params[:, 0] < b)].mean()) for a, b in bins]
        rows.append(f"| {run.name} | pool share | " + " | ".join(f"{v:.3f}" for v in share) + " |")
        rows.append(f"| {run.name} | mean nRMSE | " + " | ".join(f"{v:.4f}" for v in err) + " |")
    return rows


def tails(root: Path) -> list[str]:
    """Counts of the above-p99 held-out trajectories per fifth of the first parameter's box."""
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from nearpole_exp.runner import build_model

    counts: dict[str, list[int]] = {}
    box = ""
    for run in sorted(p for p in root.iterdir() if (p / "checkpoints/last.pt").exists()):
        cfg = OmegaConf.load(run / ".hydra/config.yaml")
        problem = instantiate(cfg.problem, _convert_="all")
        model = build_model(cfg.model, problem.model_dims())
        model.load_state_dict(torch.load(run / "checkpoints/last.pt", weights_only=True)["model"])
        model.eval()
        scores, _, _ = problem.eval_scores(lambda x, m=model: m(x.float()))
        first = problem.eval_set()[0][:, 0].double()
        lo, hi = (float(v) for v in problem.bounds[0])
        tail = first[scores >= torch.quantile(scores, 0.99)]
        edges = torch.linspace(lo, hi, 6, dtype=torch.float64)
        binned = [int(((tail >= a) & (tail <= b if i == 4 else tail < b)).sum())
                  for i, (a, b) in enumerate(itertools.pairwise(edges.tolist()))]
        breeder = run.name.rsplit("_s", 1)[0]
        counts[breeder] = [a + b for a, b in zip(counts.get(breeder, [0] * 5), binned, strict=True)]
        box = " | ".join(f"[{a:.3g}, {b:.3g})" for a, b in itertools.pairwise(edges.tolist()))
    rows = [f"| breeder | {box} |", "|---|" + "---:|" * 5]
    rows += [f"| {b} | " + " | ".join(map(str, c)) + " |" for b, c in counts.items()]
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("report", choices=("faces", "landscape", "burgers", "tails"))
    parser.add_argument("root", nargs="?", type=Path, help="a sweep directory (landscape, burgers)")
    args = parser.parse_args()
    if args.report == "faces":
        rows = faces()
    elif args.root is None:
        parser.error(f"{args.report} needs the sweep directory")
    else:
        report = {"landscape": landscape, "burgers": burgers, "tails": tails}[args.report]
        rows = report(args.root)
    print("\n".join(rows))


if __name__ == "__main__":
    main()
