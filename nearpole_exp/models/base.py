"""What the loop may ask of a model: its declared capabilities and its own per-sample loss.

A model class declares ``capabilities = ModelCapabilities(...)``: ``rational`` when it has
``pq(x) -> (P, Q)`` and ``q_values(x)``, ``hybrid_division`` when its quotient is
``hybrid_divide(P, Q, δ)`` (so the δ schedule of ``gradient=hybrid`` acts on it), ``linear_solve``
when its coefficients have a closed-form optimum for the residual loss. A model computes
its own training loss (``compute_loss``), as the rational models do with their linearised
residual and hybrid division; any other ``torch.nn.Module`` is a plain regressor whose loss is
taken on its prediction. This module is the one place that reads a model's declarations.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import Tensor, nn

from nearpole_exp.models.losses import per_sample_loss

#: The hybrid band δ for a batch, given the model's |Q| on it (None: exact division).
Band = Callable[[Tensor], float] | None


@dataclass(frozen=True)
class ModelCapabilities:
    """The declared capabilities of one model."""

    rational: bool = False
    hybrid_division: bool = False
    #: ``solve_linearised(x, y, weights)`` sets its coefficients to the exact minimiser of the
    #: linearised residual loss (P and Q linear in them)
    linear_solve: bool = False


@dataclass
class LossOutput:
    """A batch's per-sample losses, the prediction they were taken on, and the band δ used."""

    losses: Tensor
    prediction: Tensor
    delta: float = 0.0


def capabilities(model: nn.Module) -> ModelCapabilities:
    """``model``'s declared capabilities (a user's module that declares none has none)."""
    declared = getattr(model, "capabilities", None)
    return declared if isinstance(declared, ModelCapabilities) else ModelCapabilities()


def prediction_loss(model: nn.Module, x: Tensor, y: Tensor, kind: str) -> LossOutput:
    """The loss of a plain regressor: ``kind`` (``mse``, ``relative``, ``nrmse``) on ``model(x)``."""
    pred = model(x)
    return LossOutput(per_sample_loss(pred, y, kind), pred)


def loss_function(model: nn.Module) -> Callable[[Tensor, Tensor, str, Band], LossOutput]:
    """``(x, y, kind, band) -> LossOutput`` for ``model``: its own ``compute_loss``, or the
    prediction loss of a plain module."""
    own = getattr(model, "compute_loss", None)
    if own is not None:
        return own
    return lambda x, y, kind, band: prediction_loss(model, x, y, kind)


def q_function(model: nn.Module) -> Callable[[Tensor], Tensor] | None:
    """The model's Q as a function of the inputs (its ``q_values``), None unless it is rational."""
    return model.q_values if capabilities(model).rational else None  # type: ignore[return-value]
