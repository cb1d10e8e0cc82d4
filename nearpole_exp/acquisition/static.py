"""Static designs as breeders: the non-adaptive baselines (uniform, Sobol, Halton, LHS)."""

from __future__ import annotations

from typing import Any

from torch import Tensor

from nearpole_exp.acquisition.base import Breeder, BreederCapabilities
from nearpole_exp.designs import UnitDesign
from nearpole_exp.rng import child_generator


class StaticBreeder(Breeder):
    """Draws every generation from a fixed design; ignores the difficulty signal.

    Every point comes from the design, so its design ratio is 1 (``design_weights`` is None and
    design weighting changes nothing)."""

    capabilities = BreederCapabilities(design_ratio=True)

    def __init__(self, bounds: Tensor, design: str = "uniform") -> None:
        super().__init__(bounds)
        self.stream = UnitDesign(design, self.dim, child_generator())

    def ask(self, n: int) -> Tensor:
        unit = self.stream.draw(n)
        self.n_asked += n
        lo, hi = self.bounds[:, 0], self.bounds[:, 1]
        return lo + unit * (hi - lo)

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "stream": self.stream.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.stream.load_state_dict(state["stream"])
