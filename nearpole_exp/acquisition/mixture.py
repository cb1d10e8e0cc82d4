"""The split of a generation's bred share among proposals (the loss-conditioned generator, local
Gaussian children of high-score sims, recombination of two high-score sims), set by the
first-look yield of each (acquisition/yields.py).

Each proposal's share is the probability that its yield is the highest (probability matching,
as in Thompson sampling; for two proposals that of the Gaussian approximation of the difference,
for more a fixed 4096-draw Monte Carlo estimate seeded by the history's size, so a resumed run
draws the same), kept at least ``floor`` so no proposal is abandoned on an early reading.
"""

from __future__ import annotations

from typing import Any

import torch

from nearpole_exp.acquisition.history import SimHistory
from nearpole_exp.acquisition.yields import Yield, probability_higher, source_yields

THOMPSON_DRAWS = 4096


def probability_best(yields: dict[str, Yield], seed: int) -> dict[str, float]:
    """P(each proposal's true yield is the highest), Gaussian approximation of each mean."""
    names = list(yields)
    if len(names) == 2:
        a, b = names
        p = probability_higher(yields[a], yields[b])
        return {a: p, b: 1.0 - p}
    gen = torch.Generator().manual_seed(seed)
    means = torch.tensor([yields[k].mean for k in names], dtype=torch.float64)
    ses = torch.tensor([max(yields[k].se, 1e-6) for k in names], dtype=torch.float64)
    draws = means + ses * torch.randn(THOMPSON_DRAWS, len(names), generator=gen, dtype=torch.float64)
    wins = torch.bincount(draws.argmax(dim=1), minlength=len(names)).double() / THOMPSON_DRAWS
    return dict(zip(names, wins.tolist(), strict=True))


class ProposalMix:
    """Shares of the bred points among named proposals: fixed, or adapted to the measured yields.

    ``shares`` maps each proposal in use to its starting share (they sum to 1); proposals with a
    zero share in ``fixed`` mode are never drawn."""

    def __init__(self, mode: str, shares: dict[str, float], floor: float, window: int) -> None:
        total = sum(shares.values())
        if total <= 0 or any(v < 0 for v in shares.values()):
            raise ValueError(f"proposal shares must be >= 0 and sum to a positive total, got {shares}")
        self.mode = mode
        self.shares = {k: v / total for k, v in shares.items()}
        self.floor = floor
        self.window = window
        self.last: dict[str, float] = {}

    def update(self, history: SimHistory) -> dict[str, float]:
        """The shares of the next generation (``adaptive``: from the yields once every proposal
        has one; otherwise fixed)."""
        if self.mode != "adaptive" or len(self.shares) < 2:
            return self.shares
        y = source_yields(history, self.window)
        if all(name in y for name in self.shares):
            best = probability_best({k: y[k] for k in self.shares}, seed=history.size)
            spare = 1.0 - self.floor * len(best)
            self.shares = {k: self.floor + spare * p for k, p in best.items()}
            self.last = {f"yield_{k}": y[k].mean for k in self.shares}
        return self.shares

    def split(self, n_bred: int) -> dict[str, int]:
        """How many of ``n_bred`` bred points each proposal makes (largest remainders)."""
        raw = {k: n_bred * s for k, s in self.shares.items()}
        counts = {k: int(v) for k, v in raw.items()}
        order = sorted(raw, key=lambda k: raw[k] - counts[k], reverse=True)
        for k in order[: n_bred - sum(counts.values())]:
            counts[k] += 1
        return counts

    def state_dict(self) -> dict[str, Any]:
        return {"shares": dict(self.shares), "last": dict(self.last)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if "shares" in state:
            self.shares = {k: float(v) for k, v in state["shares"].items()}
        else:  # a state from the two-proposal mixture: the local share alone
            local = float(state["share"])
            self.shares = {"generator": 1.0 - local, "local": local}
        self.last = {k: float(v) for k, v in state["last"].items()}
