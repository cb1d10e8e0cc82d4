"""Batch selection: which pool samples each gradient step trains on."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from nearpole_exp.metrics import effective_sample_size
from nearpole_exp.rng import child_generator, generator_state, resolve_device, restore_generator

if TYPE_CHECKING:
    from nearpole_exp.pool import DrawCounts, Pool
    from nearpole_exp.problems.base import Problem


@dataclass
class Selection:
    """Pool indices for one batch and their loss-correction weights.

    ``weights`` are ratios target-density / sampling-density (mean about 1), so a weighted
    mean of per-sample losses estimates the uniform-pool loss without bias; ``ess`` is the
    effective sample size (Σw)²/Σw² of those weights (computed when first read, so a draw
    does not wait for it).
    """

    idx: Tensor
    weights: Tensor
    ess_value: float | None = None

    @property
    def ess(self) -> float:
        if self.ess_value is None:
            self.ess_value = effective_sample_size(self.weights)
        return self.ess_value


@dataclass(frozen=True)
class SamplerCapabilities:
    """What a sampler declares (its ``capabilities``): whether :meth:`BatchSampler.select` draws
    by the pool's |Q| (or a distance from Q: ``needs_q``) or by the model's current per-sample
    loss (``needs_loss``), and whether it proposes points to label (:meth:`BatchSampler.propose`)."""

    needs_q: bool = False
    needs_loss: bool = False
    proposes: bool = False

    @property
    def needs_values(self) -> bool:
        """Whether ``select`` needs the values of :meth:`BatchSampler.draw_values`."""
        return self.needs_q or self.needs_loss


@dataclass
class PoolView:
    """What a sampler may draw by, each computed only when asked for: the pool's inputs, its |Q|
    (the problem's or the model's), Q as a differentiable function, the model's loss per sample."""

    inputs: Tensor
    q_abs: Callable[[], Tensor | None]
    q_fn: Callable[[Tensor], Tensor] | None = None
    losses: Callable[[], Tensor] | None = None


class BatchSampler(ABC):
    """Chooses training batches from the pool; may also propose new points to label."""

    capabilities = SamplerCapabilities()

    def __init__(self) -> None:
        self._generator: torch.Generator | None = None

    def generator(self, device: torch.device | str | None) -> torch.Generator:
        """The sampler's own generator on ``device``, created lazily from the global seed.

        Moving to another device starts a new stream there (seeded from the old one), so draws
        stay reproducible for a given seed and device sequence.
        """
        gen = self._generator
        if gen is not None and isinstance(device, torch.device) and gen.device == device:
            return gen  # the hot path: no device resolution
        device = resolve_device(device)
        if gen is None:
            self._generator = child_generator(device)
        elif resolve_device(gen.device) != device:
            seed = int(torch.randint(0, 2**62, (1,), generator=gen, device=gen.device).item())
            self._generator = torch.Generator(device=device).manual_seed(seed)
        return self._generator

    @abstractmethod
    def select(
        self,
        n_pool: int,
        batch_size: int,
        *,
        values: Any = None,
        prior: Tensor | None = None,
        device: torch.device | None = None,
    ) -> Selection:
        """Draw ``batch_size`` indices from a pool of ``n_pool`` samples.

        ``values`` is what the sampler draws by when it needs values: the per-sample values of
        :meth:`draw_values` (|Q|, a distance, a loss), or what :meth:`prepare` made of them; ``prior``
        is an optional non-negative per-sample multiplier (e.g. a curriculum band) on the
        sampling density.
        """

    def objective_weights(self, n_pool: int, values: Any = None,
                          prior: Tensor | None = None) -> Tensor | None:
        """Per-sample weights (up to a constant) of the objective this sampler's batches estimate:
        the expected weighted batch loss is Σ_i w_i·ℓ_i / Σ_i w_i. None: the plain pool mean.
        What a full-batch optimizer or the polish minimises."""
        return None if prior is None else prior.detach().double().clamp_min(0).nan_to_num(0.0)

    def draw_values(self, view: PoolView) -> Tensor | None:
        """The per-sample values :meth:`select` draws by, read from the pool ``view``: |Q| unless
        the sampler draws by another distance or by the loss."""
        return view.q_abs()

    def prepare(self, values: Tensor) -> Any:
        """What :meth:`select` should get as ``values`` for many draws from one set of values (a
        sampler may precompute its O(N) tables here, e.g. :meth:`ImportanceSampler.prepare`);
        ``values`` themselves by default."""
        return values

    def use_q_fn(self, q_fn: Callable[[Tensor], Tensor]) -> None:
        """Evaluate Q through ``q_fn`` (e.g. the model's) instead of the problem's, wherever the
        sampler computes Q itself (new proposals); a no-op for samplers that never do."""

    def propose(self, problem: Problem, pool: Pool, round_idx: int) -> Tensor | None:
        """New points to label before round ``round_idx`` (samplers that declare ``proposes``;
        None on rounds without proposals)."""
        raise NotImplementedError(f"{type(self).__name__} proposes no points")

    def metrics(self, draws: DrawCounts) -> dict[str, float]:
        """Scalars describing the sampler's recent behaviour (``sampler/*`` names), given how
        often each pool row has been drawn."""
        return {}

    def state_dict(self) -> dict[str, Any]:
        return generator_state(self._generator)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._generator = restore_generator(state)


class UniformSampler(BatchSampler):
    """Uniform draws with replacement over the pool; a prior (a curriculum) reshapes the draw.

    Under a prior the weights stay 1: the curriculum's focus is the point, so its draws are
    not corrected back to the uniform pool.
    """

    def select(
        self,
        n_pool: int,
        batch_size: int,
        *,
        values: Any = None,
        prior: Tensor | None = None,
        device: torch.device | None = None,
    ) -> Selection:
        if n_pool <= 0:
            raise ValueError("cannot select a batch from an empty pool")
        device = device or torch.device("cpu")
        gen = self.generator(device)
        if prior is None:
            idx = torch.randint(0, n_pool, (batch_size,), generator=gen, device=device)
            weights = torch.ones(batch_size, device=device)
            return Selection(idx, weights, float(batch_size))
        p = prior.to(device=device, dtype=torch.float64).nan_to_num(0.0, 0.0, 0.0).clamp_min(0)
        if p.sum() <= 0:
            p = torch.ones(n_pool, device=device, dtype=torch.float64)
        cdf = torch.cumsum(p, 0)
        draws = torch.rand(batch_size, generator=gen, device=device, dtype=torch.float64) * cdf[-1]
        idx = torch.searchsorted(cdf, draws, right=True).clamp_max_(n_pool - 1)
        weights = torch.ones(batch_size, device=device)
        return Selection(idx, weights, float(batch_size))
