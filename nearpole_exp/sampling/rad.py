"""Residual-based adaptive distribution (RAD, as in DeepXDE's adaptive sampling for PINNs): batches
drawn ∝ ε^k / mean(ε^k) + c, ε the model's current loss on each pool sample.

The baseline a PINN researcher reaches for when Q is unknown: it needs no denominator, only the
loss, which the batch selection recomputes on the pool every ``trainer.q_refresh_every`` steps.
``k`` sharpens the law towards the worst samples and ``c`` keeps a uniform floor. As in DeepXDE,
the batches are not corrected back to the pool (``weights_target="none"``: the objective leans
towards the hard samples); ``"uniform"`` corrects them, so only the gradient's variance changes.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from nearpole_exp.errors import check
from nearpole_exp.sampling.base import BatchSampler, PoolView, SamplerCapabilities, Selection

WEIGHT_TARGETS = ("none", "uniform")


@dataclass
class RADConfig:
    """The law ε^k / mean(ε^k) + c and whether batches are corrected back to the pool."""

    k: float = 1.0
    c: float = 1.0
    weights_target: str = "none"

    def __post_init__(self) -> None:
        check(self.k >= 0, "k", f"must be >= 0, got {self.k}")
        check(self.c >= 0, "c", f"must be >= 0, got {self.c}")
        check(self.weights_target in WEIGHT_TARGETS, "weights_target",
              f"must be one of {WEIGHT_TARGETS}, got {self.weights_target!r}")


def rad_density(losses: Tensor, k: float, c: float) -> Tensor:
    """ε^k / mean(ε^k) + c per sample (float64; a non-finite loss gets the floor c alone, and a
    pool whose losses all vanish is uniform)."""
    e = losses.detach().double().reshape(-1).nan_to_num(nan=0.0, posinf=0.0).clamp_min(0)
    powered = e.pow(k)
    mean = powered.mean()
    if not bool(mean > 0):
        return torch.ones_like(e)
    return powered / mean + c


class RADSampler(BatchSampler):
    """Batches drawn by the residual-based adaptive distribution (see the module docstring)."""

    config_class = RADConfig
    capabilities = SamplerCapabilities(needs_loss=True)

    def __init__(self, config: RADConfig | None = None, **overrides: Any) -> None:
        super().__init__()
        self.config = dataclasses.replace(config or RADConfig(), **overrides)
        self.last_selection: Selection | None = None

    def draw_values(self, view: PoolView) -> Tensor | None:
        return None if view.losses is None else view.losses()

    def prepare(self, values: Tensor) -> Tensor:
        """The density of the losses ``values`` (what :meth:`select` draws by)."""
        return rad_density(values, self.config.k, self.config.c)

    def _law(self, n_pool: int, values: Tensor | None, prior: Tensor | None) -> Tensor:
        if values is None:
            raise ValueError("RADSampler draws by the pool's losses: give them as values "
                             "(prepared by RADSampler.prepare)")
        if values.numel() != n_pool:
            raise ValueError(f"values has {values.numel()} entries for a pool of {n_pool}")
        law = values.double()
        if prior is not None:
            law = law * prior.to(law.device).double().nan_to_num(0.0).clamp_min(0)
            if not bool(law.sum() > 0):
                law = values.double()
        return law / law.sum()

    def select(self, n_pool: int, batch_size: int, *, values: Tensor | None = None,
               prior: Tensor | None = None, device: torch.device | None = None) -> Selection:
        if n_pool <= 0:
            raise ValueError("cannot select a batch from an empty pool")
        law = self._law(n_pool, values, prior)
        device = device or law.device
        law = law.to(device)
        gen = self.generator(device)
        cdf = torch.cumsum(law, 0)
        draws = torch.rand(batch_size, generator=gen, device=device, dtype=torch.float64) * cdf[-1]
        idx = torch.searchsorted(cdf, draws, right=True).clamp_max_(n_pool - 1)
        if self.config.weights_target == "uniform":
            ratio = 1.0 / (n_pool * law[idx])
            weights = (ratio / ratio.mean()).float()
        else:
            weights = torch.ones(batch_size, device=device)
        self.last_selection = Selection(idx, weights)
        return self.last_selection

    def objective_weights(self, n_pool: int, values: Tensor | None = None,
                          prior: Tensor | None = None) -> Tensor | None:
        """The law itself (uncorrected batches), else the pool mean (or the prior's)."""
        if self.config.weights_target == "uniform":
            return super().objective_weights(n_pool, values, prior)
        return self._law(n_pool, values, prior) * n_pool

    def metrics(self, draws: Any) -> dict[str, float]:
        sel = self.last_selection
        return {} if sel is None else {"sampler/rad/ess": sel.ess}
