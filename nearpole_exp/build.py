"""Building components from their config nodes, each step named, with the checks that need the
built objects (a model that cannot take the problem's inputs, an executor for a pole problem).
Range checks of the values themselves run before, when the config is validated."""

from __future__ import annotations

import inspect
import logging
import os
from pathlib import Path
from typing import Any

import torch
from hydra.errors import InstantiationException
from hydra.utils import get_class, instantiate
from omegaconf import DictConfig, OmegaConf
from torch import Tensor

from nearpole_exp.acquisition.base import Breeder
from nearpole_exp.callbacks import Callback
from nearpole_exp.config.discovery import accepts_keywords, model_options
from nearpole_exp.config.schemas import TrainerConfig
from nearpole_exp.errors import ConfigError
from nearpole_exp.execution.solvers import UserSimulator
from nearpole_exp.models.base import ModelCapabilities
from nearpole_exp.problems.base import Problem

log = logging.getLogger(__name__)


def has_target(node: Any) -> bool:
    """Whether a config node names something to build (``none`` options are empty)."""
    return OmegaConf.is_config(node) and "_target_" in node


def build(node: DictConfig, key: str, **kwargs: Any) -> Any:
    """``instantiate(node)``; a ConfigError raised by the class (which Hydra wraps) comes back
    out keyed under ``key``, so the CLI names e.g. ``problem.fn`` in one line."""
    try:
        return instantiate(node, _convert_="all", **kwargs)
    except InstantiationException as err:
        if isinstance(err.__cause__, ConfigError):
            raise err.__cause__.under(key) from None
        raise


def optional(node: Any, key: str, **kwargs: Any) -> Any:
    """The component of an optional group (None for its ``none`` option)."""
    return build(node, key, **kwargs) if has_target(node) else None


def pick_device(name: str) -> torch.device:
    """``auto`` picks CUDA when present, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def build_problem(node: DictConfig) -> Problem:
    """The problem; refused unless it is a :class:`Problem` with a finite box."""
    problem = build(node, "problem")
    if not isinstance(problem, Problem):
        raise ConfigError("problem._target_", f"{node._target_} built a "
                          f"{type(problem).__name__}, not a Problem: subclass "
                          "nearpole_exp.problems.base.Problem (or PoleProblem, SimulatorProblem)")
    bounds = torch.as_tensor(problem.bounds)
    if not bool(torch.isfinite(bounds).all()):
        raise ConfigError("problem", f"{problem.name}'s box must be finite, got bounds "
                          f"{bounds.tolist()}")
    return problem


def build_model(node: DictConfig, dims: dict[str, Any]) -> torch.nn.Module:
    """The model for a problem's dimensions; a model that cannot take them (a pole problem's
    features vs a simulator's channels), or a bad value that only the dimensions reveal (e.g.
    ``context_dims`` beyond the inputs), raises a ConfigError keyed under ``model``."""
    if not accepts_keywords(str(node._target_), dims):
        fitting = sorted(name for name, target in model_options().items() if accepts_keywords(target, dims))
        raise ConfigError("model", f"{node._target_} cannot take this problem's inputs "
                          f"({', '.join(dims)}): use model={' or model='.join(fitting)} "
                          "(simulators also want trainer=online; experiment=burgers, ks, ks2d, landscape "
                          "set both)")
    return build(node, "model", **dims)


def build_breeder(ogas: DictConfig, bounds: Tensor, device: torch.device | None = None) -> Breeder:
    """The acquisition breeder; OGAS-style breeders also get the ``ogas/model`` and ``ogas/data``
    parts, and a breeder that takes a ``device`` (its networks') gets the run's."""
    node = ogas.breeder
    cls = get_class(node._target_)
    extra: dict[str, Any] = {part: OmegaConf.to_object(ogas[part]) for part in cls.config_parts
                             if part in ogas and OmegaConf.is_config(ogas[part])}
    if device is not None and "device" in inspect.signature(cls).parameters:
        extra["device"] = str(device)
    return build(node, "ogas.breeder", bounds=bounds, **extra)


def build_executor(node: DictConfig, problem: Problem, output_dir: Path) -> Any:
    """The simulation executor of asynchronous generations (None: label each round in-process);
    a user solver's held-out set is labelled through it when it isolates the solver."""
    if not has_target(node):
        return None
    if not problem.capabilities.simulates:
        raise ConfigError("executor", "runs simulations asynchronously; pole problems label in "
                          "one batch in-process: use executor=batched")
    extra: dict[str, Any] = {}
    if "folder" in node and not Path(node.folder).is_absolute():
        extra["folder"] = str(output_dir / node.folder)
    executor = build(node, "executor", problem=problem, **extra)
    if executor.isolates_solver and isinstance(problem, UserSimulator):
        problem.label_eval_through(executor)
    return executor


def non_finite_parameters(state: dict[str, Tensor]) -> list[str]:
    """Names of the floating-point tensors of a model state that hold NaN or inf."""
    return [name for name, value in state.items()
            if torch.is_floating_point(value) and not bool(torch.isfinite(value).all())]


def set_threads(requested: int, background: bool) -> int:
    """``trainer.num_threads``: as given; 0 = torch's default, less one core for a breeder that
    trains in the background (on 2 cores, 3 busy threads made an OGAS run 1.9x slower than
    uniform). Returns the count before, to restore at the end."""
    before = torch.get_num_threads()
    if requested:
        torch.set_num_threads(requested)
    elif background:
        torch.set_num_threads(max(1, (os.cpu_count() or 2) - 1))
    return before


def check_compatible(t: TrainerConfig, loss: str, model: ModelCapabilities, band: bool,
                     needs_q: bool, problem: Problem, breeder: Breeder) -> None:
    """Refuse combinations of built components that cannot work, with the key to change."""
    if t.q_source == "model" and not model.rational:
        raise ConfigError("trainer.q_source", "'model' needs a model with q_values "
                          "(model=rational), or trainer.q_source=problem")
    if loss == "residual" and not model.rational:
        raise ConfigError("trainer.loss", "'residual' needs a rational model (model=rational)")
    if band and not model.hybrid_division:
        raise ConfigError("gradient", "the δ schedule sets the band of a P/Q division that this "
                          "model does not have: use model=rational, or gradient=exact")
    if t.design_weighting > 0 and not breeder.capabilities.design_ratio:
        log.warning("trainer.design_weighting=%g has no effect: %s has no design density ratio "
                    "(ogas/breeder=ogas with learn_sampling_ratio provides one)",
                    t.design_weighting, type(breeder).__name__)
    if loss == "residual" and band:
        raise ConfigError("gradient", "the gradient schedule acts on the quotient P/Q, which "
                          "trainer.loss=residual never forms: use trainer.loss=relative (or auto)")
    if needs_q and t.q_source == "problem" and not problem.capabilities.knows_poles:
        raise ConfigError(
            "trainer.q_source", f"the sampler needs |Q| but problem {problem.name!r} has none: use "
            "trainer.q_source=model with model=rational, or a sampler that does not need Q "
            "(sampler=uniform)")


def build_callbacks(node: Any) -> dict[str, Callback]:
    """The ``callbacks`` entries in config order, each a :class:`Callback` (else a ConfigError
    naming its ``_target_``)."""
    built = {}
    for name, entry in (node or {}).items():
        callback = build(entry, f"callbacks.{name}")
        if not isinstance(callback, Callback):
            raise ConfigError(f"callbacks.{name}._target_",
                              f"{entry._target_} is not a nearpole_exp.callbacks.Callback subclass")
        built[str(name)] = callback
    return built
