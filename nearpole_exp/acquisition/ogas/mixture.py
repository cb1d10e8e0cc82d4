"""The split of a generation's bred share between OGAS's two proposals, the loss-conditioned
generator and local perturbations of high-score sims, set by the first-look yield of each
(acquisition/yields.py).

The local share is the probability that the local proposal's yield is the higher (probability
matching, as in Thompson sampling), clipped to [floor, 1 − floor] so neither is abandoned.
"""

from __future__ import annotations

from typing import Any

from nearpole_exp.acquisition.history import SimHistory
from nearpole_exp.acquisition.yields import probability_higher, source_yields


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
        y = source_yields(history, self.window)
        if "generator" in y and "local" in y:
            p_local = probability_higher(y["local"], y["generator"])
            self.share = min(max(p_local, self.floor), 1.0 - self.floor)
            self.last = {"yield_generator": y["generator"].mean, "yield_local": y["local"].mean}
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
