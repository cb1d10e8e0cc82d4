"""Typed schemas for every config group, registered in Hydra's ConfigStore.

Each YAML option lists its schema (``base_<option>``) first in its defaults, so a wrong type
or an unknown key fails while Hydra composes the config; ranges are checked by
:func:`validate` right after composition, before anything is built.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import os
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Union

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf

from nearpole_exp.errors import ConfigError, check

_SCALARS = (int, float, bool, str)
LOSSES = ("auto", "mse", "relative", "nrmse", "residual")
# Keys that do not define an experiment: changing them neither invalidates a checkpoint nor makes
# another sweep point (nor another W&B group). A key matches itself and everything below it.
NON_DEFINING_KEYS = ("resume", "logger", "hydra", "output_dir", "tags", "trainer.progress",
                     "trainer.plots", "trainer.device", "trainer.num_threads")
# replicates of one sweep point differ only in this key
REPLICATE_KEY = "seed"
SEED_LIMIT = 2**63  # torch's seeds are 64-bit
#: What one batch sample costs at the very least (its index and its weight, 8 bytes each).
MIN_BATCH_BYTES_PER_SAMPLE = 16


def check_fits_memory(key: str, count: int, bytes_each: int, what: str) -> None:
    """ConfigError naming ``key`` when ``count`` items of at least ``bytes_each`` bytes cannot fit
    in this machine's memory (a typo like 10**12 stops here, not in the allocator minutes later)."""
    need = count * bytes_each
    check(need <= physical_memory(), key,
          f"{count} {what} need at least {need / 2**30:.3g} GiB, more than this machine's "
          f"{physical_memory() / 2**30:.3g} GiB of memory")


def physical_memory() -> int:
    """This machine's RAM in bytes (a large stand-in where the OS does not say)."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 1 << 50


@dataclass
class TrainerConfig:
    """The loop's budget and cadences (see docs/architecture.md, "The loop"). The defaults are
    ``trainer=default`` (pole problems); ``trainer=online`` holds what differs for simulators."""

    rounds: int = 10
    steps_per_round: int = 200
    batch_size: int = 256
    initial_points: int = 4096
    points_per_round: int = 0
    lr: float = 1e-2
    lr_schedule: str = "cosine"
    weight_decay: float = 0.0
    grad_clip: float = 10.0
    max_skipped_fraction: float = 0.05
    loss: str = "auto"
    q_source: str = "problem"
    q_refresh_every: int = 50
    pool_capacity: int = 0
    max_in_flight: int = 0
    regenerate_after: int = 0
    # batches drawn ∝ (p_design/p_pool)^α of each sample's simulation (OGAS's ratio classifier; a
    # no-op for static designs and Breed). α = 0: uniform over the breeder-biased pool (bred hard
    # cases get more steps, the bulk fewer); α = 1: as if the pool were the design. Problem
    # dependent: 0.5 keeps uniform's mean on Burgers (experiment=burgers sets it), but on the
    # landscape it costs the tail gains (max ratio 1.26 → 0.94; benchmarks/ogas.md)
    design_weighting: float = 0.0
    eval_every: int = 2
    checkpoint_every: int = 1
    device: str = "auto"
    precision: str = "float64"
    num_threads: int = 0
    progress: bool = True
    plots: bool = True

    def __post_init__(self) -> None:
        for name in ("rounds", "steps_per_round", "batch_size", "eval_every", "checkpoint_every",
                     "q_refresh_every"):
            check(getattr(self, name) > 0, name, f"must be a positive integer, got {getattr(self, name)}")
        for name in ("initial_points", "points_per_round", "pool_capacity"):
            check(getattr(self, name) >= 0, name, f"must be >= 0, got {getattr(self, name)}")
        check(0 < self.lr < math.inf, "lr", f"must be a finite number > 0, got {self.lr}")
        check(0 <= self.weight_decay < math.inf, "weight_decay",
              f"must be a finite number >= 0, got {self.weight_decay}")
        check(0 <= self.grad_clip < math.inf, "grad_clip",
              f"must be a finite number >= 0 (0 disables), got {self.grad_clip}")
        check(0 <= self.max_skipped_fraction <= 1, "max_skipped_fraction",
              f"must lie in [0, 1], got {self.max_skipped_fraction}")
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
        check_fits_memory("batch_size", self.batch_size, MIN_BATCH_BYTES_PER_SAMPLE,
                          "samples per batch")
        check_fits_memory("initial_points", self.initial_points + self.points_per_round
                          * max(self.rounds - 1, 0), MIN_BATCH_BYTES_PER_SAMPLE,
                          "labelled points (initial_points + (rounds − 1)·points_per_round)")
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
    checkpoint_artifact_mb: float = 100.0

    def __post_init__(self) -> None:
        check(self.mode in (None, "online", "offline", "disabled"), "mode",
              f"must be null, online, offline or disabled, got {self.mode!r}")
        check(self.init_timeout > 0, "init_timeout", "must be > 0")
        check(self.checkpoint_artifact_mb >= 0, "checkpoint_artifact_mb",
              "must be >= 0 (0: never upload the checkpoint)")


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
    output_dir: str | None = "${hydra:runtime.output_dir}"  # None under --cfg (no job yet)

    def __post_init__(self) -> None:
        check(0 <= self.seed < SEED_LIMIT, "seed", f"must lie in [0, 2**63), got {self.seed}")


def is_non_defining(key: str, extra: tuple[str, ...] = ()) -> bool:
    """Whether a config or override key (``a.b``, ``group/option``) is, or lies under, a key of
    :data:`NON_DEFINING_KEYS` or ``extra``."""
    return any(key == k or key.startswith((f"{k}.", f"{k}/")) for k in (*NON_DEFINING_KEYS, *extra))


def override_exclude_keys() -> list[str]:
    """Hydra's ``override_dirname.exclude_keys`` (exact override keys) for the non-defining keys
    and the seed: each key, plus the sub-keys a command line sets (logger fields, Hydra's dirs)."""
    keys = [REPLICATE_KEY, *NON_DEFINING_KEYS]
    keys += [f"logger.{f.name}" for f in dataclasses.fields(LoggerConfig)]
    keys += ["hydra.run.dir", "hydra.sweep.dir", "hydra.sweep.subdir", "hydra/launcher",
             "hydra.launcher.n_jobs", "hydra.verbose"]
    return keys


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


# the config groups whose options build a component (their schemas: _component_schemas)
COMPONENT_GROUPS = ("problem", "model", "sampler", "curriculum", "gradient", "diagnostics",
                    "executor", "ogas/breeder", "ogas/model", "ogas/data")
# constructor arguments the runner supplies itself, per group (not config keys)
RUNTIME_ARGS = {"model": ("in_features", "out_features", "input_bounds"), "ogas/breeder": ("bounds",)}


def _option_files(groups: tuple[str, ...] = COMPONENT_GROUPS) -> list[tuple[str, str, DictConfig]]:
    """(group, option, YAML) of every option of ``groups`` shipped in ``nearpole_exp.conf``."""
    from importlib.resources import files

    root = files("nearpole_exp.conf")
    found = []
    for group in groups:
        for entry in sorted(root.joinpath(group).iterdir(), key=lambda e: e.name):
            if entry.name.endswith(".yaml"):
                found.append((group, entry.name[:-5], OmegaConf.create(entry.read_text())))
    return found


def accepts_keywords(target: str, names: Any) -> bool:
    """Whether the class ``target`` (a dotted path) takes every keyword in ``names``."""
    from hydra.utils import get_class

    params = inspect.signature(get_class(target)).parameters
    return any(p.kind is p.VAR_KEYWORD for p in params.values()) or all(n in params for n in names)


def model_options() -> dict[str, str]:
    """The shipped ``model`` options and the class each builds."""
    return {option: str(node["_target_"]) for _, option, node in _option_files(("model",))
            if "_target_" in node}


def _schema_name(node: DictConfig) -> str | None:
    """The ``base_<name>`` an option's defaults list starts with (None: the option has none)."""
    defaults = node.get("defaults") or []
    first = defaults[0] if len(defaults) else None
    return first[len("base_"):] if isinstance(first, str) and first.startswith("base_") else None


def schema_of(cls: type, target_path: str, group: str) -> type:
    """A component's schema: from the config dataclass it declares (``config_class``), else from
    its constructor's keyword arguments (less those the runner supplies)."""
    config_cls = getattr(cls, "config_class", None)
    if config_cls is not None:
        return schema_from_config(config_cls, target_path)
    return schema_from_signature(cls, target_path, RUNTIME_ARGS.get(group, ()))


def _component_schemas() -> dict[str, dict[str, type]]:
    """Schemas per group and ``base_<name>``, found from the shipped YAML options: each names its
    class (``_target_``) and the class declares its schema; an ``ogas/<part>`` option takes the
    dataclass the breeders declare for that part (``config_parts``)."""
    from hydra.utils import get_class

    schemas: dict[str, dict[str, type]] = {}
    parts: dict[str, type] = {}
    options = _option_files()
    for group, _, node in options:
        name, target = _schema_name(node), node.get("_target_")
        if name is None or target is None:
            continue
        cls = get_class(target)
        schemas.setdefault(group, {})[name] = schema_of(cls, target, group)
        parts.update({f"ogas/{part}": dc for part, dc in getattr(cls, "config_parts", {}).items()})
    for group, _, node in options:
        name = _schema_name(node)
        if group in parts and name is not None:
            schemas.setdefault(group, {})[name] = parts[group]
    return schemas


def slug(text: str) -> str:
    """A directory-name-safe form of an override string (``ogas/breeder=ogas`` → ``ogas.breeder=ogas``)."""
    return str(text).replace("/", ".").replace(",", "_").replace(" ", "") or "default"


def register_resolvers() -> None:
    """The resolvers the primary config's ``hydra`` node uses: ``non_defining_overrides`` behind
    ``override_dirname.exclude_keys`` (needed to read a saved ``multirun.yaml`` too) and ``slug``
    for job directory names."""
    if not OmegaConf.has_resolver("non_defining_overrides"):
        OmegaConf.register_new_resolver("non_defining_overrides", override_exclude_keys)
    if not OmegaConf.has_resolver("slug"):
        OmegaConf.register_new_resolver("slug", slug)


def register_configs(placeholders: bool = False) -> None:
    """Store the top-level schema and one ``base_<option>`` schema per group option. With
    ``placeholders`` the component schemas are empty nodes, found from the YAML files alone:
    enough to compose names and values for shell completion without importing torch."""
    register_resolvers()
    cs = ConfigStore.instance()
    cs.store(name="base_config", node=RunConfig)
    cs.store(group="trainer", name="base_trainer", node=TrainerConfig)
    cs.store(group="logger", name="base_logger", node=LoggerConfig)
    if placeholders:
        for group, _, node in _option_files():
            name = _schema_name(node)
            if name is not None:
                cs.store(group=group, name=f"base_{name}", node={})
        return
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


def restore_schema(cfg: DictConfig) -> DictConfig:
    """A config re-loaded from a job's saved ``.hydra/config.yaml`` (``--config-path <job>/.hydra
    --config-name config``) has lost its schemas: type it again (the top level, and each
    component node by the class its ``_target_`` names), so it validates and builds as the
    original did. A config composed from the packaged groups is returned as it is."""
    if OmegaConf.get_type(cfg.get("trainer")) is TrainerConfig:
        return cfg
    from hydra.utils import get_class

    typed = OmegaConf.merge(OmegaConf.structured(RunConfig), cfg)
    for group in COMPONENT_GROUPS:
        key = group.replace("/", ".")
        node = OmegaConf.select(typed, key)
        if not OmegaConf.is_config(node) or "_target_" not in node:
            continue
        schema = schema_of(get_class(node._target_), str(node._target_), group)
        OmegaConf.update(typed, key, OmegaConf.merge(OmegaConf.structured(schema), node), merge=False)
    return typed


def device_available(name: str) -> bool:
    """Whether torch can use the device ``name`` (``auto`` always can)."""
    import torch

    kind, _, index = name.partition(":")
    if kind == "cuda":
        return torch.cuda.is_available() and int(index or 0) < torch.cuda.device_count()
    if kind == "mps":
        return torch.backends.mps.is_available()
    return True


def validate(cfg: DictConfig) -> None:
    """Check every range constraint of a composed config; raises ConfigError naming the key."""
    for key in ("trainer", "logger", *(group.replace("/", ".") for group in COMPONENT_GROUPS)):
        _check_node(cfg, key)
    check(0 <= cfg.seed < SEED_LIMIT, "seed", f"must lie in [0, 2**63), got {cfg.seed}")
    known = {f.name for f in dataclasses.fields(RunConfig)} | {"hydra"}
    for key in cfg:
        if key not in known:
            raise ConfigError(str(key), "is not a setting of nearpole_exp (top-level keys: "
                              f"{', '.join(sorted(known - {'hydra'}))}); remove it")
    trainer = cfg.trainer
    check(device_available(trainer.device), "trainer.device",
          f"{trainer.device} is not available on this machine (use auto or cpu)")
    if trainer.initial_points == 0 and trainer.points_per_round == 0:
        raise ConfigError("trainer.initial_points",
                          "the pool would stay empty: set initial_points or points_per_round > 0")
