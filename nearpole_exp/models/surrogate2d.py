"""What the 2-D surrogates share: the simulators' flat sample ``[C·N·N + d]`` (fields, then the
normalised parameters λ) split again, and FiLM conditioning on λ (a per-channel scale and shift
of every block computed from λ by a small MLP), so λ costs d numbers per sample, not d grid
channels. Each model predicts u_{t+1} = u_t + net(u_t, λ), its head starting at zero (an
untrained model is the persistence predictor).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from torch import Tensor, nn

from nearpole_exp.errors import check
from nearpole_exp.models.base import Band, LossOutput
from nearpole_exp.models.losses import per_sample_loss


def known_fields(config_class: type, overrides: dict[str, Any], owner: str) -> dict[str, Any]:
    """The overrides that are ``config_class`` fields (others must be None: shared model
    schemas pass other models' unset fields)."""
    fields = {f.name for f in dataclasses.fields(config_class)}
    stray = sorted(k for k, v in overrides.items() if k not in fields and v is not None)
    if stray:
        raise TypeError(f"{owner} got unexpected arguments {stray}")
    return {k: v for k, v in overrides.items() if k in fields and v is not None}


class FiLM(nn.Module):
    """Per-block (scale, shift) of ``width`` channels from λ: h ← h·(1 + scale) + shift."""

    def __init__(self, n_params: int, widths: list[int], hidden: int) -> None:
        super().__init__()
        self.widths = widths
        self.net = (nn.Sequential(nn.Linear(n_params, hidden), nn.GELU(),
                                  nn.Linear(hidden, 2 * sum(widths)))
                    if n_params > 0 else None)
        if self.net is not None:
            nn.init.zeros_(self.net[-1].weight)
            nn.init.zeros_(self.net[-1].bias)

    def forward(self, lam: Tensor) -> list[tuple[Tensor, Tensor] | None]:
        if self.net is None:
            return [None] * len(self.widths)
        out, parts, start = self.net(lam), [], 0
        for w in self.widths:
            scale, shift = out[:, start:start + w], out[:, start + w:start + 2 * w]
            parts.append((scale[:, :, None, None], shift[:, :, None, None]))
            start += 2 * w
        return parts


def modulate(h: Tensor, film: tuple[Tensor, Tensor] | None) -> Tensor:
    return h if film is None else h * (1 + film[0]) + film[1]


class Surrogate2D(nn.Module):
    """The flat-sample interface shared by the 2-D models: split, FiLM, residual head."""

    def __init__(self, channels: int, grid: int, n_params: int) -> None:
        super().__init__()
        check(channels >= 1, "channels", f"must be positive, got {channels}")
        self.channels, self.grid, self.n_params = channels, grid, n_params

    def compute_loss(self, x: Tensor, y: Tensor, kind: str, band: Band = None) -> LossOutput:
        """The per-sample loss of one step, or with targets ``[n, 2, C, N, N]`` the two-step
        loss ½(ℓ(f(u), y₁) + ℓ(f(f(u)), y₂)), the second step fed the first prediction."""
        first = self(x)
        if y.ndim == first.ndim:
            return LossOutput(per_sample_loss(first, y, kind), first)
        lam = self.split(x)[1]
        second = self(torch.cat([first.flatten(1), lam], dim=1))
        losses = 0.5 * (per_sample_loss(first, y[:, 0], kind) + per_sample_loss(second, y[:, 1], kind))
        return LossOutput(losses, first)

    def split(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(fields ``[n, C, N, N]``, λ ``[n, d]``) of flat samples."""
        size = self.channels * self.grid * self.grid
        if x.shape[-1] != size + self.n_params:
            raise ValueError(f"{type(self).__name__} expects samples of {size} field values and "
                             f"{self.n_params} parameters, got {x.shape[-1]} values")
        return x[:, :size].reshape(-1, self.channels, self.grid, self.grid), x[:, size:]
