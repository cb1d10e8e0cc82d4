"""The polish (``polish`` group): after a round's stochastic steps, take the fit to the optimum of
the objective those steps estimate (the whole pool, weighted by the sampler's objective weights).

``exact`` sets a rational model's coefficients to the closed-form minimiser of the linearised
residual loss (choosing the denominator's degree on held-out rows); ``lbfgs`` runs full-batch
L-BFGS on the objective, for any model; ``auto`` takes the exact solve where the model and loss
have one, and nothing else; ``none`` leaves the stochastic fit. The polish runs after every round
(``every_round``) or after the last only.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from nearpole_exp.errors import ConfigError, check
from nearpole_exp.models.base import capabilities
from nearpole_exp.optim.optimizers import LBFGSConfig, lbfgs

#: ``objective()`` → the weighted mean loss over the polish's samples (a tensor with a graph)
Objective = Callable[[], Tensor]


@dataclass
class PolishConfig:
    """When the polish runs and how far it goes."""

    every_round: bool = True
    # exact: choose the denominator's degree on a held-out share of the pool, keeping the
    # smallest whose held-out objective is within (1 + tolerance) of the best degree's
    select_degree: bool = True
    holdout: float = 0.2
    tolerance: float = 0.5
    # lbfgs: iterations per polish and the curvature history
    lbfgs_iterations: int = 200
    history_size: int = 50

    def __post_init__(self) -> None:
        check(0.0 < self.holdout < 1.0, "holdout", f"must lie in (0, 1), got {self.holdout}")
        check(self.tolerance >= 0, "tolerance", f"must be >= 0, got {self.tolerance}")
        check(self.lbfgs_iterations >= 1, "lbfgs_iterations",
              f"must be >= 1, got {self.lbfgs_iterations}")
        check(self.history_size >= 1, "history_size", f"must be >= 1, got {self.history_size}")


class Polish:
    """``polish=none``: the stochastic fit is the result."""

    config_class = PolishConfig

    def __init__(self, config: PolishConfig | None = None, **overrides: Any) -> None:
        self.config = dataclasses.replace(config or PolishConfig(), **overrides)

    def due(self, round_idx: int, rounds: int) -> bool:
        """Whether the polish runs after round ``round_idx`` (0-based) of ``rounds``."""
        return self.active and (self.config.every_round or round_idx + 1 == rounds)

    @property
    def active(self) -> bool:
        return False

    def check(self, model: nn.Module, loss_kind: str) -> None:
        """Refuse a model or loss this polish cannot work on (a ConfigError naming ``polish``)."""

    def apply(self, model: nn.Module, x: Tensor, y: Tensor, weights: Tensor | None,
              objective: Objective) -> dict[str, float]:
        """Polish ``model`` on the samples ``(x, y)`` with objective ``weights``; returns what
        it did (``polish/*`` names)."""
        return {}


class ExactPolish(Polish):
    """The closed-form minimiser of the linearised residual loss (rational models)."""

    @property
    def active(self) -> bool:
        return True

    def check(self, model: nn.Module, loss_kind: str) -> None:
        if not capabilities(model).linear_solve or loss_kind != "residual":
            raise ConfigError("polish", "the exact solve minimises the linearised residual loss of "
                              "a model linear in its coefficients: use model=rational with "
                              f"trainer.loss=residual (or auto), not {loss_kind}; or polish=lbfgs")

    def apply(self, model: nn.Module, x: Tensor, y: Tensor, weights: Tensor | None,
              objective: Objective) -> dict[str, float]:
        c = self.config
        before = float(objective().detach())
        out = model.solve_linearised(x, y, weights, select_degree=c.select_degree,  # type: ignore[operator]
                                     holdout=c.holdout, tolerance=c.tolerance)
        after = float(objective().detach())
        if not after <= before:  # the held-out degree choice may cost the pool objective
            out["polish/worse_than_steps"] = 1.0
        return {**out, "polish/objective_before": before, "polish/objective_after": after}


class LBFGSPolish(Polish):
    """Full-batch L-BFGS on the objective, for any model."""

    @property
    def active(self) -> bool:
        return True

    def apply(self, model: nn.Module, x: Tensor, y: Tensor, weights: Tensor | None,
              objective: Objective) -> dict[str, float]:
        params = [p for p in model.parameters() if p.requires_grad]
        state = [p.detach().clone() for p in params]
        before = float(objective().detach())
        optimizer = lbfgs(params, LBFGSConfig(history_size=self.config.history_size),
                          iterations=self.config.lbfgs_iterations)

        def closure() -> Tensor:
            optimizer.zero_grad(set_to_none=True)
            value = objective()
            if bool(torch.isfinite(value)):
                value.backward()
            return value

        optimizer.step(closure)
        after = float(objective().detach())
        if not after <= before:  # a line search that went astray (NaN, or uphill): keep the start
            with torch.no_grad():
                for p, s in zip(params, state, strict=True):
                    p.copy_(s)
            after = before
        return {"polish/objective_before": before, "polish/objective_after": after}


class AutoPolish(ExactPolish):
    """The exact solve where the model and its loss have one; nothing otherwise."""

    def __init__(self, config: PolishConfig | None = None, **overrides: Any) -> None:
        super().__init__(config, **overrides)
        self.solvable = True

    @property
    def active(self) -> bool:
        return self.solvable

    def check(self, model: nn.Module, loss_kind: str) -> None:
        self.solvable = capabilities(model).linear_solve and loss_kind == "residual"
