"""What the loop may ask of a model beyond ``forward(x, delta=0.0)``, declared as class attributes.

A model class sets ``rational = True`` when it has ``pq(x) -> (P, Q)`` and ``q_values(x)``, and
``hybrid_division = True`` when ``forward(x, delta)`` is ``hybrid_divide(P, Q, delta)`` of its
``pq(x)``: the loop then computes P and Q once per step, sets the band from that Q and divides.
Any ``torch.nn.Module`` that declares neither is a plain regressor.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn


@dataclass(frozen=True)
class ModelCapabilities:
    """The declared capabilities of one model."""

    rational: bool = False
    hybrid_division: bool = False


def capabilities(model: nn.Module) -> ModelCapabilities:
    """``model``'s declared capabilities (a user's module that declares none has none)."""
    return ModelCapabilities(rational=bool(getattr(model, "rational", False)),
                             hybrid_division=bool(getattr(model, "hybrid_division", False)))
