"""The split of a generation's bred share between OGAS's two proposals, the loss-conditioned
generator and local perturbations of high-score sims, set by the first-look yield of each.

A proposal's yield is the mean, over its sims of the last few generations, of their first-look
loss ranked within their own generation (0 = easiest of the generation, 1 = hardest): where the
surrogate was worst before training on them. The local share is the probability that the
local proposal's yield is the higher (Gaussian approximation of the two means: probability
matching, as in Thompson sampling), clipped to [floor, 1 − floor] so neither is ever abandoned.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from nearpole_exp.acquisition.history import SOURCE_GENERATOR, SOURCE_LOCAL, SimHistory

MIN_SIMS = 4  # sims a proposal needs in the window before its yield is trusted


def ranks_within_generation(history: SimHistory, generations: Tensor) -> tuple[Tensor, Tensor]:
    """(ids, ranks in (0, 1]) of every sim of ``generations`` with a first-look value, each
    ranked among the sims of its own generation (ties share the upper rank)."""
    n = history.size
    gen, first = history.generation[:n], history.first[:n]
    ids_all, ranks_all = [], []
    for g in generations.tolist():
        ids = torch.nonzero((gen == g) & torch.isfinite(first))[:, 0]
        if ids.numel() == 0:
            continue
        values = first[ids]
        ordered = torch.sort(values).values
        ranks_all.append(torch.searchsorted(ordered, values, right=True).float() / ids.numel())
        ids_all.append(ids)
    if not ids_all:
        return torch.zeros(0, dtype=torch.long), torch.zeros(0)
    return torch.cat(ids_all), torch.cat(ranks_all)


def yields(history: SimHistory, window: int) -> dict[int, tuple[float, float, int]]:
    """Per proposal source: (mean rank, its standard error, count) over the last ``window``
    generations that hold bred sims with a first-look value."""
    n = history.size
    told = history.is_bred[:n] & torch.isfinite(history.first[:n])
    gens = torch.unique(history.generation[:n][told])[-window:]
    ids, ranks = ranks_within_generation(history, gens)
    out: dict[int, tuple[float, float, int]] = {}
    source = history.source[ids]
    for s in (SOURCE_GENERATOR, SOURCE_LOCAL):
        r = ranks[source == s]
        if r.numel() >= MIN_SIMS:
            out[s] = (float(r.mean()), float(r.std()) / math.sqrt(r.numel()), int(r.numel()))
    return out


class ProposalMix:
    """The local proposal's share of the bred points: fixed, or adapted to the measured yields."""

    def __init__(self, mode: str, share: float, floor: float, window: int) -> None:
        self.mode = mode
        self.share = share if mode != "generator" else 0.0
        self.floor = floor
        self.window = window
        self.last: dict[str, float] = {}

    def update(self, history: SimHistory) -> float:
        """The share of the next generation (``adaptive``: from the yields; otherwise fixed)."""
        if self.mode != "adaptive":
            return self.share
        y = yields(history, self.window)
        if SOURCE_GENERATOR in y and SOURCE_LOCAL in y:
            (mg, sg, _), (ml, sl, _) = y[SOURCE_GENERATOR], y[SOURCE_LOCAL]
            z = (ml - mg) / max(math.hypot(sg, sl), 1e-6)
            p_local = 0.5 * (1.0 + math.erf(z / math.sqrt(2.0)))
            self.share = min(max(p_local, self.floor), 1.0 - self.floor)
            self.last = {"yield_generator": mg, "yield_local": ml}
        return self.share

    def split(self, n_bred: int) -> tuple[int, int]:
        """(generator count, local count) of ``n_bred`` bred points."""
        n_local = round(n_bred * self.share)
        return n_bred - n_local, n_local

    def state_dict(self) -> dict[str, Any]:
        return {"share": self.share, "last": dict(self.last)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.share = float(state["share"])
        self.last = {k: float(v) for k, v in state["last"].items()}
