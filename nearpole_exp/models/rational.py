"""Rational model y = P(x)/Q(x) with a per-sample Q and the hybrid (saturating) gradient.

P and Q are linear in their coefficients: Chebyshev polynomials of the box-normalised input
(``basis="chebyshev"``; in d variables the products of total degree ≤ the degree), or linear
heads on shared MLP features (``basis="mlp"``). Q's coefficients are normalised to unit norm,
which fixes the P/Q gauge so that |Q| is comparable across training (importance sampling on the
model's Q relies on that). Being linear, the coefficients minimising the linearised residual
|P − yQ|² have a closed form (:meth:`RationalModel.solve_linearised`); with the Chebyshev basis
the solve also chooses the degrees, which the model keeps (``active_q_degree``).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from nearpole_exp.errors import check
from nearpole_exp.models import rational_solve
from nearpole_exp.models.base import Band, LossOutput, ModelCapabilities
from nearpole_exp.models.chebyshev import exponents, n_terms, total_degree_basis
from nearpole_exp.models.losses import per_sample_loss, residual_loss
from nearpole_exp.models.mlp import ACTIVATIONS, mlp_layers
from nearpole_exp.models.normalize import BoxNormalizer

BASES = ("auto", "chebyshev", "mlp")
#: ``basis="auto"`` takes Chebyshev polynomials up to this many inputs (a total-degree basis of
#: degree 14 in 3 variables has 680 terms), MLP features above.
MAX_POLYNOMIAL_INPUTS = 3


def q_floor(dtype: torch.dtype) -> float:
    """The smallest |Q| the division uses: √(smallest normal number), so 1/Q² stays finite.

    Only Q = 0 itself must be avoided. A fixed floor of 1e-8 cut every pole whose unit-norm
    denominator has |Q| < 1e-8 within the B0 bucket (two poles 0.03 apart: |Q| = 6e-10 at
    1e-7 from a pole), so B0 read 0.24–0.93 for fits whose P/Q was right to 2e-7 there.
    """
    return torch.finfo(dtype).tiny ** 0.5

#: the MLP basis's settings (used when the inputs are too many for a polynomial basis)
MLP_BASIS: dict[str, Any] = {"hidden": 64, "depth": 2, "activation": "tanh"}


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


class RationalModel(nn.Module):
    """y = P(x)/Q(x) with learnable P and Q; ``q_values(x)`` gives Q per sample."""

    #: forward's ``delta`` sets the band of the hybrid division (what ``gradient=hybrid`` drives)
    capabilities = ModelCapabilities(rational=True, hybrid_division=True, linear_solve=True)

    def __init__(self, in_features: int, out_features: int, p_degree: int = 14, q_degree: int = 12,
                 hidden: int = MLP_BASIS["hidden"], depth: int = MLP_BASIS["depth"],
                 activation: str = MLP_BASIS["activation"],
                 input_bounds: list[list[float]] | None = None, basis: str = "auto") -> None:
        super().__init__()
        check(p_degree >= 0, "p_degree", f"must be >= 0, got {p_degree}")
        check(q_degree >= 1, "q_degree", f"must be >= 1, got {q_degree}")
        check(basis in BASES, "basis", f"must be one of {BASES}, got {basis!r}")
        check(activation in ACTIVATIONS, "activation",
              f"must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
        self.normalize = BoxNormalizer(input_bounds, in_features)
        self.p_degree, self.q_degree = p_degree, q_degree
        if basis == "auto":
            basis = "chebyshev" if in_features <= MAX_POLYNOMIAL_INPUTS else "mlp"
        self.basis = basis
        given = {"hidden": hidden, "depth": depth, "activation": activation}
        for key, value in given.items():  # the MLP basis's settings: refused, not ignored, else
            check(basis == "mlp" or value == MLP_BASIS[key], key,
                  f"is used only by the MLP basis (model.basis=mlp, or more than "
                  f"{MAX_POLYNOMIAL_INPUTS} inputs); this model's basis is {basis}")
        if basis == "chebyshev":
            self.register_buffer("p_powers", exponents(in_features, p_degree), persistent=False)
            self.register_buffer("q_powers", exponents(in_features, q_degree), persistent=False)
            self.p_coef = nn.Parameter(0.1 * torch.randn(len(self.p_powers), out_features))
            q_init = torch.zeros(len(self.q_powers))
            q_init[0] = 1.0
            self.q_coef = nn.Parameter(q_init + 0.01 * torch.randn(len(self.q_powers)))
        else:
            self.features = mlp_layers(in_features, hidden, hidden, depth, activation)
            self.features.append(nn.Tanh())
            self.p_head = nn.Linear(hidden, out_features)
            self.q_head = nn.Linear(hidden, 1)
            nn.init.zeros_(self.q_head.weight)
            nn.init.constant_(self.q_head.bias, 1.0)
        # the degrees in use (≤ the maximum; a linear solve with degree selection lowers them)
        self.register_buffer("active_q_degree", torch.tensor(q_degree))
        self.delta = 0.0

    @property
    def active_p_degree(self) -> int:
        """P's degree in use: the denominator's plus the model's spare numerator degrees."""
        return max(0, min(self.p_degree, int(self.active_q_degree) + self.p_degree - self.q_degree))

    def _active_terms(self) -> tuple[int, int]:
        """How many leading basis terms of P and Q are in use."""
        dim = self.p_powers.shape[1]
        return n_terms(dim, self.active_p_degree), n_terms(dim, int(self.active_q_degree))

    def _load_from_state_dict(self, state: dict, prefix: str, *args: object, **kwargs: object) -> None:
        """A state saved before the model kept its active degree uses every term."""
        state.setdefault(prefix + "active_q_degree", torch.tensor(self.q_degree))
        super()._load_from_state_dict(state, prefix, *args, **kwargs)

    def pq(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Numerator ``[n, out]`` and unit-norm-coefficient denominator ``[n]`` at ``x``."""
        t = self.normalize(x)
        if self.basis == "chebyshev":
            tp, tq = self._active_terms()
            tc = t.clamp(-1.5, 1.5)
            p = total_degree_basis(tc, self.p_powers[:tp]) @ self.p_coef[:tp]
            coef = self.q_coef[:tq] / self.q_coef[:tq].norm()
            q = total_degree_basis(tc, self.q_powers[:tq]) @ coef
        else:
            h = self.features(t)
            p = self.p_head(h)
            w = torch.cat([self.q_head.weight.flatten(), self.q_head.bias])
            q = self.q_head(h)[:, 0] / w.norm()
        return p, q

    def linear_bases(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """The design matrices of P and Q at ``x`` (all terms, float64): P = A·p, Q = B·q."""
        with torch.no_grad():
            t = self.normalize(x)
            if self.basis == "chebyshev":
                tc = t.double().clamp(-1.5, 1.5)
                return total_degree_basis(tc, self.p_powers), total_degree_basis(tc, self.q_powers)
            h = self.features(t).double()
            design = torch.cat([h, torch.ones(len(h), 1, dtype=h.dtype, device=h.device)], dim=1)
            return design, design

    def solve_linearised(self, x: Tensor, y: Tensor, weights: Tensor | None = None,
                         select_degree: bool = True, holdout: float = 0.2,
                         tolerance: float = 0.5) -> dict[str, float]:
        """Set P's and Q's coefficients to the exact minimiser of the linearised residual
        objective on ``(x, y)`` with sample ``weights`` (features held fixed), choosing the
        denominator's degree on held-out rows first with the Chebyshev basis; returns the
        degrees and the objective."""
        a, b = self.linear_bases(x)
        y64 = y.detach().double().reshape(len(y), -1)
        w = None if weights is None else weights.detach().double()
        if self.basis == "chebyshev":
            dim = self.p_powers.shape[1]
            degrees = list(range(self.q_degree + 1))
            p_deg = [max(0, min(self.p_degree, m + self.p_degree - self.q_degree)) for m in degrees]
            q_terms = [n_terms(dim, m) for m in degrees]
            p_terms = [n_terms(dim, m) for m in p_deg]
            pick = (rational_solve.select_degree(a, b, y64, w, q_terms, p_terms, holdout, tolerance)
                    if select_degree else len(degrees) - 1)
            fit = rational_solve.solve(a[:, : p_terms[pick]], b[:, : q_terms[pick]], y64, w)
            with torch.no_grad():
                self.active_q_degree.fill_(degrees[pick])
                self.p_coef.zero_()
                self.q_coef.zero_()
                self.p_coef[: p_terms[pick]] = fit.p.to(self.p_coef)
                self.q_coef[: q_terms[pick]] = fit.q.to(self.q_coef)
        else:
            fit = rational_solve.solve(a, b, y64, w)
            with torch.no_grad():
                self.p_head.weight.copy_(fit.p[:-1].T)
                self.p_head.bias.copy_(fit.p[-1])
                self.q_head.weight.copy_(fit.q[:-1][None])
                self.q_head.bias.copy_(fit.q[-1:])
        return {"model/q_degree": float(self.active_q_degree) if self.basis == "chebyshev" else math.nan,
                "polish/objective": fit.objective}
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
