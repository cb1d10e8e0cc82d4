"""A plain multilayer perceptron on box-normalised inputs."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn

from nearpole_exp.errors import check
from nearpole_exp.models.normalize import BoxNormalizer

ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU, "gelu": nn.GELU, "silu": nn.SiLU}


@dataclass
class MLPConfig:
    """Width and number of the hidden layers of :class:`MLP`, and their activation."""

    hidden: int = 64
    depth: int = 3
    activation: str = "tanh"

    def __post_init__(self) -> None:
        check(self.hidden >= 1, "hidden", f"must be >= 1, got {self.hidden}")
        check(self.depth >= 0, "depth", f"must be >= 0, got {self.depth}")
        check(self.activation in ACTIVATIONS, "activation",
              f"must be one of {sorted(ACTIVATIONS)}, got {self.activation!r}")


def mlp_layers(in_features: int, out_features: int, hidden: int, depth: int,
               activation: str) -> nn.Sequential:
    """``depth`` hidden layers of width ``hidden`` and a linear head."""
    if activation not in ACTIVATIONS:
        raise ValueError(f"model.activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
    layers: list[nn.Module] = []
    width = in_features
    for _ in range(depth):
        layers += [nn.Linear(width, hidden), ACTIVATIONS[activation]()]
        width = hidden
    layers.append(nn.Linear(width, out_features))
    return nn.Sequential(*layers)


class MLP(nn.Module):
    """y = MLP(normalised x)."""

    config_class = MLPConfig  # the schema of its config group option (config/discovery.py)

    def __init__(self, in_features: int, out_features: int, hidden: int = MLPConfig.hidden,
                 depth: int = MLPConfig.depth, activation: str = MLPConfig.activation,
                 input_bounds: list[list[float]] | None = None) -> None:
        super().__init__()
        self.normalize = BoxNormalizer(input_bounds, in_features)
        self.net = mlp_layers(in_features, out_features, hidden, depth, activation)

    def forward(self, x: Tensor, delta: float | None = None) -> Tensor:
        return self.net(self.normalize(x))
