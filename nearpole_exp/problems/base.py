"""What a problem is: a box of acquirable points, a labelling oracle and an evaluation.

Two kinds share this protocol. A *pole* problem labels input points x with a target that
has poles where a denominator Q(x) vanishes. A *simulator* problem labels simulation
parameters λ by running a batched solver; each simulation yields many training samples
(one per time step), all carrying the simulation's id as their ``source``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor

Predictor = Callable[[Tensor], Tensor]


@dataclass(frozen=True)
class ModelQ:
    """A fitted model's denominator as a problem may read it: ``fn(x)`` gives Q ``[n]`` on the CPU
    for inputs in ``dtype`` (the model's precision, in which roots are refined)."""

    fn: Callable[[Tensor], Tensor]
    dtype: torch.dtype = torch.float32

    def __call__(self, x: Tensor) -> Tensor:
        return self.fn(x)


@dataclass
class Samples:
    """Labelled training samples made from a batch of acquired points.

    ``source[i]`` is the row of the acquired batch that produced sample ``i``; the pool
    turns it into a global id (the simulation id). ``q`` and ``distance`` are known only
    for problems that know their denominator or their poles.
    """

    inputs: Tensor
    targets: Tensor
    source: Tensor
    q: Tensor | None = None
    distance: Tensor | None = None

    def __len__(self) -> int:
        return int(self.inputs.shape[0])


@dataclass(frozen=True)
class IdealPlacement:
    """Where a problem's points should ideally go, on the unit box (analytic landscapes).

    ``density`` evaluates the ideal tilted density p* at points ``[n, d]``; ``lows``/``highs``
    ``[R, m]`` bound the hard regions in m placement coordinates: the first m axes (p* does not
    depend on the rest), or ``coordinates(unit) → [n, m]`` where the hard set is not a box of
    axes (then ``reference`` ``[N, m]`` holds the coordinates of integration points and
    ``reference_weights`` ``[N]`` their p* weights, from which cell masses are histogrammed);
    ``region_masses`` ``[R]`` is p*'s mass in each region.
    """

    density: Callable[[Tensor], Tensor]
    lows: Tensor
    highs: Tensor
    region_masses: Tensor
    dim: int
    coordinates: Callable[[Tensor], Tensor] | None = None
    reference: Tensor | None = None
    reference_weights: Tensor | None = None

    @property
    def axes(self) -> int:
        return int(self.lows.shape[1])

    def coords(self, unit: Tensor) -> Tensor:
        """Placement coordinates ``[n, m]`` of unit-box points ``[n, d]``."""
        if self.coordinates is None:
            return unit[:, : self.axes]
        return self.coordinates(unit)


@dataclass(frozen=True)
class ProblemCapabilities:
    """What a problem declares (its ``capabilities``), never probed: ``knows_poles``: Q and the
    pole distance of its inputs are known (``q``, ``distance``), so samplers may use them;
    ``simulates``: it labels by running simulations, so asynchronous executors apply;
    ``labels_have_poles``: its labels themselves have poles (a rational model can then fit the
    linearised residual)."""

    knows_poles: bool = False
    simulates: bool = False
    labels_have_poles: bool = False


class Problem(ABC):
    """A learning problem: acquisition box, oracle, model dimensions and evaluation."""

    kind: ClassVar[str]
    name: str = "problem"
    capabilities = ProblemCapabilities()

    @property
    @abstractmethod
    def bounds(self) -> Tensor:
        """Box of acquirable points, shape ``[d, 2]`` holding (lower, upper) per dimension."""

    @property
    def param_dim(self) -> int:
        """Dimension of an acquired point (x for pole problems, λ for simulators)."""
        return int(self.bounds.shape[0])

    @abstractmethod
    def label(self, points: Tensor) -> Samples:
        """Label a batch of acquired points ``[n, d]`` (oracle call or simulation)."""

    @abstractmethod
    def model_dims(self) -> dict[str, int]:
        """Keyword arguments a model needs to match this problem's inputs and outputs."""

    @abstractmethod
    def evaluate(self, predict: Predictor, model_q: ModelQ | None = None) -> dict[str, float]:
        """Metrics (docs/architecture.md names, e.g. ``eval/mse``) of ``predict`` on held-out points;
        ``model_q`` is the model's denominator where it has one (pole localisation)."""

    def initial_design(self, n: int, generator: torch.Generator | None = None) -> Tensor | None:
        """Points for round 0 when the problem prescribes them (a published recipe), else None:
        the breeder then draws round 0 like every other round."""
        return None

    def q(self, inputs: Tensor) -> Tensor | None:
        """Known denominator Q at model inputs, or None when the problem does not know it."""
        return None

    def distance(self, inputs: Tensor) -> Tensor | None:
        """Distance of model inputs to the nearest pole, or None when unknown."""
        return None

    def ideal_placement(self) -> IdealPlacement | None:
        """The ideal sampling density and hard regions, where known (None by default)."""
        return None

    def summary_info(self) -> dict[str, Any]:
        """Facts about how the problem was set up that a run's summary should carry (e.g. a
        simulator knowingly run under-resolved); none by default."""
        return {}

    def fit_verdict(self, metrics: dict[str, float]) -> str | None:
        """Why the final fit failed where the problem is hard (a reason to warn about), or None
        when it did not or the problem has no such judgement."""
        return None

    def per_sample_signal(self, pred: Tensor, target: Tensor) -> Tensor | None:
        """The difficulty a breeder is told per training sample; None: the training loss."""
        return None

    def plots(self, predict: Predictor, outdir: str) -> list[str]:
        """Write problem-specific PNG plots to ``outdir`` and return their paths."""
        return []

    def uniform(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """``n`` points drawn uniformly from the box."""
        b = self.bounds
        u = torch.rand(n, b.shape[0], generator=generator, dtype=b.dtype)
        return b[:, 0] + u * (b[:, 1] - b[:, 0])
