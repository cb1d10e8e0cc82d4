"""Rational model y = P(x)/Q(x) with a per-sample Q and the hybrid (saturating) gradient.

In 1D, P and Q are Chebyshev series on the normalised input; in more dimensions they are
linear heads on shared MLP features. Q's coefficients are normalised to unit norm, which
fixes the P/Q gauge so that |Q| is comparable across training (importance sampling on the
model's Q relies on that).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from nearpole_exp.models.base import Band, LossOutput, ModelCapabilities
from nearpole_exp.models.losses import per_sample_loss, residual_loss
from nearpole_exp.models.mlp import mlp_layers
from nearpole_exp.models.normalize import BoxNormalizer


def q_floor(dtype: torch.dtype) -> float:
    """The smallest |Q| the division uses: √(smallest normal number), so 1/Q² stays finite.

    Only Q = 0 itself must be avoided. A fixed floor of 1e-8 cut every pole whose unit-norm
    denominator has |Q| < 1e-8 within the B0 bucket (two poles 0.03 apart: |Q| = 6e-10 at
    1e-7 from a pole), so B0 read 0.24–0.93 for fits whose P/Q was right to 2e-7 there.
    """
    return torch.finfo(dtype).tiny ** 0.5


class HybridDivide(torch.autograd.Function):
    """P/Q whose backward is bounded where |Q| < δ.

    Outside the band the gradients are the exact ones of P/Q. Inside it both exact partials are
    scaled by Q²/(Q² + δ²): ∂/∂P = Q/(Q² + δ²) (bounded by 1/(2δ)) and ∂/∂Q = −P/(Q² + δ²)
    (bounded by |P|/δ², ZeroProofML's saturating form), so a sample on a pole cannot produce an
    infinite or NaN gradient and every sample's gradient keeps the direction of the exact one.
    (The derivative of the regularised quotient P·Q/(Q² + δ²) would instead flip the sign of
    ∂/∂Q inside the band and push |Q| up towards δ, away from any pole.) With δ above every |Q|
    each sample's gradient is the exact one weighted by Q²/δ², so samples next to a model pole
    cannot dominate and a root of Q can enter the domain from a pole-free start (the exact
    quotient gradient pushes it out); as δ shrinks it becomes the quotient fit. It is not the
    linearised fit |P − yQ|², though: with a model pole between training points the weighted
    gradient still has spurious zeros there, so it can stall. The forward value is always P/Q
    (with |Q| floored at :func:`q_floor`, keeping its sign).
    """

    @staticmethod
    def forward(ctx, p: Tensor, q: Tensor, delta: float) -> Tensor:  # type: ignore[override]
        floor = q_floor(q.dtype)
        sign = torch.where(q < 0, -1.0, 1.0).to(q.dtype)
        q_safe = torch.where(q.abs() < floor, sign * floor, q)
        ctx.save_for_backward(p, q_safe)
        ctx.delta = max(float(delta), floor)
        return p / q_safe

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, Tensor, None]:  # type: ignore[override]
        p, q = ctx.saved_tensors
        d2 = ctx.delta**2
        inside = q.abs() < ctx.delta
        denom = torch.where(inside, q * q + d2, q * q)
        dp = q / denom
        dq = -p / denom
        gp = torch.nan_to_num(grad * dp, posinf=1e30, neginf=-1e30)
        gq = torch.nan_to_num(grad * dq, posinf=1e30, neginf=-1e30)
        return gp, gq.sum_to_size(q.shape), None


def hybrid_divide(p: Tensor, q: Tensor, delta: float = 0.0) -> Tensor:
    """P/Q with the hybrid gradient of band ``delta`` (see :class:`HybridDivide`)."""
    return HybridDivide.apply(p, q, delta)


def chebyshev(t: Tensor, degree: int) -> Tensor:
    """Chebyshev polynomials T_0…T_degree at ``t`` (shape [n]), as [n, degree + 1]."""
    cols = [torch.ones_like(t), t]
    for _ in range(2, degree + 1):
        cols.append(2 * t * cols[-1] - cols[-2])
    return torch.stack(cols[: degree + 1], dim=1)


class RationalModel(nn.Module):
    """y = P(x)/Q(x) with learnable P and Q; ``q_values(x)`` gives Q per sample."""

    #: forward's ``delta`` sets the band of the hybrid division (what ``gradient=hybrid`` drives)
    capabilities = ModelCapabilities(rational=True, hybrid_division=True)

    def __init__(self, in_features: int, out_features: int, p_degree: int = 6, q_degree: int = 4,
                 hidden: int = 64, depth: int = 2, activation: str = "tanh",
                 input_bounds: list[list[float]] | None = None) -> None:
        super().__init__()
        if p_degree < 0 or q_degree < 1:
            raise ValueError("model: p_degree must be >= 0 and q_degree >= 1")
        self.normalize = BoxNormalizer(input_bounds, in_features)
        self.one_d = in_features == 1
        self.p_degree, self.q_degree = p_degree, q_degree
        if self.one_d:
            self.p_coef = nn.Parameter(0.1 * torch.randn(p_degree + 1, out_features))
            q_init = torch.zeros(q_degree + 1)
            q_init[0] = 1.0
            self.q_coef = nn.Parameter(q_init + 0.01 * torch.randn(q_degree + 1))
        else:
            self.features = mlp_layers(in_features, hidden, hidden, depth, activation)
            self.features.append(nn.Tanh())
            self.p_head = nn.Linear(hidden, out_features)
            self.q_head = nn.Linear(hidden, 1)
            nn.init.zeros_(self.q_head.weight)
            nn.init.constant_(self.q_head.bias, 1.0)
        self.delta = 0.0

    def pq(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Numerator ``[n, out]`` and unit-norm-coefficient denominator ``[n]`` at ``x``."""
        t = self.normalize(x)
        if self.one_d:
            tc = t[:, 0].clamp(-1.5, 1.5)
            p = chebyshev(tc, self.p_degree) @ self.p_coef
            coef = self.q_coef / self.q_coef.norm()
            q = chebyshev(tc, self.q_degree) @ coef
        else:
            h = self.features(t)
            p = self.p_head(h)
            w = torch.cat([self.q_head.weight.flatten(), self.q_head.bias])
            q = self.q_head(h)[:, 0] / w.norm()
        return p, q

    def q_values(self, x: Tensor) -> Tensor:
        """The model's normalised denominator Q at ``x``, shape [n]."""
        return self.pq(x)[1]

    def forward(self, x: Tensor, delta: float | None = None) -> Tensor:
        p, q = self.pq(x)
        band = self.delta if delta is None else delta
        return hybrid_divide(p, q[:, None], band)

    def compute_loss(self, x: Tensor, y: Tensor, kind: str, band: Band = None) -> LossOutput:
        """``residual``: the linearised loss on P and Q; otherwise ``kind`` on the hybrid quotient,
        its band δ set by ``band`` from this batch's |Q| (exact division without one)."""
        p, q = self.pq(x)
        if kind == "residual":
            return LossOutput(residual_loss(p, q, y), (p / q[:, None]).detach())
        delta = 0.0 if band is None else float(band(q.detach().abs()))
        pred = hybrid_divide(p, q[:, None], delta)
        return LossOutput(per_sample_loss(pred, y, kind), pred, delta)
