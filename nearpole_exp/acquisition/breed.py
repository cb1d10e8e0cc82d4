"""BreedBreeder: the local-mutation baseline (Melissa's DefaultBreeder / "Breed").

Each generation a share R (start → end over ``breakpoint`` generations, or steered by the
first-look yields with ``adaptive_ratio="yield"``) is bred: parents are
drawn fitness-proportionally from the most recent ``window`` scored sims, children are Gaussian
around them with sigma relative to the box (``children="gaussian"``, the paper's), on the line
through two of them (``"recombination"``) or both by their yields (``"adaptive"``); the rest
comes from the non-bred design.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import torch
from torch import Tensor

from nearpole_exp.acquisition.base import Breeder
from nearpole_exp.acquisition.children import recombine, reflect_unit
from nearpole_exp.acquisition.config import BreedConfig, build_config
from nearpole_exp.acquisition.history import PROPOSAL_SOURCES, SOURCE_DESIGN, SimHistory, validate_signals
from nearpole_exp.acquisition.mixture import ProposalMix
from nearpole_exp.acquisition.schedule import BreedRatioSchedule, ratio_controller
from nearpole_exp.designs import UnitDesign
from nearpole_exp.rng import child_generator, load_generator_state

__all__ = ["BreedBreeder", "BreedConfig", "fitness_weights"]

FORMAT_VERSION = 1


def fitness_weights(signal: Tensor, power: float) -> Tensor:
    """Parent-selection weights ∝ ((s − min) / (max − min) + 1e-3)^power over the window."""
    lo, hi = signal.min(), signal.max()
    span = (hi - lo).clamp_min(1e-12)
    return ((signal - lo) / span + 1e-3) ** power


class BreedBreeder(Breeder):
    """Fitness-proportional Gaussian mutation of recent hard sims, mixed with a design."""

    config_class = BreedConfig  # the schema of its config group option (config.py)

    def __init__(self, bounds: Tensor, config: BreedConfig | None = None,
                 **overrides: Any) -> None:
        super().__init__(bounds)
        self.config = build_config(BreedConfig, config, overrides)
        cfg = self.config
        self.generator = child_generator()
        self.design = UnitDesign(cfg.non_breed_design, self.dim, child_generator())
        self.schedule = BreedRatioSchedule(cfg.start, cfg.end, cfg.breakpoint, cfg.schedule_on,
                                           cfg.total_budget, cfg.budget_breakpoint)
        self.history = SimHistory(self.dim, cfg.ema_alpha)
        self.ratio_control = ratio_controller(cfg.adaptive_ratio, self.schedule, cfg.start,
                                              cfg.end, cfg.yield_window)
        kinds = {"gaussian": {"local": 1.0}, "recombination": {"recombination": 1.0},
                 "adaptive": {"local": 0.5, "recombination": 0.5}}[cfg.children]
        self.mix = ProposalMix("adaptive" if cfg.children == "adaptive" else "fixed", kinds,
                               cfg.mix_floor, cfg.yield_window)
        self.stats: dict[str, float] = {"ratio": 0.0, "ratio_target": 0.0, "oob_rate": 0.0,
                                        "dropped_values": 0.0}
        self.records: dict[str, list[float]] = {"ratio": [], "ratio_target": [], "oob_rate": []}

    def _parents(self, n: int) -> Tensor:
        """Unit coordinates of ``n`` parents from the last ``window`` scored sims."""
        h = self.history
        scored = torch.nonzero(h.count[: h.size] >= self.config.min_observations)[:, 0]
        window = scored[-self.config.window:]
        p = fitness_weights(h.signal[window], self.config.fitness_power).double()
        pick = torch.multinomial(p, n, replacement=True, generator=self.generator)
        return h.unit[window[pick]]

    def _mutate(self, parents: Tensor) -> tuple[Tensor, int, int]:
        """Children of ``parents``: (unit points, #OOB candidates, #candidates)."""
        cfg = self.config
        sigma = cfg.sigma
        noise = torch.randn(parents.shape, generator=self.generator)
        children = parents + sigma * noise
        if cfg.oob == "reflect":
            oob = ((children < 0) | (children > 1)).any(dim=1)
            return reflect_unit(children), int(oob.sum()), parents.shape[0]
        oob = ((children < 0) | (children > 1)).any(dim=1)
        n_oob, n_cand = int(oob.sum()), parents.shape[0]
        for _ in range(cfg.max_oob_attempts):
            rows = torch.nonzero(oob)[:, 0]
            if rows.numel() == 0:
                break
            sigma *= cfg.oob_factor
            noise = torch.randn((rows.numel(), self.dim), generator=self.generator)
            fresh = parents[rows] + sigma * noise
            bad = ((fresh < 0) | (fresh > 1)).any(dim=1)
            children[rows] = fresh
            oob[rows] = bad
            n_oob += int(bad.sum())
            n_cand += rows.numel()
        return children.clamp(0.0, 1.0), n_oob, n_cand

    def _children(self, n_bred: int) -> tuple[Tensor, Tensor, int, int]:
        """The bred points: (unit points, sources, #OOB candidates, #candidates), Gaussian
        children and recombinations in the mixture's split."""
        counts = self.mix.split(n_bred)
        n_local, n_recomb = counts.get("local", 0), counts.get("recombination", 0)
        local, n_oob, n_cand = self._mutate(self._parents(n_local)) if n_local else (
            torch.empty(0, self.dim), 0, 0)
        recombined = torch.empty(0, self.dim)
        if n_recomb:
            pairs = self._parents(2 * n_recomb)
            recombined = recombine(pairs[:n_recomb], pairs[n_recomb:],
                                   self.config.recombination_spread, self.generator)
        source = torch.cat([torch.full((n_local,), PROPOSAL_SOURCES["local"]),
                            torch.full((n_recomb,), PROPOSAL_SOURCES["recombination"])])
        return torch.cat([local, recombined]), source, n_oob, n_cand

    def ask(self, n: int) -> Tensor:
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        h = self.history
        has_scores = bool((h.count[: h.size] >= self.config.min_observations).any())
        ratio = self._ratio()
        n_bred = math.floor(n * ratio + 1e-9) if has_scores else 0
        if n_bred:
            self.mix.update(h)
        bred, source, n_oob, n_cand = self._children(n_bred)
        unit = torch.cat([bred, self.design.draw(n - n_bred)])
        source = torch.cat([source, torch.full((n - n_bred,), SOURCE_DESIGN)])
        perm = torch.randperm(n, generator=self.generator)
        unit, source = unit[perm], source[perm]
        is_bred = source != SOURCE_DESIGN
        h.write(self.n_asked, unit, is_bred, self.schedule.generation,
                torch.full((n,), float("nan")), source)
        self.n_asked += n
        self.schedule.advance()
        self.stats.update(ratio=n_bred / n if n else 0.0, ratio_target=ratio,
                          oob_rate=n_oob / n_cand if n_cand else 0.0)
        for key in self.records:
            self.records[key].append(self.stats[key])
        lo, hi = self.bounds[:, 0], self.bounds[:, 1]
        return lo + unit * (hi - lo)

    def _ratio(self) -> float:
        """R of the generation being drawn: the ramp's, or the yield controller's."""
        return self.ratio_control.next_ratio(self.history, self.schedule.generation, self.n_asked)

    def tell(self, sim_ids: Tensor, values: Tensor) -> None:
        """Per-sample signals (EMA per sim); non-finite values are dropped and counted."""
        self.tell_many(sim_ids, values, torch.zeros(torch.as_tensor(sim_ids).shape, dtype=torch.long))

    def tell_many(self, sim_ids: Tensor, values: Tensor, calls: Tensor) -> None:
        """Consecutive tell calls at once (see :meth:`Breeder.tell_many`), one vectorised update."""
        ids, vals, calls, dropped = validate_signals(sim_ids, values, self.n_asked, calls)
        self.stats["dropped_values"] += dropped
        if ids.numel():
            self.history.update(ids, vals.clamp(max=self.config.max_loss_value), calls)

    def bred_mask(self, sim_ids: Tensor) -> Tensor:
        return self.history.is_bred[torch.as_tensor(sim_ids, dtype=torch.long)].clone()

    def metrics(self) -> dict[str, float]:
        out = {
            "breeder/ratio": self.stats["ratio"],
            "breeder/ratio_target": self.stats["ratio_target"],
            "breeder/oob_rate": self.stats["oob_rate"],
            "breeder/generation": float(self.schedule.generation),
            "breeder/dropped_values": self.stats["dropped_values"],
        }
        out.update({f"breeder/{k}": v for k, v in self.ratio_control.metrics().items()})
        if self.config.children == "adaptive":
            out.update({f"breeder/{k}_share": v for k, v in self.mix.shares.items()})
            out.update({f"breeder/{k}": v for k, v in self.mix.last.items()})
        return out

    def state_dict(self) -> dict[str, Any]:
        return {
            "format_version": FORMAT_VERSION,
            "kind": "breed",
            "config": dataclasses.asdict(self.config),
            "n_asked": self.n_asked,
            "generator": self.generator.get_state(),
            "design": self.design.state_dict(),
            "schedule": self.schedule.state_dict(),
            "history": self.history.state_dict(),
            "adaptive": self.ratio_control.state_dict(),
            "mix": self.mix.state_dict(),
            "stats": dict(self.stats),
            "records": {k: list(v) for k, v in self.records.items()},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("kind") != "breed" or int(state.get("format_version", -1)) != FORMAT_VERSION:
            raise ValueError("not a BreedBreeder state of the current format")
        self.n_asked = int(state["n_asked"])
        load_generator_state(self.generator, state["generator"])
        self.design.load_state_dict(state["design"])
        self.schedule.load_state_dict(state["schedule"])
        self.history.load_state_dict(state["history"])
        self.ratio_control.load_state_dict(state.get("adaptive"))
        if "mix" in state:  # states from before the children mixture keep the configured split
            self.mix.load_state_dict(state["mix"])
        self.stats = {k: float(v) for k, v in state["stats"].items()}
        self.records = {k: list(v) for k, v in state["records"].items()}

    def plots(self, outdir: str) -> list[str]:
        """Write the breeder PNGs (see :func:`plot_breeder`) into ``outdir``."""
        from nearpole_exp.acquisition.plots import plot_breeder  # matplotlib only when plotting

        return [str(p) for p in plot_breeder(self, outdir)]

    def plot_data(self) -> dict[str, Any]:
        """Same layout as :meth:`OGASBreeder.plot_data` (no DDPM loss)."""
        n = self.history.size
        lo, hi = self.bounds[:, 0], self.bounds[:, 1]
        return {
            "params": lo + self.history.unit[:n] * (hi - lo),
            "generation": self.history.generation[:n].clone(),
            "is_bred": self.history.is_bred[:n].clone(),
            "signal": self.history.signal[:n].clone(),
            "breed_ratio": list(self.records["ratio"]),
            "breed_ratio_target": list(self.records["ratio_target"]),
            "oob_rate": list(self.records["oob_rate"]),
            "bounds": self.bounds.clone(),
        }
