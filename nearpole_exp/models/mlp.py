"""A plain multilayer perceptron on box-normalised inputs."""

from __future__ import annotations

from torch import Tensor, nn

from nearpole_exp.models.normalize import BoxNormalizer

ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU, "gelu": nn.GELU, "silu": nn.SiLU}


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

    def __init__(self, in_features: int, out_features: int, hidden: int = 64, depth: int = 3,
                 activation: str = "tanh", input_bounds: list[list[float]] | None = None) -> None:
        super().__init__()
        self.normalize = BoxNormalizer(input_bounds, in_features)
        self.net = mlp_layers(in_features, out_features, hidden, depth, activation)

    def forward(self, x: Tensor, delta: float | None = None) -> Tensor:
        return self.net(self.normalize(x))
