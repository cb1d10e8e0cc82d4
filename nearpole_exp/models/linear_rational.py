"""A rational model linear in some inputs: y = A(c)·d / q(c), the form of damped inverse maps.

The inputs split into context coordinates c (``context_dims``, e.g. joint angles) and linear
coordinates d (the rest, e.g. a displacement). The output is linear in d through a matrix A(c),
an MLP head on features φ(c) (cos and sin of c when ``periodic``), divided by a positive
denominator q(c) = Σ_k (w_k·φ(c))² + floor·softplus(h(c)): a sum of ``squares`` squared linear
feature terms, which can vanish exactly where a combination of the features does (RR-IK's
det J = l1·l2·sin θ2), plus a learned positive floor (the damping). Damped least squares,
Jᵀ(JJᵀ + λ²I)⁻¹·d, has this form; a generic MLP must discover both the linearity in d and a
bump of width λ in the angles, which it does not at ZeroProofML's budget (benchmarks/nearpole.md).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from nearpole_exp.errors import check
from nearpole_exp.models.base import Band, LossOutput, ModelCapabilities
from nearpole_exp.models.losses import per_sample_loss, residual_loss
from nearpole_exp.models.mlp import ACTIVATIONS, mlp_layers
from nearpole_exp.models.normalize import BoxNormalizer


class LinearRationalModel(nn.Module):
    """y = floor·A(φ(c))·d / q(φ(c)) with q > 0; ``pq`` and ``q_values`` like the rational model."""

    capabilities = ModelCapabilities(rational=True)

    def __init__(self, in_features: int, out_features: int, context_dims: list[int] | None = None,
                 periodic: bool = True, hidden: int = 64, depth: int = 2, activation: str = "tanh",
                 squares: int = 1, floor: float = 1e-3,
                 input_bounds: list[list[float]] | None = None) -> None:
        super().__init__()
        context = list(range(in_features - out_features) if context_dims is None else context_dims)
        check(len(context) >= 1 and len(set(context)) == len(context)
              and all(0 <= i < in_features for i in context), "context_dims",
              f"must be distinct input indices in [0, {in_features}), got {context}")
        linear = [i for i in range(in_features) if i not in context]
        check(len(linear) >= 1, "context_dims", "must leave at least one input for the linear part")
        check(squares >= 1, "squares", f"must be >= 1, got {squares}")
        check(floor > 0, "floor", f"must be positive, got {floor}")
        check(depth >= 1, "depth", f"must be >= 1, got {depth}")
        check(activation in ACTIVATIONS, "activation", f"must be one of {sorted(ACTIVATIONS)}")
        self.register_buffer("context", torch.tensor(context, dtype=torch.long))
        self.register_buffer("linear", torch.tensor(linear, dtype=torch.long))
        self.periodic = periodic
        self.floor = float(floor)
        self.out_features = out_features
        bounds = None if input_bounds is None else [input_bounds[i] for i in context]
        self.normalize = BoxNormalizer(bounds, len(context))
        n_feat = 2 * len(context) if periodic else len(context)
        self.body = nn.Sequential(mlp_layers(n_feat, hidden, hidden, depth - 1, activation),
                                  ACTIVATIONS[activation]())
        self.matrix = nn.Linear(hidden, out_features * len(linear))
        self.floor_head = nn.Linear(hidden, 1)
        self.square_terms = nn.Linear(n_feat, squares, bias=False)

    def features(self, x: Tensor) -> Tensor:
        """φ(c): cos and sin of the context (periodic) or the box-normalised context."""
        c = x[:, self.context]
        if self.periodic:
            return torch.cat([torch.cos(c), torch.sin(c)], dim=1)
        return self.normalize(c)

    def pq(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Numerator ``[n, out]`` and positive denominator ``[n]``."""
        phi = self.features(x)
        h = self.body(phi)
        a = self.matrix(h).view(len(x), self.out_features, len(self.linear))
        p = torch.einsum("noi,ni->no", a, x[:, self.linear]) * self.floor
        # the 1e-9·floor keeps q > 0 where softplus underflows to 0 and a square term vanishes
        q = self.square_terms(phi).pow(2).sum(dim=1) \
            + self.floor * (nn.functional.softplus(self.floor_head(h)[:, 0]) + 1e-9)
        return p, q

    def q_values(self, x: Tensor) -> Tensor:
        """The denominator q at ``x``, shape [n] (always > 0: the model has no real poles)."""
        return self.pq(x)[1]

    def forward(self, x: Tensor, delta: float | None = None) -> Tensor:
        """P/Q; ``delta`` (the hybrid-gradient band) is accepted and unused, since q > 0."""
        p, q = self.pq(x)
        return p / q[:, None]

    def compute_loss(self, x: Tensor, y: Tensor, kind: str, band: Band = None) -> LossOutput:
        """``residual``: the linearised loss on P and Q; otherwise ``kind`` on P/Q (q > 0, so no
        band applies)."""
        p, q = self.pq(x)
        if kind == "residual":
            return LossOutput(residual_loss(p, q, y), (p / q[:, None]).detach())
        pred = p / q[:, None]
        return LossOutput(per_sample_loss(pred, y, kind), pred)
