"""Typed, validated configs shared by the breeders: the Breed baseline's and the breed-ratio ramp's.

Every field has a default sized for a 2-core CPU; ``__post_init__`` rejects bad values with a
``ConfigError`` naming the field. :func:`build_config` builds any of these dataclasses from a base
and flat overrides.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from nearpole_exp.designs import DESIGNS
from nearpole_exp.errors import ConfigError, check

SCHEDULE_ON = ("generation", "budget")
RAMP_BREAKPOINT = 3
YIELD_WINDOW = 3  # generations a first-look yield is averaged over (acquisition/yields.py)
BREED_OOB = ("resample", "reflect")
BREED_CHILDREN = ("gaussian", "recombination", "adaptive")


def check_ratio_schedule(start: float, end: float, breakpoint: int, schedule_on: str,
                          total_budget: int | None, budget_breakpoint: float,
                          names: tuple[str, str]) -> None:
    """Shared validation of a start→end breed-ratio schedule."""
    check(0.0 <= start <= 1.0, names[0], f"must lie in [0, 1], got {start}")
    check(0.0 <= end <= 1.0, names[1], f"must lie in [0, 1], got {end}")
    check(breakpoint >= 1, "breakpoint", f"must be >= 1, got {breakpoint}")
    check(schedule_on in SCHEDULE_ON, "schedule_on", f"must be one of {SCHEDULE_ON}")
    check(total_budget is None or total_budget > 0, "total_budget", "must be positive or None")
    check(schedule_on != "budget" or total_budget is not None, "total_budget",
          "schedule_on='budget' needs total_budget (number of simulations)")
    check(0.0 < budget_breakpoint <= 1.0, "budget_breakpoint", "must lie in (0, 1]")


@dataclass
class BreedConfig:
    """Breed baseline (Melissa's DefaultBreeder): Gaussian children of fitness-proportional parents.

    ``sigma`` is a fraction of the box width; parents come from the last ``window`` sims with a
    score; OOB children are reflected into the box or resampled with sigma × ``oob_factor`` per
    retry (``max_oob_attempts``), then clipped. Defaults follow the paper's "mixed" preset.
    """

    sigma: float = 0.1
    start: float = 0.0
    end: float = 0.7
    breakpoint: int = 3
    schedule_on: str = "generation"
    total_budget: int | None = None
    budget_breakpoint: float = 0.3
    window: int = 256
    fitness_power: float = 1.0
    ema_alpha: float = 0.3
    max_loss_value: float = float("inf")
    min_observations: int = 1
    oob: str = "resample"
    oob_factor: float = 0.3
    max_oob_attempts: int = 5
    non_breed_design: str = "uniform"
    # "yield": R = start + (end − start)·p each generation instead of the ramp, p the
    # probability that bred sims were harder at first look than design sims over the last
    # yield_window generations (acquisition/yields.py; as OGAS's adaptive_ratio=yield)
    adaptive_ratio: str = "off"
    yield_window: int = YIELD_WINDOW
    # children: Gaussian around one parent (the paper's), on the line through two parents,
    # a + u·(b − a) with u ~ U(−recombination_spread, 1 + recombination_spread) (no length scale,
    # so it keeps its reach in any dimension; acquisition/children.py), or both, split each
    # generation by their first-look yields with at least mix_floor each ("adaptive")
    children: str = "gaussian"
    recombination_spread: float = 0.25
    mix_floor: float = 0.1

    def __post_init__(self) -> None:
        check(self.sigma > 0, "sigma", "must be positive")
        check(self.children in BREED_CHILDREN, "children",
              f"must be one of {BREED_CHILDREN}, got {self.children!r}")
        check(0.0 <= self.recombination_spread <= 1.0, "recombination_spread", "must lie in [0, 1]")
        check(0.0 <= self.mix_floor <= 0.5, "mix_floor", "must lie in [0, 0.5]")
        check(self.children == "adaptive" or self.mix_floor == 0.1, "mix_floor",
              "is used only with children=adaptive")
        check(self.adaptive_ratio in ("off", "yield"), "adaptive_ratio",
              f"must be 'off' or 'yield', got {self.adaptive_ratio!r}")
        check(self.yield_window >= 1, "yield_window", "must be >= 1")
        check(self.adaptive_ratio == "yield" or self.yield_window == YIELD_WINDOW, "yield_window",
              "is used only with adaptive_ratio=yield")
        check(self.adaptive_ratio == "off" or (self.schedule_on == "generation"
                                               and self.breakpoint == RAMP_BREAKPOINT),
              "breakpoint", "the ramp (breakpoint, schedule_on) is replaced by "
              "adaptive_ratio: leave it unset")
        check_ratio_schedule(self.start, self.end, self.breakpoint, self.schedule_on,
                              self.total_budget, self.budget_breakpoint, ("start", "end"))
        check(self.window >= 1, "window", "must be >= 1")
        check(self.fitness_power >= 0, "fitness_power", "must be >= 0")
        check(0.0 < self.ema_alpha <= 1.0, "ema_alpha", "must lie in (0, 1]")
        check(self.max_loss_value > 0, "max_loss_value", "must be positive")
        check(self.min_observations >= 1, "min_observations", "must be >= 1")
        check(self.oob in BREED_OOB, "oob", f"must be one of {BREED_OOB}")
        check(0.0 < self.oob_factor <= 1.0, "oob_factor", "must lie in (0, 1]")
        check(self.max_oob_attempts >= 0, "max_oob_attempts", "must be >= 0")
        check(self.non_breed_design in DESIGNS, "non_breed_design", f"must be one of {DESIGNS}")


C = TypeVar("C")


def build_config(cls: type[C], base: Any, overrides: Mapping[str, Any], prefix: str = "") -> C:
    """``cls`` from a base (instance of ``cls`` or a subclass, a mapping, or None) plus flat
    overrides. Keys starting with ``_`` (Hydra's ``_target_``…) are ignored; unknown keys and
    invalid values raise ConfigError with the field name under ``prefix``."""
    names = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
    if base is None:
        values: dict[str, Any] = {}
    elif isinstance(base, Mapping):
        values = dict(base)
    elif dataclasses.is_dataclass(base):
        values = {f.name: getattr(base, f.name) for f in dataclasses.fields(base)}
    else:
        raise TypeError(f"cannot build {cls.__name__} from {type(base).__name__}")
    values.update(overrides)
    values = {k: v for k, v in values.items() if not k.startswith("_")}
    for key in values:
        if key not in names:
            raise ConfigError(f"{prefix}{key}", f"unknown field of {cls.__name__}")
    try:
        return cls(**values)
    except ConfigError as err:
        raise err.under(prefix.rstrip(".")) from None
