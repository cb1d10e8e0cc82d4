"""The ask/tell breeder protocol: which points (simulation parameters) get labelled next."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

import torch
from torch import Tensor


class Breeder(ABC):
    """Proposes points in a box and learns from per-sample difficulty signals.

    Simulation ids are assigned in ask order: the first point ever returned by ``ask`` has
    id 0, the next id 1, and so on; ``tell`` refers to points by those ids.
    """

    # the config groups besides ``ogas/breeder`` the breeder is built with (``ogas/<part>``), and
    # the dataclass that is each part's schema
    config_parts: ClassVar[dict[str, type]] = {}
    # whether :meth:`regenerate` may rewrite asked-but-unsubmitted ids (asynchronous feeds)
    rewrites_unsubmitted: ClassVar[bool] = False

    def __init__(self, bounds: Tensor) -> None:
        bounds = torch.as_tensor(bounds, dtype=torch.float32)
        if bounds.ndim != 2 or bounds.shape[1] != 2:
            raise ValueError(f"bounds must have shape [d, 2], got {tuple(bounds.shape)}")
        if not bool((bounds[:, 1] > bounds[:, 0]).all()):
            raise ValueError("bounds: every upper bound must exceed its lower bound")
        self.bounds = bounds
        self.n_asked = 0

    @property
    def trains_in_background(self) -> bool:
        """Whether the breeder keeps a training thread busy beside the caller."""
        return False

    @property
    def dim(self) -> int:
        return int(self.bounds.shape[0])

    @abstractmethod
    def ask(self, n: int) -> Tensor:
        """The next ``n`` points, shape ``[n, d]``, inside the box."""

    def regenerate(self, n: int, last_submitted: int) -> tuple[Tensor, int, int]:
        """A generation of ``n`` points written at ids ``last_submitted + 1 …``, rewriting asked
        ids nobody submitted yet; returns (points, first id, last id). Only for breeders that
        declare ``rewrites_unsubmitted``."""
        raise NotImplementedError(f"{type(self).__name__} does not rewrite unsubmitted ids")

    def tell(self, sim_ids: Tensor, values: Tensor) -> None:
        """Per-sample difficulty ``values`` (e.g. nRMSE) of simulations ``sim_ids``."""

    def bred_mask(self, sim_ids: Tensor) -> Tensor | None:
        """Which of the asked sims ``sim_ids`` were bred (not design draws); None when the
        breeder does not breed."""
        return None

    @property
    def has_design_ratio(self) -> bool:
        """Whether :meth:`design_weights` can weight this breeder's points back to its design."""
        return False

    def design_weights(self, sim_ids: Tensor) -> Tensor | None:
        """Density ratios p_design/p_asked at asked sims (mean 1 over ``sim_ids``), which weight a
        pool of breeder-biased sims back towards the design; None when there is no ratio (yet)
        or every point came from the design (ratio 1)."""
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
