"""Density-ratio debiasing of the breeder's self-generated history (RatioMLP).

The reservoir is a *known* mixture: a share R̄ of bred points (density p_B) and 1−R̄ of points from
the non-bred design (density p_D, uniform or QMC), each labelled ``is_bred``. A classifier trained
on those labels at their natural proportions estimates P(bred | λ) = R̄·p_B / p_mix, so

    w(λ) = p_D(λ) / p_mix(λ) = (1 − P(bred | λ)) / (1 − R̄)

reweights the whole reservoir to look like the design. This is the variant chosen here (rather
than a classifier of history vs fresh uniform draws): it needs no extra draws, has an unambiguous
label convention, and its raw weights are bounded above by 1/(1−R̄). Weights are self-normalised
to mean 1 per batch and clipped at ``clip``; the Kish ESS fraction is reported.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import Tensor, nn

from nearpole_exp.metrics import effective_sample_size
from nearpole_exp.optim.adamw import AdamW


class RatioMLP(nn.Module):
    """Classifier logit(P(bred | λ)) on box-normalised parameters (unit cube → [−1, 1])."""

    def __init__(self, dim: int, hidden: int = 64, dropout: float = 0.0) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(dim, hidden), nn.SiLU(), nn.Dropout(dropout),
            nn.Linear(hidden, hidden), nn.SiLU(), nn.Dropout(dropout),
            nn.Linear(hidden, 1),
        )

    def forward(self, unit: Tensor) -> Tensor:
        return self.net(2.0 * unit - 1.0)[:, 0]


def mixture_weights(p_bred: Tensor, bred_fraction: float, clip: float) -> Tensor:
    """w = (1 − P(bred|λ)) / (1 − R̄), self-normalised to mean 1 and clipped at ``clip``."""
    if not 0.0 < bred_fraction < 1.0:
        return torch.ones_like(p_bred)
    w = (1.0 - p_bred) / (1.0 - bred_fraction)
    w = w / w.mean().clamp_min(1e-12)
    w = w.clamp(max=clip)
    return w / w.mean().clamp_min(1e-12)


def design_over_pool(p_bred: Tensor, reservoir_share: float, pool_share: float,
                     clip: float) -> Tensor:
    """p_design/p_pool at points where a classifier trained at bred share R̄ (``reservoir_share``)
    says P(bred | λ): p_design/p_bred = R̄/(1 − R̄)·(1 − P)/P, and a pool with bred share b
    (``pool_share``) has p_pool = (1 − b)·p_design + b·p_bred. Self-normalised, clipped, mean 1."""
    p = p_bred.double().clamp(1e-6, 1.0 - 1e-6)
    design_over_bred = (1.0 - p) / p * (reservoir_share / (1.0 - reservoir_share))
    w = 1.0 / ((1.0 - pool_share) + pool_share / design_over_bred)
    w = (w / w.mean()).clamp(max=clip)
    return (w / w.mean()).float()


class RatioEstimator:
    """RatioMLP + AdamW: BCE steps on reservoir batches, and debiasing weights with their ESS."""

    def __init__(self, dim: int, hidden: int = 64, dropout: float = 0.0,
                 weight_decay: float = 0.01, label_smoothing: float = 0.0, lr: float = 1e-3,
                 device: torch.device | str = "cpu") -> None:
        self.device = torch.device(device)
        self.model = RatioMLP(dim, hidden, dropout).to(self.device)
        # the project's AdamW (torch's, op for op): no torch._dynamo import on its first step
        self.optimizer = AdamW(self.model.parameters(), lr=lr, weight_decay=weight_decay,
                               foreach=True)
        self.label_smoothing = float(label_smoothing)
        self.steps = 0
        self.last_loss = float("nan")
        # the classifier as it was at the last generation: what the training loop's design
        # weights read, so they do not depend on how far the trainer thread has got since
        self.view = copy.deepcopy(self.model).requires_grad_(False)
        self.view_steps = 0

    def freeze_view(self) -> None:
        """Copy the classifier into :attr:`view` (at a generation, when nothing trains it)."""
        self.view.load_state_dict(self.model.state_dict())
        self.view_steps = self.steps

    @torch.no_grad()
    def p_bred_view(self, unit: Tensor) -> Tensor:
        """P(bred | λ) from :attr:`view`."""
        self.view.eval()
        return torch.sigmoid(self.view(unit.to(self.device)))

    def step(self, unit: Tensor, is_bred: Tensor) -> float:
        """One BCE step (labels smoothed towards 1/2 by ``label_smoothing``)."""
        self.model.train()
        y = is_bred.to(self.device, torch.float32)
        y = y * (1 - 2 * self.label_smoothing) + self.label_smoothing
        loss = nn.functional.binary_cross_entropy_with_logits(self.model(unit.to(self.device)), y)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.steps += 1
        self.last_loss = float(loss.detach())
        return self.last_loss

    @torch.no_grad()
    def p_bred(self, unit: Tensor) -> Tensor:
        """P(bred | λ) for unit-cube points."""
        self.model.eval()
        return torch.sigmoid(self.model(unit.to(self.device)))

    def weights(self, unit: Tensor, bred_fraction: float, clip: float) -> tuple[Tensor, float]:
        """Debiasing weights for ``unit`` and their ESS as a fraction of the batch size."""
        w = mixture_weights(self.p_bred(unit), bred_fraction, clip)
        return w, effective_sample_size(w) / max(w.shape[0], 1)

    def state_dict(self) -> dict[str, Any]:
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "steps": self.steps, "last_loss": self.last_loss,
                "view": self.view.state_dict(), "view_steps": self.view_steps}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.steps = int(state["steps"])
        self.last_loss = float(state["last_loss"])
        self.view.load_state_dict(state.get("view", state["model"]))  # older states: the model
        self.view_steps = int(state.get("view_steps", self.steps))
