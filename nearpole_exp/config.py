"""Typed schemas for every config group, registered in Hydra's ConfigStore.

Each YAML option lists its schema (``base_<option>``) first in its defaults, so a wrong type
or an unknown key fails while Hydra composes the config; ranges are checked by
:func:`validate` right after composition, before anything is built.
"""

from __future__ import annotations

import dataclasses
import inspect
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Union

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf

from nearpole_exp.errors import ConfigError, check

_SCALARS = (int, float, bool, str)
LOSSES = ("auto", "mse", "relative", "nrmse", "residual")


@dataclass
class TrainerConfig:
    """The loop's budget and cadences (see DESIGN.md, "One loop for both")."""

    rounds: int = 10
    steps_per_round: int = 200
    batch_size: int = 256
    initial_points: int = 4096
    points_per_round: int = 0
    lr: float = 3e-3
    lr_schedule: str = "cosine"
    weight_decay: float = 0.0
    grad_clip: float = 10.0
    loss: str = "auto"
    q_source: str = "problem"
    q_refresh_every: int = 50
    pool_capacity: int = 0
    max_in_flight: int = 0
    regenerate_after: int = 0
    design_weighting: float = 0.0
    eval_every: int = 1
    checkpoint_every: int = 1
    device: str = "auto"
    precision: str = "float32"
    num_threads: int = 0
    progress: bool = True
    plots: bool = True

    def __post_init__(self) -> None:
        for name in ("rounds", "steps_per_round", "batch_size", "eval_every", "checkpoint_every",
                     "q_refresh_every"):
            check(getattr(self, name) > 0, name, f"must be a positive integer, got {getattr(self, name)}")
        for name in ("initial_points", "points_per_round", "pool_capacity"):
            check(getattr(self, name) >= 0, name, f"must be >= 0, got {getattr(self, name)}")
        check(self.lr > 0, "lr", f"must be > 0, got {self.lr}")
        check(self.weight_decay >= 0, "weight_decay", f"must be >= 0, got {self.weight_decay}")
        check(self.grad_clip >= 0, "grad_clip", f"must be >= 0 (0 disables), got {self.grad_clip}")
        check(self.lr_schedule in ("constant", "cosine"), "lr_schedule",
              f"must be 'constant' or 'cosine', got {self.lr_schedule!r}")
        check(self.loss in LOSSES, "loss", f"must be one of {', '.join(LOSSES)}, got {self.loss!r}")
        check(self.q_source in ("problem", "model"), "q_source",
              f"must be 'problem' or 'model', got {self.q_source!r}")
        check(self.device == "auto" or self.device.split(":")[0] in ("cpu", "cuda", "mps"),
              "device", f"must be auto, cpu, cuda[:i] or mps, got {self.device!r}")
        check(self.precision in ("float32", "float64"), "precision",
              f"must be float32 or float64, got {self.precision!r}")
        check(self.max_in_flight >= 0, "max_in_flight", "must be >= 0 (0: twice the executor's capacity)")
        check(0.0 <= self.design_weighting <= 1.0, "design_weighting",
              f"must lie in [0, 1] (0: batches uniform over the pool), got {self.design_weighting}")
        check(self.regenerate_after >= 0, "regenerate_after", "must be >= 0 (0: points_per_round)")
        check(self.num_threads >= 0, "num_threads", "must be >= 0 (0 keeps torch's default)")
        check(self.pool_capacity == 0 or self.pool_capacity >= self.batch_size, "pool_capacity",
              "must be 0 (unbounded) or at least batch_size")


@dataclass
class LoggerConfig:
    """Weights & Biases settings; ``mode: null`` lets WANDB_MODE (or the API key) decide."""

    enabled: bool = True
    project: str = "nearpole_exp"
    entity: str | None = None
    mode: str | None = None
    group: str | None = None
    job_type: str | None = None
    name: str | None = None
    tags: list[str] = field(default_factory=list)
    log_histograms: bool = True
    log_plots: bool = True
    init_timeout: float = 30.0

    def __post_init__(self) -> None:
        check(self.mode in (None, "online", "offline", "disabled"), "mode",
              f"must be null, online, offline or disabled, got {self.mode!r}")
        check(self.init_timeout > 0, "init_timeout", "must be > 0")


@dataclass
class RunConfig:
    """The top-level config; groups are filled in by the defaults list of ``config.yaml``."""

    problem: Any = MISSING
    model: Any = MISSING
    sampler: Any = MISSING
    curriculum: Any = field(default_factory=dict)
    gradient: Any = field(default_factory=dict)
    diagnostics: Any = field(default_factory=dict)
    executor: Any = field(default_factory=dict)
    ogas: Any = MISSING
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    seed: int = 0
    resume: str = "auto"
    task_name: str = "nearpole"
    objective: str = "auto"
    tags: list[str] = field(default_factory=list)
    output_dir: str = "${hydra:runtime.output_dir}"

    def __post_init__(self) -> None:
        check(self.seed >= 0, "seed", f"must be >= 0, got {self.seed}")


def _omegaconf_type(hint: Any) -> Any:
    """The annotation OmegaConf can check for ``hint``, or Any when it cannot."""
    if hint in _SCALARS:
        return hint
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (Union, types.UnionType) and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        inner = _omegaconf_type(rest[0]) if len(rest) == 1 else Any
        return inner | None if inner is not Any else Any
    if origin in (list, tuple) and args and all(a in _SCALARS or a is Ellipsis for a in args):
        return list[args[0]]
    return Any


def schema_from_signature(target: type | typing.Callable[..., Any], target_path: str,
                          skip: tuple[str, ...] = ()) -> type:
    """A dataclass schema (with ``_target_``) whose fields mirror ``target``'s keyword args."""
    func = target.__init__ if isinstance(target, type) else target
    hints = typing.get_type_hints(func)
    fields: list[tuple[str, Any, Any]] = [("_target_", str, field(default=target_path))]
    for name, param in inspect.signature(func).parameters.items():
        if name in ("self", *skip) or param.kind in (param.VAR_KEYWORD, param.VAR_POSITIONAL):
            continue
        default = param.default
        hint = _omegaconf_type(hints.get(name, Any))
        if isinstance(default, (list, tuple)):
            value = list(default)
            fields.append((name, hint, field(default_factory=lambda v=value: list(v))))
        else:
            fields.append((name, hint, field(default=MISSING if default is param.empty else default)))
    name = f"{getattr(target, '__name__', 'Target')}Schema"
    return dataclasses.make_dataclass(name, fields)


def schema_from_config(config_cls: type, target_path: str) -> type:
    """A schema subclassing a component's own config dataclass, adding ``_target_``."""
    return dataclasses.make_dataclass(f"{config_cls.__name__}Schema",
                                      [("_target_", str, field(default=target_path))],
                                      bases=(config_cls,))


def _component_schemas() -> dict[str, dict[str, type]]:
    """Schemas per group and option; imports stay local so importing config is cheap."""
    from nearpole_exp.execution.inprocess import InProcessConfig
    from nearpole_exp.execution.process_pool import ProcessPoolConfig
    from nearpole_exp.execution.solvers import CallableSimulatorConfig, CommandLineSimulatorConfig
    from nearpole_exp.execution.submitit_executor import SubmititConfig
    from nearpole_exp.models.cnn import CNN1DConfig
    from nearpole_exp.models.delta_schedule import DeltaScheduleConfig
    from nearpole_exp.models.linear_rational import LinearRationalModel
    from nearpole_exp.models.mlp import MLP
    from nearpole_exp.models.rational import RationalModel
    from nearpole_exp.ogas.config import BreedConfig, BreederConfig, DataConfig, DDPMConfig
    from nearpole_exp.ogas.static import StaticBreeder
    from nearpole_exp.problems.burgers import BurgersConfig
    from nearpole_exp.problems.curve2d import Curve2DConfig
    from nearpole_exp.problems.ks import KSConfig
    from nearpole_exp.problems.landscape import LandscapeConfig
    from nearpole_exp.problems.landscape_multi import MultiRegionLandscapeConfig
    from nearpole_exp.problems.multipole1d import MultiPole1DConfig
    from nearpole_exp.problems.rational1d import Rational1DConfig
    from nearpole_exp.problems.rr_ik import RRIKConfig
    from nearpole_exp.sampling.active import ActiveSamplerConfig
    from nearpole_exp.sampling.base import UniformSampler
    from nearpole_exp.sampling.curriculum import CurriculumConfig
    from nearpole_exp.sampling.diagnostics import DiagnosticConfig
    from nearpole_exp.sampling.hybrid import HybridSamplerConfig
    from nearpole_exp.sampling.importance import ImportanceSamplerConfig

    model_skip = ("in_features", "out_features", "input_bounds")
    return {
        "problem": {
            "rational1d": schema_from_config(Rational1DConfig, "nearpole_exp.problems.rational1d.Rational1D"),
            "multipole1d": schema_from_config(MultiPole1DConfig,
                                              "nearpole_exp.problems.multipole1d.MultiPole1D"),
            "curve2d": schema_from_config(Curve2DConfig, "nearpole_exp.problems.curve2d.Curve2D"),
            "rr_ik": schema_from_config(RRIKConfig, "nearpole_exp.problems.rr_ik.RRIK"),
            "burgers1d": schema_from_config(BurgersConfig, "nearpole_exp.problems.burgers.Burgers1D"),
            "ks1d": schema_from_config(KSConfig, "nearpole_exp.problems.ks.KuramotoSivashinsky1D"),
            "landscape": schema_from_config(LandscapeConfig, "nearpole_exp.problems.landscape.Landscape"),
            "landscape_multi": schema_from_config(
                MultiRegionLandscapeConfig, "nearpole_exp.problems.landscape_multi.MultiRegionLandscape"),
            "callable": schema_from_config(CallableSimulatorConfig,
                                           "nearpole_exp.execution.solvers.CallableSimulator"),
            "command": schema_from_config(CommandLineSimulatorConfig,
                                          "nearpole_exp.execution.solvers.CommandLineSimulator"),
        },
        "executor": {
            "inprocess": schema_from_config(InProcessConfig,
                                            "nearpole_exp.execution.inprocess.InProcessExecutor"),
            "process_pool": schema_from_config(ProcessPoolConfig,
                                               "nearpole_exp.execution.process_pool.ProcessPoolExecutor"),
            "submitit": schema_from_config(SubmititConfig,
                                           "nearpole_exp.execution.submitit_executor.SubmititExecutor"),
        },
        "model": {
            "mlp": schema_from_signature(MLP, "nearpole_exp.models.mlp.MLP", model_skip),
            "rational": schema_from_signature(RationalModel, "nearpole_exp.models.rational.RationalModel",
                                              model_skip),
            "cnn1d": schema_from_config(CNN1DConfig, "nearpole_exp.models.cnn.CNN1D"),
            "linear_rational": schema_from_signature(
                LinearRationalModel, "nearpole_exp.models.linear_rational.LinearRationalModel",
                model_skip),
        },
        "sampler": {
            "uniform": schema_from_signature(UniformSampler, "nearpole_exp.sampling.base.UniformSampler"),
            "importance": schema_from_config(ImportanceSamplerConfig,
                                             "nearpole_exp.sampling.importance.ImportanceSampler"),
            "active": schema_from_config(ActiveSamplerConfig, "nearpole_exp.sampling.active.ActiveSampler"),
            "hybrid": schema_from_config(HybridSamplerConfig, "nearpole_exp.sampling.hybrid.HybridSampler"),
        },
        "curriculum": {
            "bands": schema_from_config(CurriculumConfig, "nearpole_exp.sampling.curriculum.BandCurriculum"),
        },
        "gradient": {
            "hybrid": schema_from_config(DeltaScheduleConfig,
                                         "nearpole_exp.models.delta_schedule.DeltaSchedule"),
        },
        "diagnostics": {
            "default": schema_from_config(DiagnosticConfig,
                                          "nearpole_exp.sampling.diagnostics.DiagnosticMonitor"),
        },
        "ogas/breeder": {
            "static": schema_from_signature(StaticBreeder, "nearpole_exp.ogas.static.StaticBreeder",
                                            ("bounds",)),
            "breed": schema_from_config(BreedConfig, "nearpole_exp.ogas.breed.BreedBreeder"),
            "ogas": schema_from_config(BreederConfig, "nearpole_exp.ogas.breeder.OGASBreeder"),
        },
        "ogas/model": {"ddpm": DDPMConfig},
        "ogas/data": {"default": DataConfig},
    }


def register_configs() -> None:
    """Store the top-level schema and one ``base_<option>`` schema per group option."""
    cs = ConfigStore.instance()
    cs.store(name="base_config", node=RunConfig)
    cs.store(group="trainer", name="base_trainer", node=TrainerConfig)
    cs.store(group="logger", name="base_logger", node=LoggerConfig)
    for group, options in _component_schemas().items():
        for option, schema in options.items():
            cs.store(group=group, name=f"base_{option}", node=schema)


def _check_node(cfg: DictConfig, key: str) -> None:
    """Run a group's ``__post_init__`` checks, re-raising with the full dotted key."""
    node = OmegaConf.select(cfg, key)
    if node is None or not OmegaConf.is_config(node):
        return
    missing = sorted(OmegaConf.missing_keys(node))
    if missing:
        full = missing[0] if missing[0].startswith(f"{key}.") else f"{key}.{missing[0]}"
        hint = " (name your class, e.g. my_module.MyProblem)" if full.endswith("._target_") else ""
        raise ConfigError(full, f"must be set, it has no default{hint}")
    if OmegaConf.get_type(node) in (dict, None):
        return
    try:
        OmegaConf.to_object(node)
    except ConfigError as err:
        raise err.under(key) from None


def validate(cfg: DictConfig) -> None:
    """Check every range constraint of a composed config; raises ConfigError naming the key."""
    for key in ("problem", "trainer", "logger", "sampler", "curriculum", "gradient", "diagnostics",
                "executor",
                "ogas.breeder", "ogas.model", "ogas.data"):
        _check_node(cfg, key)
    check(cfg.seed >= 0, "seed", f"must be >= 0, got {cfg.seed}")
    trainer = cfg.trainer
    if trainer.initial_points == 0 and trainer.points_per_round == 0:
        raise ConfigError("trainer.initial_points",
                          "the pool would stay empty: set initial_points or points_per_round > 0")
