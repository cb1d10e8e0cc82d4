"""First-look yield: how hard the points of one proposal turned out to be for the surrogate.

A sim's first reported loss is the surrogate's error there before it trained on that sim (an
unbiased look, unlike its later, fitted losses). Ranked within its own generation (0 = easiest,
1 = hardest) it is comparable across generations; a proposal's yield is the mean rank of its sims
over the last few generations. Design points give the box-wide reference: their yield is what
a uniform draw would have found.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor

from nearpole_exp.acquisition.history import PROPOSAL_SOURCES, SOURCE_DESIGN, SimHistory

MIN_SIMS = 4  # sims a proposal needs in the window before its yield is trusted
SOURCES = {"design": (SOURCE_DESIGN,), **{k: (v,) for k, v in PROPOSAL_SOURCES.items()},
           "bred": tuple(PROPOSAL_SOURCES.values())}


class Yield(NamedTuple):
    """Mean first-look rank of a proposal's sims, its standard error and their count."""

    mean: float
    se: float
    n: int


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


def source_yields(history: SimHistory, window: int) -> dict[str, Yield]:
    """Yield of each proposal (``design``, ``generator``, ``local``, ``recombination`` and all
    ``bred``) over the last ``window`` generations holding bred sims with a first-look value;
    proposals with fewer than MIN_SIMS sims there are left out."""
    n = history.size
    told = history.is_bred[:n] & torch.isfinite(history.first[:n])
    gens = torch.unique(history.generation[:n][told])[-window:]
    ids, ranks = ranks_within_generation(history, gens)
    source = history.source[ids]
    out: dict[str, Yield] = {}
    for name, codes in SOURCES.items():
        r = ranks[torch.isin(source, torch.tensor(codes))]
        if r.numel() >= MIN_SIMS:
            out[name] = Yield(float(r.mean()), float(r.std()) / math.sqrt(r.numel()), r.numel())
    return out


def probability_higher(a: Yield, b: Yield) -> float:
    """P(a's true yield > b's) under a Gaussian approximation of the two means."""
    z = (a.mean - b.mean) / max(math.hypot(a.se, b.se), 1e-6)
    return 0.5 * (1.0 + math.erf(z / math.sqrt(2.0)))
