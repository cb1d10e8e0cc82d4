"""Affine map of a box to [-1, 1]^d, the input convention of every model."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class BoxNormalizer(nn.Module):
    """Maps inputs from ``input_bounds`` (a list of (low, high)) onto [-1, 1]."""

    def __init__(self, input_bounds: list[list[float]] | None, in_features: int) -> None:
        super().__init__()
        if input_bounds is None:
            low, high = -torch.ones(in_features), torch.ones(in_features)
        else:
            b = torch.as_tensor(input_bounds, dtype=torch.float32)
            low, high = b[:, 0], b[:, 1]
        self.register_buffer("center", (low + high) / 2)
        self.register_buffer("half_width", (high - low) / 2)

    def forward(self, x: Tensor) -> Tensor:
        return (x - self.center) / self.half_width
