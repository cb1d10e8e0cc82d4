"""FNO2D, a Fourier neural operator (Li et al. 2021) for the 2-D simulators' next state: lift to
``width`` channels; ``depth`` blocks act(K(h) + W h), K a spectral convolution that mixes
channels on the lowest ``modes`` Fourier modes per axis (both signs along the full axis) and W a
1×1 convolution, each block FiLM-conditioned on λ; project back (surrogate2d.py).
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
class FNO2DConfig:
    """Channels, Fourier modes per axis, blocks, activation and FiLM width of :class:`FNO2D`."""

    width: int = 24
    modes: int = 8
    depth: int = 4
    activation: str = "gelu"
    film_hidden: int = 64

    def __post_init__(self) -> None:
        check(self.width >= 1, "width", f"must be positive, got {self.width}")
        check(self.modes >= 1, "modes", f"must be positive, got {self.modes}")
        check(self.depth >= 1, "depth", f"must be positive, got {self.depth}")
        check(self.activation in ACTIVATIONS, "activation",
              f"must be one of {sorted(ACTIVATIONS)}, got {self.activation!r}")
        check(self.film_hidden >= 1, "film_hidden", f"must be positive, got {self.film_hidden}")


class SpectralConv2d(nn.Module):
    """Channel mixing on the lowest ``modes`` modes of each axis (rfft2 layout: both signs along
    the first axis, non-negative along the second); higher modes are dropped."""

    def __init__(self, width: int, modes: int) -> None:
        super().__init__()
        self.modes = modes
        scale = 1.0 / (width * width)
        # real and imaginary parts in a trailing axis: the runner's Module.to(dtype) casts a
        # complex parameter to a real one, dropping its imaginary part
        self.weight = nn.Parameter(scale * torch.randn(2, width, width, modes, modes, 2))

    def forward(self, h: Tensor) -> Tensor:
        size = h.shape[-1]
        m = self.modes
        spec = torch.fft.rfft2(h)
        out = torch.zeros_like(spec)
        w = torch.view_as_complex(self.weight)[..., :m, :m]
        out[:, :, :m, :m] = torch.einsum("bixy,ioxy->boxy", spec[:, :, :m, :m], w[0])
        out[:, :, -m:, :m] = torch.einsum("bixy,ioxy->boxy", spec[:, :, -m:, :m], w[1])
        return torch.fft.irfft2(out, s=(size, size))


class FNO2D(Surrogate2D):
    """[n, C·N·N + d] → [n, C, N, N]: u_t + FNO(u_t; λ)."""

    config_class = FNO2DConfig  # the schema of its config group option (config.py)

    def __init__(self, channels: int, grid: int, n_params: int, config: FNO2DConfig | None = None,
                 **overrides: object) -> None:
        super().__init__(channels, grid, n_params)
        self.config = dataclasses.replace(config or FNO2DConfig(),
                                          **known_fields(FNO2DConfig, overrides, "FNO2D"))
        cfg = self.config
        check(cfg.modes <= grid // 2, "modes",
              f"{cfg.modes} modes per axis exceed the {grid}-point grid's {grid // 2}")
        self.lift = nn.Conv2d(channels, cfg.width, 1)
        self.spectral = nn.ModuleList(SpectralConv2d(cfg.width, cfg.modes) for _ in range(cfg.depth))
        self.local = nn.ModuleList(nn.Conv2d(cfg.width, cfg.width, 1) for _ in range(cfg.depth))
        self.act = ACTIVATIONS[cfg.activation]()
        self.film = FiLM(n_params, [cfg.width] * cfg.depth, cfg.film_hidden)
        self.head = nn.Sequential(nn.Conv2d(cfg.width, 2 * cfg.width, 1), ACTIVATIONS[cfg.activation](),
                                  nn.Conv2d(2 * cfg.width, channels, 1))
        nn.init.zeros_(self.head[-1].weight)
        nn.init.zeros_(self.head[-1].bias)

    def forward(self, x: Tensor) -> Tensor:
        u, lam = self.split(x)
        h = self.lift(u)
        for spectral, local, film in zip(self.spectral, self.local, self.film(lam), strict=True):
            h = self.act(modulate(spectral(h) + local(h), film))
        return u + self.head(h)
