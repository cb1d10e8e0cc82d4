"""The breed ratio R, the share of bred points in each generation: a fixed start → end ramp, or a
controller that steers it (by the ratio classifier's ESS, or by first-look yields). Breeders hold
one :class:`RatioController` and ask it for R before each generation."""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import Any

from nearpole_exp.acquisition.history import SimHistory
from nearpole_exp.acquisition.yields import probability_higher, source_yields


class BreedRatioSchedule:
    """Linear start→end ramp of R, indexed by generation (Melissa) or by consumed budget.

    ``on="generation"``: R_g = linspace(start, end, max(breakpoint, 2))[min(g, breakpoint−1)].
    ``on="budget"``: R = start + (end−start)·min(f / budget_breakpoint, 1) with f the fraction of
    ``total_budget`` simulations asked before the generation, so the ramp does not depend on how
    often the caller resamples. Generation 0 is always 0 (nothing has been scored yet).
    """

    def __init__(self, start: float, end: float, breakpoint: int, on: str = "generation",
                 total_budget: int | None = None, budget_breakpoint: float = 0.3) -> None:
        if on not in ("generation", "budget"):
            raise ValueError(f"on must be 'generation' or 'budget', got {on!r}")
        if on == "budget" and not total_budget:
            raise ValueError("a budget schedule needs total_budget")
        self.start = float(start)
        self.end = float(end)
        self.breakpoint = int(breakpoint)
        self.on = on
        self.total_budget = total_budget
        self.budget_breakpoint = float(budget_breakpoint)
        self.generation = 0

    def ratio(self, generation: int | None = None, consumed: int = 0) -> float:
        """R for ``generation`` (default: the current one) after ``consumed`` sims were asked."""
        g = self.generation if generation is None else int(generation)
        if g <= 0:
            return 0.0
        if self.on == "budget":
            frac = consumed / float(self.total_budget)  # type: ignore[arg-type]
            return self.start + (self.end - self.start) * min(frac / self.budget_breakpoint, 1.0)
        steps = max(self.breakpoint, 2) - 1
        pos = min(g, self.breakpoint - 1)
        return self.start + (self.end - self.start) * pos / steps

    def advance(self) -> None:
        """Move to the next generation (called when a generation is concretised)."""
        self.generation += 1

    def state_dict(self) -> dict[str, Any]:
        return {"generation": self.generation}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generation = int(state["generation"])


class RatioController(ABC):
    """Sets R for the generation being drawn (generation 0 is always drawn from the design)."""

    @abstractmethod
    def next_ratio(self, history: SimHistory, generation: int, consumed: int) -> float:
        """R of generation ``generation`` after ``consumed`` sims were asked, given ``history``."""

    def observe_ess(self, ess: float) -> None:
        """One training step's effective sample size of the ratio classifier's weights."""

    def metrics(self) -> dict[str, float]:
        """What steered the last R (names under ``breeder/``)."""
        return {}

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any] | None) -> None:
        """Restore :meth:`state_dict` (None: a state written without a controller)."""


class RampRatio(RatioController):
    """The fixed ramp of a :class:`BreedRatioSchedule` (Melissa's rule)."""

    def __init__(self, schedule: BreedRatioSchedule) -> None:
        self.schedule = schedule

    def next_ratio(self, history: SimHistory, generation: int, consumed: int) -> float:
        return self.schedule.ratio(generation, consumed=consumed)


class AdaptiveBreedRatio(RatioController):
    """Breed ratio steered by the ratio classifier's effective sample size (a feature the
    originals lack): R ← clip(R + gain·(ESS − target), 0, ceiling) once per generation, from the
    mean ESS of the training steps since the previous one (generation 1 keeps the initial R).

    The ESS fraction of the debiasing weights falls as the reservoir drifts from the design;
    holding it at ``target`` breeds as much as the history can still be reweighted to the
    design, so the ramp adapts to how concentrated the bred points are instead of being fixed
    in advance. The fixed point R* solves ESS(R*) = target (or sits at a bound).
    """

    def __init__(self, initial: float, ceiling: float, target: float, gain: float) -> None:
        self.value = float(initial)
        self.ceiling = float(ceiling)
        self.target = float(target)
        self.gain = float(gain)
        self.ess_sum, self.ess_count = 0.0, 0
        self.last_ess = math.nan

    def update(self, ess: float) -> float:
        """Move R by the ESS error of the last generation (ignored when not finite)."""
        if ess == ess and abs(ess) != float("inf"):
            self.value = min(max(self.value + self.gain * (ess - self.target), 0.0), self.ceiling)
        return self.value

    def observe_ess(self, ess: float) -> None:
        self.ess_sum += ess
        self.ess_count += 1

    def next_ratio(self, history: SimHistory, generation: int, consumed: int) -> float:
        if generation == 0:
            return 0.0
        if generation >= 2:
            self.last_ess = self.ess_sum / self.ess_count if self.ess_count else 1.0
            self.update(self.last_ess)
        self.ess_sum, self.ess_count = 0.0, 0
        return self.value

    def metrics(self) -> dict[str, float]:
        return {"adaptive_ess": self.last_ess}

    def state_dict(self) -> dict[str, Any]:
        return {"value": self.value, "ess_sum": self.ess_sum, "ess_count": self.ess_count,
                "last_ess": self.last_ess}

    def load_state_dict(self, state: dict[str, Any] | None) -> None:
        if state is None:
            return
        self.value = float(state["value"])
        self.ess_sum = float(state.get("ess_sum", 0.0))
        self.ess_count = int(state.get("ess_count", 0))
        self.last_ess = float(state.get("last_ess", math.nan))


class YieldBreedRatio(RatioController):
    """Breed ratio steered by first-look yields (acquisition/yields.py): R = low + (high − low)·p
    once per generation, p the probability that bred points were harder for the surrogate than
    the design's over the last ``window`` generations (0.5 until both have been measured).

    Breeding is worth its share while its points are where the surrogate errs more than on a
    design draw; once the surrogate has caught up there (p → ½ or below) the design takes back
    the points and explores.
    """

    def __init__(self, low: float, high: float, window: int) -> None:
        self.low = float(low)
        self.high = float(high)
        self.window = int(window)
        self.value = self.low + 0.5 * (self.high - self.low)
        self.last: dict[str, float] = {}

    def update(self, p_bred_harder: float) -> float:
        self.value = self.low + (self.high - self.low) * p_bred_harder
        return self.value

    def observe(self, history: SimHistory) -> float:
        """R of the next generation from ``history``'s yields (unchanged while one is missing)."""
        y = source_yields(history, self.window)
        if "bred" in y and "design" in y:
            self.update(probability_higher(y["bred"], y["design"]))
            self.last = {"yield_bred": y["bred"].mean, "yield_design": y["design"].mean}
        return self.value

    def next_ratio(self, history: SimHistory, generation: int, consumed: int) -> float:
        return 0.0 if generation == 0 else self.observe(history)

    def metrics(self) -> dict[str, float]:
        return dict(self.last)

    def state_dict(self) -> dict[str, Any]:
        return {"value": self.value, "last": dict(self.last)}

    def load_state_dict(self, state: dict[str, Any] | None) -> None:
        if state is None:
            return
        self.value = float(state["value"])
        self.last = {k: float(v) for k, v in state.get("last", {}).items()}


def ratio_controller(kind: str, schedule: BreedRatioSchedule, start: float, end: float,
                     window: int, ess_target: float = 0.5, gain: float = 0.5) -> RatioController:
    """The controller of ``adaptive_ratio`` = ``off`` (the ramp), ``ess`` or ``yield``."""
    if kind == "ess":
        return AdaptiveBreedRatio(start, end, ess_target, gain)
    if kind == "yield":
        return YieldBreedRatio(start, end, window)
    return RampRatio(schedule)
