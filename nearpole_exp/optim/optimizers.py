"""Optimizers (``optimizer`` group): each option builds the torch optimizer of the model's
parameters. A stochastic optimizer (AdamW, SGD) steps once per batch at ``trainer.lr`` times the
schedule; full-batch L-BFGS minimises one objective per round (the round's batch, or the whole
pool with ``trainer.batch_size=0``), one iteration per step, its step length from a strong-Wolfe
line search (``trainer.lr`` and the schedule do not apply to it)."""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor

from nearpole_exp.errors import check
from nearpole_exp.optim.adamw import AdamW


class OptimizerOption(ABC):
    """An ``optimizer`` option: how to build the optimizer; ``full_batch`` optimizers minimise
    one fixed objective per round instead of stepping on a new batch every step."""

    full_batch: ClassVar[bool] = False
    config: Any

    @abstractmethod
    def build(self, params: Iterable[Tensor], lr: float) -> torch.optim.Optimizer:
        """The optimizer of ``params`` at base rate ``lr``."""


@dataclass
class AdamWConfig:
    """Adam with decoupled weight decay (torch's defaults but no decay)."""

    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    weight_decay: float = 0.0

    def __post_init__(self) -> None:
        for name in ("beta1", "beta2"):
            check(0.0 <= getattr(self, name) < 1.0, name, f"must lie in [0, 1), got {getattr(self, name)}")
        check(self.eps > 0, "eps", f"must be > 0, got {self.eps}")
        check(0.0 <= self.weight_decay < float("inf"), "weight_decay",
              f"must be a finite number >= 0, got {self.weight_decay}")


class AdamWOption(OptimizerOption):
    """AdamW (``nearpole_exp.optim.adamw``: torch's algorithm without the torch._dynamo import)."""

    config_class = AdamWConfig

    def __init__(self, config: AdamWConfig | None = None, **overrides: Any) -> None:
        self.config = dataclasses.replace(config or AdamWConfig(), **overrides)

    def build(self, params: Iterable[Tensor], lr: float) -> torch.optim.Optimizer:
        c = self.config
        return AdamW(params, lr=lr, betas=(c.beta1, c.beta2), eps=c.eps, weight_decay=c.weight_decay)


@dataclass
class SGDConfig:
    """Stochastic gradient descent with (Nesterov) momentum."""

    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 0.0

    def __post_init__(self) -> None:
        check(0.0 <= self.momentum < 1.0, "momentum", f"must lie in [0, 1), got {self.momentum}")
        check(not self.nesterov or self.momentum > 0, "nesterov", "needs momentum > 0")
        check(0.0 <= self.weight_decay < float("inf"), "weight_decay",
              f"must be a finite number >= 0, got {self.weight_decay}")


class SGDOption(OptimizerOption):
    """torch's SGD."""

    config_class = SGDConfig

    def __init__(self, config: SGDConfig | None = None, **overrides: Any) -> None:
        self.config = dataclasses.replace(config or SGDConfig(), **overrides)

    def build(self, params: Iterable[Tensor], lr: float) -> torch.optim.Optimizer:
        c = self.config
        return torch.optim.SGD(params, lr=lr, momentum=c.momentum, nesterov=c.nesterov,
                               weight_decay=c.weight_decay)


@dataclass
class LBFGSConfig:
    """Limited-memory BFGS: ``history_size`` curvature pairs, a strong-Wolfe line search of at
    most ``max_evaluations`` objective evaluations per iteration."""

    history_size: int = 50
    max_evaluations: int = 25

    def __post_init__(self) -> None:
        check(self.history_size >= 1, "history_size", f"must be >= 1, got {self.history_size}")
        check(self.max_evaluations >= 2, "max_evaluations",
              f"must be >= 2 (a line search needs them), got {self.max_evaluations}")


class LBFGSOption(OptimizerOption):
    """Full-batch L-BFGS, one iteration per step (the history restarts with each round's
    objective)."""

    config_class = LBFGSConfig
    full_batch = True

    def __init__(self, config: LBFGSConfig | None = None, **overrides: Any) -> None:
        self.config = dataclasses.replace(config or LBFGSConfig(), **overrides)

    def build(self, params: Iterable[Tensor], lr: float = 1.0) -> torch.optim.Optimizer:
        return lbfgs(params, self.config, iterations=1)


def lbfgs(params: Iterable[Tensor], config: LBFGSConfig, iterations: int) -> torch.optim.LBFGS:
    """torch's L-BFGS with a strong-Wolfe line search running ``iterations`` per ``step`` call;
    the tolerances are 0, so it stops only when the gradient vanishes or nothing changes."""
    return torch.optim.LBFGS(params, lr=1.0, max_iter=iterations,
                             max_eval=iterations * config.max_evaluations,
                             history_size=config.history_size, line_search_fn="strong_wolfe",
                             tolerance_grad=0.0, tolerance_change=0.0)
