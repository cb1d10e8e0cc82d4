"""AdamW that does not import ``torch._dynamo``.

Every ``torch.optim`` optimizer imports ``torch._dynamo`` on the first call of its base-class
methods decorated with ``torch._disable_dynamo`` (``zero_grad``, ``state_dict`` …: graph breaks
that only matter under ``torch.compile``), which costs about 1 s at start-up on a 2-core machine,
as much as ``import torch`` itself (benchmarks/startup.md). This class binds the undecorated
functions of those methods for itself alone: nothing of torch's is changed, other optimizers
(and a ``torch.compile`` later in the process) see torch's decorated methods. The step is
``torch.optim.AdamW``'s algorithm, op for op: its single-tensor path (the one torch takes on the
CPU) by default, bit for bit, or its multi-tensor path with ``foreach=True``; the ``state_dict``
has torch's layout, so checkpoints written with either load into the other.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor


def undecorated(name: str) -> Callable[..., Any]:
    """``torch.optim.Optimizer.<name>`` without its ``_disable_dynamo`` wrapper (if it has one)."""
    method = getattr(torch.optim.Optimizer, name)
    return getattr(method, "__wrapped__", method)


# the base-class methods torch wraps in ``_disable_dynamo`` (tests/test_gradient.py fails when this
# list no longer matches torch's)
DYNAMO_WRAPPED = ("add_param_group", "load_state_dict", "state_dict", "zero_grad")


class AdamW(torch.optim.Optimizer):
    """Adam with decoupled weight decay (Loshchilov & Hutter), torch's defaults."""

    add_param_group = undecorated("add_param_group")
    load_state_dict = undecorated("load_state_dict")
    state_dict = undecorated("state_dict")
    zero_grad = undecorated("zero_grad")

    def __init__(self, params: Iterable[Tensor] | Iterable[dict[str, Any]], lr: float = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 1e-2, foreach: bool = False) -> None:
        if not lr >= 0.0 or not eps >= 0.0 or not weight_decay >= 0.0:
            raise ValueError(f"invalid lr {lr}, eps {eps} or weight_decay {weight_decay}")
        if not (0.0 <= betas[0] < 1.0 and 0.0 <= betas[1] < 1.0):
            raise ValueError(f"invalid betas {betas}")
        super().__init__(params, {"lr": lr, "betas": betas, "eps": eps,
                                  "weight_decay": weight_decay, "amsgrad": False,
                                  "maximize": False, "foreach": foreach, "capturable": False,
                                  "differentiable": False, "fused": None,
                                  "decoupled_weight_decay": True})

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            for param in params:
                state = self.state[param]
                if not state:
                    state["step"] = torch.tensor(0.0, dtype=torch.float32)
                    state["exp_avg"] = torch.zeros_like(param, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(param, memory_format=torch.preserve_format)
            if group["foreach"] and params:
                self._multi_tensor_step(group, params)
            else:
                for param in params:
                    self._single_tensor_step(group, param)
        return loss

    def _single_tensor_step(self, group: dict[str, Any], param: Tensor) -> None:
        beta1, beta2 = group["betas"]
        lr, eps, decay = group["lr"], group["eps"], group["weight_decay"]
        grad, state = param.grad, self.state[param]
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

    def _multi_tensor_step(self, group: dict[str, Any], params: list[Tensor]) -> None:
        """The same update with one kernel per operation over all tensors (a small network's
        per-tensor launch overhead dominates its single-tensor step)."""
        beta1, beta2 = group["betas"]
        lr, eps, decay = group["lr"], group["eps"], group["weight_decay"]
        grads = [p.grad for p in params]
        states = [self.state[p] for p in params]
        steps = [s["step"] for s in states]
        exp_avgs = [s["exp_avg"] for s in states]
        exp_avg_sqs = [s["exp_avg_sq"] for s in states]
        torch._foreach_add_(steps, 1)
        if decay != 0:
            torch._foreach_mul_(params, 1 - lr * decay)
        torch._foreach_lerp_(exp_avgs, grads, 1 - beta1)
        torch._foreach_mul_(exp_avg_sqs, beta2)
        torch._foreach_addcmul_(exp_avg_sqs, grads, grads, 1 - beta2)
        counts = [s.item() for s in steps]
        step_sizes = [-(lr / (1 - beta1**n)) for n in counts]
        denom = torch._foreach_sqrt(exp_avg_sqs)
        torch._foreach_div_(denom, [(1 - beta2**n) ** 0.5 for n in counts])
        torch._foreach_add_(denom, eps)
        torch._foreach_addcdiv_(params, exp_avgs, denom, step_sizes)
