"""UNet2D (Ronneberger et al. 2015) for the 2-D simulators' next state: ``levels`` of two
periodic 3×3 convolutions then a 2×2 average pool, doubling the channels; back up by nearest
upsampling, concatenating the skip; every block FiLM-conditioned on λ (surrogate2d.py).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from nearpole_exp.errors import check
from nearpole_exp.models.mlp import ACTIVATIONS
from nearpole_exp.models.surrogate2d import FiLM, Surrogate2D, known_fields, modulate


@dataclass
class UNet2DConfig:
    """Base channels, levels (each halves the grid), activation and FiLM width of :class:`UNet2D`."""

    width: int = 16
    levels: int = 2
    activation: str = "gelu"
    film_hidden: int = 64

    def __post_init__(self) -> None:
        check(self.width >= 1, "width", f"must be positive, got {self.width}")
        check(self.levels >= 1, "levels", f"must be positive, got {self.levels}")
        check(self.activation in ACTIVATIONS, "activation",
              f"must be one of {sorted(ACTIVATIONS)}, got {self.activation!r}")
        check(self.film_hidden >= 1, "film_hidden", f"must be positive, got {self.film_hidden}")


def conv_block(c_in: int, c_out: int, activation: str) -> nn.Sequential:
    """Two periodic 3×3 convolutions, each followed by the activation."""
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1, padding_mode="circular"), ACTIVATIONS[activation](),
        nn.Conv2d(c_out, c_out, 3, padding=1, padding_mode="circular"), ACTIVATIONS[activation]())


class UNet2D(Surrogate2D):
    """[n, C·N·N + d] → [n, C, N, N]: u_t + UNet(u_t; λ); N must be divisible by 2^levels."""

    config_class = UNet2DConfig  # the schema of its config group option (config.py)

    def __init__(self, channels: int, grid: int, n_params: int, config: UNet2DConfig | None = None,
                 **overrides: object) -> None:
        super().__init__(channels, grid, n_params)
        self.config = dataclasses.replace(config or UNet2DConfig(),
                                          **known_fields(UNet2DConfig, overrides, "UNet2D"))
        cfg = self.config
        check(grid % (2 ** cfg.levels) == 0, "levels",
              f"{cfg.levels} levels halve the grid {cfg.levels} times: grid={grid} is not "
              f"divisible by {2 ** cfg.levels}")
        widths = [cfg.width * 2**i for i in range(cfg.levels + 1)]
        self.down = nn.ModuleList(conv_block(channels if i == 0 else widths[i - 1], widths[i],
                                             cfg.activation) for i in range(cfg.levels))
        self.bottom = conv_block(widths[-2], widths[-1], cfg.activation)
        self.up = nn.ModuleList(conv_block(widths[i + 1] + widths[i], widths[i], cfg.activation)
                                for i in reversed(range(cfg.levels)))
        self.film = FiLM(n_params, [*widths[:-1], widths[-1], *reversed(widths[:-1])], cfg.film_hidden)
        self.head = nn.Conv2d(cfg.width, channels, 1)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(self, x: Tensor) -> Tensor:
        u, lam = self.split(x)
        films = self.film(lam)
        levels = self.config.levels
        h, skips = u, []
        for i, block in enumerate(self.down):
            h = modulate(block(h), films[i])
            skips.append(h)
            h = nn.functional.avg_pool2d(h, 2)
        h = modulate(self.bottom(h), films[levels])
        for j, block in enumerate(self.up):
            h = nn.functional.interpolate(h, scale_factor=2, mode="nearest")
            h = modulate(block(torch.cat([h, skips.pop()], dim=1)), films[levels + 1 + j])
        return u + self.head(h)
