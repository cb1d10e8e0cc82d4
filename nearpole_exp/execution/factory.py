"""How a worker process (or a cluster job) gets its own copy of the problem.

Default, :class:`PickledProblem`: the problem object itself is serialised once in the parent
(cloudpickle when installed, so solvers defined in a script or a notebook travel by value; plain
pickle otherwise) and rebuilt in every worker. This is exact: a problem whose construction drew
random numbers (or was configured in Python) is the same object in the worker, with no need for
its config. :class:`HydraProblem` rebuilds it from its Hydra config node instead
(``hydra.utils.instantiate`` in the worker): smaller to ship and independent of the parent's
objects, for problems that are deterministic functions of their config.
"""

from __future__ import annotations

import pickle
from abc import ABC, abstractmethod
from typing import Any

from nearpole_exp.problems.base import Problem


def dumps(obj: Any) -> bytes:
    """cloudpickle when installed (functions and classes of ``__main__`` by value), else pickle."""
    try:
        import cloudpickle
    except ImportError:  # pragma: no cover - cloudpickle ships with submitit
        return pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    return cloudpickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)


class ProblemFactory(ABC):
    """A small picklable object that builds the problem inside a worker."""

    @abstractmethod
    def __call__(self) -> Problem:
        """A ready problem."""

    @property
    def modules(self) -> list[str]:
        """Modules worth importing once before forking workers (forkserver preload)."""
        return []


class PickledProblem(ProblemFactory):
    """The problem object, serialised now and rebuilt on each call (cached evaluation sets are
    left out so workers do not receive data they never use)."""

    def __init__(self, problem: Problem) -> None:
        cache = getattr(problem, "_eval", None)
        if cache is not None:
            problem._eval = None  # type: ignore[attr-defined]
        try:
            self.blob = dumps(problem)
        finally:
            if cache is not None:
                problem._eval = cache  # type: ignore[attr-defined]
        self.module = type(problem).__module__

    def __call__(self) -> Problem:
        return pickle.loads(self.blob)

    @property
    def modules(self) -> list[str]:
        return [] if self.module == "__main__" else [self.module]


class HydraProblem(ProblemFactory):
    """Rebuilds the problem from its config node (a plain dict with ``_target_``), e.g.
    ``HydraProblem(OmegaConf.to_container(cfg.problem, resolve=True))``."""

    def __init__(self, node: dict[str, Any]) -> None:
        if "_target_" not in node:
            raise ValueError("HydraProblem needs a config node with a _target_")
        self.node = dict(node)

    def __call__(self) -> Problem:
        from hydra.utils import instantiate

        return instantiate(self.node, _convert_="all")

    @property
    def modules(self) -> list[str]:
        return [str(self.node["_target_"]).rsplit(".", 1)[0]]


def as_factory(problem: Problem | None, factory: ProblemFactory | None) -> ProblemFactory:
    """``factory`` when given, else a :class:`PickledProblem` of ``problem``."""
    if factory is not None:
        return factory
    if problem is None:
        raise ValueError("give a problem or a problem factory")
    return PickledProblem(problem)
