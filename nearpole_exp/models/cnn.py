"""A small periodic 1D CNN surrogate that predicts the next state of a simulator by increments."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from torch import Tensor, nn

from nearpole_exp.errors import check
from nearpole_exp.models.mlp import ACTIVATIONS


@dataclass
class CNN1DConfig:
    """Width (channels), number of residual blocks, kernel size and activation of :class:`CNN1D`."""

    width: int = 16
    depth: int = 4
    kernel_size: int = 5
    activation: str = "gelu"

    def __post_init__(self) -> None:
        check(self.width >= 1, "width", f"must be positive, got {self.width}")
        check(self.depth >= 0, "depth", f"must be non-negative, got {self.depth}")
        check(self.kernel_size >= 1 and self.kernel_size % 2 == 1, "kernel_size",
              f"must be a positive odd number, got {self.kernel_size}")
        check(self.activation in ACTIVATIONS, "activation",
              f"must be one of {sorted(ACTIVATIONS)}, got {self.activation!r}")


def periodic_conv(c_in: int, c_out: int, kernel_size: int) -> nn.Conv1d:
    """A same-length convolution with circular padding (the grid is periodic)."""
    return nn.Conv1d(c_in, c_out, kernel_size, padding=kernel_size // 2, padding_mode="circular")


class ResidualBlock(nn.Module):
    """x + conv(act(conv(act(x)))), both convolutions periodic."""

    def __init__(self, width: int, kernel_size: int, activation: str) -> None:
        super().__init__()
        self.body = nn.Sequential(
            ACTIVATIONS[activation](), periodic_conv(width, width, kernel_size),
            ACTIVATIONS[activation](), periodic_conv(width, width, kernel_size),
        )

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


class CNN1D(nn.Module):
    """[n, C_in, L] → [n, C_out, L] with out = x[:, :C_out] + net(x) (delta prediction).

    Channel 0… of the input hold the current state u_t, the rest the broadcast parameters.
    The output head starts at zero, so an untrained model is the persistence predictor
    u_{t+1} = u_t. Extra keyword arguments are accepted only when None (shared model
    schemas pass other models' unset fields); ``delta`` in ``forward`` is ignored.
    """

    config_class = CNN1DConfig  # the schema of its config group option (config.py)

    def __init__(self, in_channels: int, out_channels: int = 1, length: int | None = None,
                 config: CNN1DConfig | None = None, **overrides: object) -> None:
        super().__init__()
        fields = {f.name for f in dataclasses.fields(CNN1DConfig)}
        unknown = {k for k in overrides if k not in fields}
        set_unknown = sorted(k for k in unknown if overrides[k] is not None)
        if set_unknown:
            raise TypeError(f"CNN1D got unexpected arguments {set_unknown}")
        known = {k: v for k, v in overrides.items() if k not in unknown and v is not None}
        check(1 <= out_channels <= in_channels, "out_channels",
              f"must lie in 1…in_channels ({in_channels}), got {out_channels}")
        self.config = dataclasses.replace(config or CNN1DConfig(), **known)
        cfg = self.config
        self.out_channels = out_channels
        self.length = length
        self.lift = periodic_conv(in_channels, cfg.width, cfg.kernel_size)
        self.blocks = nn.Sequential(*(ResidualBlock(cfg.width, cfg.kernel_size, cfg.activation)
                                      for _ in range(cfg.depth)))
        self.head = nn.Sequential(ACTIVATIONS[cfg.activation](),
                                  nn.Conv1d(cfg.width, out_channels, 1))
        nn.init.zeros_(self.head[1].weight)
        nn.init.zeros_(self.head[1].bias)

    def forward(self, x: Tensor, delta: float | None = None) -> Tensor:
        return x[:, : self.out_channels] + self.head(self.blocks(self.lift(x)))
