"""Distances to the zero set of a differentiable Q: Q and ∇Q by autograd, and the Newton distance
|Q|/‖∇Q‖ (the length of one Newton step to Q = 0), which does not change when Q is rescaled."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor


def q_and_grad(q_fn: Callable[[Tensor], Tensor], x: Tensor,
               chunk_size: int = 65536) -> tuple[Tensor, Tensor]:
    """Q(x) [n] and ∇ₓQ [n, d] by autograd in chunks (rows must not interact: no batchnorm)."""
    if len(x) == 0:
        return x.new_zeros(0), x.detach().flatten(1) if x.dim() > 1 else x.new_zeros(0, 1)
    qs, grads = [], []
    for chunk in x.detach().split(chunk_size):
        xc = chunk.clone().requires_grad_(True)
        with torch.enable_grad():
            q = q_fn(xc).reshape(-1)
            (g,) = torch.autograd.grad(q.sum(), xc, allow_unused=True)
        qs.append(q.detach())
        grads.append(torch.zeros_like(xc) if g is None else g.detach())
    return torch.cat(qs), torch.cat(grads).reshape(len(x), -1)


def newton_distance(q_fn: Callable[[Tensor], Tensor], x: Tensor, kappa: float = 1e-8,
                    chunk_size: int = 65536) -> Tensor:
    """Gauge-invariant distance |Q|/max(‖∇ₓQ‖, κ): the length of one Newton step to Q = 0."""
    q, g = q_and_grad(q_fn, x, chunk_size)
    return q.abs() / g.norm(dim=1).clamp_min(kappa)
