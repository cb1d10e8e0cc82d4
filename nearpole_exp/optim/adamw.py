"""AdamW that does not import ``torch._dynamo``.

Every ``torch.optim`` step imports ``torch._dynamo`` (for graph breaks that only matter under
``torch.compile``), which costs about 1 s at start-up on a 2-core machine, as much as
``import torch`` itself (benchmarks/startup.md). This is the same algorithm as
``torch.optim.AdamW``'s single-tensor path (the one torch takes on the CPU), op for op, so
results match it bit for bit there; its ``state_dict`` has torch's layout, so checkpoints
written with either load into the other.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor

# The base class's decorated methods (``__init__``, ``state_dict``, ``zero_grad`` …) import
# torch._dynamo on first use to disable it for themselves; without torch.compile in the process
# that is a no-op, so the undecorated function is what runs either way.
_WRAPPER = torch._disable_dynamo(lambda: None).__code__


def _skip_dynamo_import(cls: type) -> None:
    """Mark ``cls``'s ``_disable_dynamo`` methods as already disabled (unless dynamo is loaded)."""
    for name in dir(cls):
        attr = getattr(cls, name, None)
        fn = getattr(attr, "__wrapped__", None)
        if fn is not None and getattr(attr, "__code__", None) is _WRAPPER:
            fn.__dynamo_disable = fn


class AdamW(torch.optim.Optimizer):
    """Adam with decoupled weight decay (Loshchilov & Hutter), torch's defaults."""

    def __init__(self, params: Iterable[Tensor] | Iterable[dict[str, Any]], lr: float = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 1e-2) -> None:
        if not lr >= 0.0 or not eps >= 0.0 or not weight_decay >= 0.0:
            raise ValueError(f"invalid lr {lr}, eps {eps} or weight_decay {weight_decay}")
        if not (0.0 <= betas[0] < 1.0 and 0.0 <= betas[1] < 1.0):
            raise ValueError(f"invalid betas {betas}")
        import sys

        if "torch._dynamo" not in sys.modules:
            _skip_dynamo_import(torch.optim.Optimizer)
        super().__init__(params, {"lr": lr, "betas": betas, "eps": eps,
                                  "weight_decay": weight_decay, "amsgrad": False,
                                  "maximize": False, "foreach": None, "capturable": False,
                                  "differentiable": False, "fused": None,
                                  "decoupled_weight_decay": True})

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            lr, eps, decay = group["lr"], group["eps"], group["weight_decay"]
            for param in group["params"]:
                if param.grad is None:
                    continue
                grad = param.grad
                state = self.state[param]
                if not state:
                    state["step"] = torch.tensor(0.0, dtype=torch.float32)
                    state["exp_avg"] = torch.zeros_like(param, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(param, memory_format=torch.preserve_format)
                step_t, exp_avg, exp_avg_sq = state["step"], state["exp_avg"], state["exp_avg_sq"]
                step_t += 1
                if decay != 0:
                    param.mul_(1 - lr * decay)
                exp_avg.lerp_(grad, 1 - beta1)
                exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
                step = step_t.item()
                bias_correction1 = 1 - beta1**step
                bias_correction2 = 1 - beta2**step
                step_size = lr / bias_correction1
                denom = (exp_avg_sq.sqrt() / bias_correction2**0.5).add_(eps)
                param.addcdiv_(exp_avg, denom, value=-step_size)
        return loss
