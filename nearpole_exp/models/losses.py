"""Per-sample training losses: the quotient losses (``mse``, ``relative``, ``nrmse``) on a model's
prediction and the linearised residual loss on a rational model's P and Q."""

from __future__ import annotations

from torch import Tensor


def residual_loss(p: Tensor, q: Tensor, target: Tensor) -> Tensor:
    """Linearised rational loss |P − y·Q|² / (1 + |y|²) per sample (Q normalised, so no trivial zero).

    Unlike the quotient loss it stays bounded while Q's roots move across the data, so a rational
    model locates its poles without spurious-pole blow-ups.
    """
    n = target.shape[0]
    res = (p - target * q[:, None]).reshape(n, -1).pow(2).mean(dim=1)
    return res / (1.0 + target.reshape(n, -1).pow(2).mean(dim=1))


def per_sample_loss(pred: Tensor, target: Tensor, kind: str) -> Tensor:
    """Per-sample training loss: ``mse``, ``relative`` (squared error / (1 + |y|²)) or ``nrmse``."""
    n = pred.shape[0]
    sq = (pred - target).reshape(n, -1).pow(2).mean(dim=1)
    scale = target.reshape(n, -1).pow(2).mean(dim=1)
    if kind == "mse":
        return sq
    if kind == "relative":
        return sq / (1.0 + scale)
    return sq.clamp_min(1e-24).sqrt() / scale.sqrt().clamp_min(1e-6)


def resolve_loss(kind: str, *, rational: bool, knows_poles: bool, labels_have_poles: bool,
                 band: bool) -> str:
    """``auto``: the residual loss for rational models on labels with poles (the quotient loss
    when a δ schedule is set, since δ acts on P/Q), ``relative`` otherwise on pole problems (on
    RR-IK's damped labels the residual loss placed spurious poles: eval/mse 36.5 vs 0.23), ``mse``
    for simulators. Any other ``kind`` is kept."""
    if kind != "auto":
        return kind
    if not knows_poles:
        return "mse"
    if rational and not band and labels_have_poles:
        return "residual"
    return "relative"
