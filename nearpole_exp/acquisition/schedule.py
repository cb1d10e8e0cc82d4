"""Breed-ratio schedule: the share R of bred points in each generation, start → end."""

from __future__ import annotations

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


class AdaptiveBreedRatio:
    """Breed ratio steered by the ratio classifier's effective sample size (a feature the
    originals lack): R ← clip(R + gain·(ESS − target), 0, ceiling) once per generation.

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

    def update(self, ess: float) -> float:
        """Move R by the ESS error of the last generation (ignored when not finite)."""
        if ess == ess and abs(ess) != float("inf"):
            self.value = min(max(self.value + self.gain * (ess - self.target), 0.0), self.ceiling)
        return self.value

    def state_dict(self) -> dict[str, Any]:
        return {"value": self.value}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.value = float(state["value"])


class YieldBreedRatio:
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

    def state_dict(self) -> dict[str, Any]:
        return {"value": self.value, "last": dict(self.last)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.value = float(state["value"])
        self.last = {k: float(v) for k, v in state.get("last", {}).items()}
