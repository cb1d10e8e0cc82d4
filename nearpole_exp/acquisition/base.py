"""The ask/tell breeder protocol: which points (simulation parameters) get labelled next."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor


@dataclass(frozen=True)
class BreederCapabilities:
    """What a breeder declares (its ``capabilities``).

    ``rewrites_unsubmitted``: :meth:`Breeder.next_generation` may write a generation over asked
    ids nobody submitted yet (``after``); ``trains_in_background``: it keeps a training thread
    busy beside the caller; ``design_ratio``: :meth:`Breeder.design_weights` can weight its points
    back to its design.
    """

    rewrites_unsubmitted: bool = False
    trains_in_background: bool = False
    design_ratio: bool = False


@dataclass
class Generation:
    """Points ``[n, d]`` (box coordinates) and the simulation ids they were written at."""

    points: Tensor
    ids: Tensor

    def __len__(self) -> int:
        return int(self.ids.numel())


class Breeder(ABC):
    """Proposes points in a box and learns from per-sample difficulty signals.

    Simulation ids are assigned in ask order: the first point ever returned has id 0, the next
    id 1, and so on; ``tell`` refers to points by those ids. :meth:`next_generation` returns the
    ids with the points, so no caller derives them.
    """

    # the config groups besides ``ogas/breeder`` the breeder is built with (``ogas/<part>``), and
    # the dataclass that is each part's schema
    config_parts: ClassVar[dict[str, type]] = {}
    capabilities = BreederCapabilities()

    def __init__(self, bounds: Tensor) -> None:
        bounds = torch.as_tensor(bounds, dtype=torch.float32)
        if bounds.ndim != 2 or bounds.shape[1] != 2:
            raise ValueError(f"bounds must have shape [d, 2], got {tuple(bounds.shape)}")
        if not bool((bounds[:, 1] > bounds[:, 0]).all()):
            raise ValueError("bounds: every upper bound must exceed its lower bound")
        self.bounds = bounds
        self.n_asked = 0

    @property
    def dim(self) -> int:
        return int(self.bounds.shape[0])

    @abstractmethod
    def ask(self, n: int) -> Tensor:
        """The next ``n`` points, shape ``[n, d]``, inside the box (at the next free ids)."""

    def next_generation(self, n: int, after: int | None = None) -> Generation:
        """A generation of ``n`` points and its ids: the next free ids, or (breeders that declare
        ``rewrites_unsubmitted``) ids ``after + 1 …``, rewriting asked ids nobody submitted."""
        if after is not None and after != self.n_asked - 1:
            raise NotImplementedError(f"{type(self).__name__} does not rewrite unsubmitted ids")
        first = self.n_asked
        points = self.ask(n)
        return Generation(points, torch.arange(first, first + len(points)))

    def tell(self, sim_ids: Tensor, values: Tensor) -> None:
        """Per-sample difficulty ``values`` (e.g. nRMSE) of simulations ``sim_ids``."""

    def tell_many(self, sim_ids: Tensor, values: Tensor, calls: Tensor) -> None:
        """Several ``tell`` calls at once: ``calls[i]`` (non-decreasing) numbers the call value
        ``i`` belongs to. The same as one ``tell`` per call, which is what this default does;
        breeders override it with one vectorised update (the runner tells once per round)."""
        calls = torch.as_tensor(calls)
        if calls.numel() == 0:
            return
        _, starts = torch.unique_consecutive(calls, return_counts=True)
        for ids, vals in zip(torch.split(torch.as_tensor(sim_ids), starts.tolist()),
                             torch.split(torch.as_tensor(values), starts.tolist()), strict=True):
            self.tell(ids, vals)

    def bred_mask(self, sim_ids: Tensor) -> Tensor | None:
        """Which of the asked sims ``sim_ids`` were bred (not design draws); None when the
        breeder does not breed."""
        return None

    def design_weights(self, sim_ids: Tensor) -> Tensor | None:
        """Density ratios p_design/p_asked at asked sims (mean 1 over ``sim_ids``), which weight a
        pool of breeder-biased sims back towards the design (breeders that declare
        ``design_ratio``); None before there is a ratio or when every point came from the design."""
        return None

    def metrics(self) -> dict[str, float]:
        """Scalars describing the breeder (``breeder/*`` names)."""
        return {}

    def plots(self, outdir: str) -> list[str]:
        """Write the breeder's PNGs into ``outdir``; returns their paths (none by default)."""
        return []

    def start(self) -> None:
        """Start background work, if any."""

    def close(self) -> None:
        """Stop background work and release resources; safe to call twice."""

    def state_dict(self) -> dict[str, Any]:
        return {"n_asked": self.n_asked}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.n_asked = int(state["n_asked"])
