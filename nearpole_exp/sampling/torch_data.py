"""``torch.utils.data`` adapters: any of our batch samplers drives a ``DataLoader``.

Drop importance, active-pool, hybrid or uniform batches (with a curriculum prior) into an
existing training loop::

    from torch.utils.data import DataLoader
    from nearpole_exp.sampling.importance import ImportanceSampler
    from nearpole_exp.sampling.torch_data import DrawBatchSampler, WithWeights

    batches = DrawBatchSampler(ImportanceSampler(), len(ds), batch_size=128, steps=1000,
                               q_fn=lambda: model.q_values(x_all).abs(), refresh_every=50)
    for x, y, w in DataLoader(WithWeights(ds), batch_sampler=batches, num_workers=2):
        loss = (w * per_sample_loss(model(x), y)).sum() / w.sum()

:class:`DrawBatchSampler` yields one batch of ``(index, weight)`` pairs per step and
:class:`WithWeights` turns each pair into the dataset item plus its correction weight, so the
weights travel with their batch through worker processes and prefetching (a side channel such
as "the last batch's weights" would be wrong as soon as the loader prefetches). With
``weights=False`` it yields plain indices for any dataset. :class:`DrawSampler` yields single
indices for ``DataLoader(ds, sampler=..., batch_size=B)`` (no weights reach the loop that way).

|Q| (what importance samplers draw by) is ``q`` when fixed, or ``q_fn()`` called before the first
batch and then every ``refresh_every`` batches (e.g. the model's Q on the dataset's inputs). The
batch indices are drawn in the main process (a ``DataLoader`` always asks its batch sampler
there), so ``q_fn`` may use the model; with prefetching the loader draws up to
``num_workers × prefetch_factor`` batches ahead, so a refresh lands that many steps early.
Each drawn batch is counted in ``draw_counts`` (a :class:`~nearpole_exp.pool.DrawCounts`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset, Sampler

from nearpole_exp.pool import DrawCounts
from nearpole_exp.sampling.base import BatchSampler, Selection
from nearpole_exp.sampling.curriculum import Curriculum


class _Draws:
    """The shared drawing loop: |Q| on its cadence, the curriculum prior, one selection per step."""

    def __init__(self, sampler: BatchSampler, n: int, *, q: Tensor | None,
                 q_fn: Callable[[], Tensor] | None, refresh_every: int,
                 curriculum: Curriculum | None, curriculum_values: Tensor | None) -> None:
        if n <= 0:
            raise ValueError("the dataset is empty: nothing to draw from")
        if sampler.capabilities.needs_q and q is None and q_fn is None:
            raise ValueError(f"{type(sampler).__name__} draws by |Q|: give q (per item) or q_fn")
        if refresh_every < 0:
            raise ValueError(f"refresh_every must be >= 0 (0: never), got {refresh_every}")
        self.sampler, self.n = sampler, n
        self.q, self.q_fn, self.refresh_every = q, q_fn, refresh_every
        self.curriculum, self.curriculum_values = curriculum, curriculum_values
        self.counts = DrawCounts()
        self._q: Tensor | None = None

    def q_at(self, step: int) -> Tensor | None:
        """|Q| per item for batch ``step``: the fixed ``q``, or ``q_fn()`` on its cadence."""
        if self.q_fn is None:
            return None if self.q is None else self.q.detach().reshape(-1).abs()
        if self._q is None or (self.refresh_every and step % self.refresh_every == 0):
            with torch.no_grad():
                self._q = self.q_fn().detach().reshape(-1).abs()
        return self._q

    def prior(self, q: Tensor | None) -> Tensor | None:
        if self.curriculum is None:
            return None
        values = q if self.curriculum.variable == "q_abs" else self.curriculum_values
        if values is None:
            raise ValueError(f"the curriculum bands {self.curriculum.variable}: give "
                             "curriculum_values (e.g. each item's distance to the pole)")
        return self.curriculum.prior(values)

    def select(self, step: int, batch_size: int) -> Selection:
        q = self.q_at(step)
        if q is not None and q.numel() != self.n:
            raise ValueError(f"|Q| has {q.numel()} values for a dataset of {self.n}")
        sel = self.sampler.select(self.n, batch_size,
                                  values=q if self.sampler.capabilities.needs_q else None,
                                  prior=self.prior(q))
        self.counts.add(sel.idx, self.n)
        return sel


class DrawBatchSampler(Sampler[list[Any]]):
    """``steps`` batches of ``batch_size`` drawn by ``sampler``: lists of ``(index, weight)``
    pairs (for :class:`WithWeights`), or of plain indices with ``weights=False``."""

    def __init__(self, sampler: BatchSampler, n: int, batch_size: int, steps: int, *,
                 q: Tensor | None = None, q_fn: Callable[[], Tensor] | None = None,
                 refresh_every: int = 0, curriculum: Curriculum | None = None,
                 curriculum_values: Tensor | None = None, weights: bool = True) -> None:
        if batch_size < 1 or steps < 0:
            raise ValueError(f"batch_size must be >= 1 and steps >= 0, got {batch_size}, {steps}")
        self.draws = _Draws(sampler, n, q=q, q_fn=q_fn, refresh_every=refresh_every,
                            curriculum=curriculum, curriculum_values=curriculum_values)
        self.batch_size, self.steps, self.weights = batch_size, steps, weights

    @property
    def draw_counts(self) -> DrawCounts:
        """How often each item has been drawn so far."""
        return self.draws.counts

    def __len__(self) -> int:
        return self.steps

    def __iter__(self) -> Iterator[list[Any]]:
        for step in range(self.steps):
            sel = self.draws.select(step, self.batch_size)
            idx = sel.idx.cpu().tolist()
            if self.weights:
                yield list(zip(idx, sel.weights.cpu().tolist(), strict=True))
            else:
                yield idx


class DrawSampler(Sampler[int]):
    """``num_samples`` single indices drawn ``chunk`` at a time by ``sampler``, for
    ``DataLoader(ds, sampler=..., batch_size=B)`` (use :class:`DrawBatchSampler` for weights)."""

    def __init__(self, sampler: BatchSampler, n: int, num_samples: int, *, chunk: int = 1024,
                 q: Tensor | None = None, q_fn: Callable[[], Tensor] | None = None,
                 refresh_every: int = 0, curriculum: Curriculum | None = None,
                 curriculum_values: Tensor | None = None) -> None:
        if num_samples < 0 or chunk < 1:
            raise ValueError(f"num_samples must be >= 0 and chunk >= 1, got {num_samples}, {chunk}")
        self.draws = _Draws(sampler, n, q=q, q_fn=q_fn, refresh_every=refresh_every,
                            curriculum=curriculum, curriculum_values=curriculum_values)
        self.num_samples, self.chunk = num_samples, chunk

    @property
    def draw_counts(self) -> DrawCounts:
        """How often each item has been drawn so far."""
        return self.draws.counts

    def __len__(self) -> int:
        return self.num_samples

    def __iter__(self) -> Iterator[int]:
        left, step = self.num_samples, 0
        while left > 0:
            k = min(self.chunk, left)
            yield from self.draws.select(step, k).idx.cpu().tolist()
            left, step = left - k, step + 1


class WithWeights(Dataset):
    """``dataset[i]`` plus the correction weight: item ``(i, w)`` → ``(*dataset[i], w)`` (a
    tuple item is extended, any other item becomes ``(item, w)``)."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, key: tuple[int, float]) -> tuple[Any, ...]:
        index, weight = key
        item = self.dataset[index]
        w = torch.tensor(weight, dtype=torch.float32)
        return (*item, w) if isinstance(item, tuple) else (item, w)
