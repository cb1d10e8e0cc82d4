"""Range checks of a composed config, run before anything is built: each group's dataclass
``__post_init__``, re-raised with the full key, plus the checks across groups."""

from __future__ import annotations

import dataclasses
import difflib

from omegaconf import DictConfig, OmegaConf

from nearpole_exp.config.discovery import COMPONENT_GROUPS
from nearpole_exp.config.schemas import SEED_LIMIT, RunConfig, check_tags
from nearpole_exp.errors import ConfigError, check

TASK_NAME_LIMIT = 100  # a folder name: far below the usual 255-byte limit on file names


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
    schema = OmegaConf.get_type(node)
    if schema in (dict, None):
        return
    if dataclasses.is_dataclass(schema):
        fields = {f.name for f in dataclasses.fields(schema)}
        for extra in sorted(set(map(str, node.keys())) - fields - {"_target_"}):
            close = difflib.get_close_matches(extra, sorted(fields), n=1)
            hint = f"; did you mean {key}.{close[0]}?" if close else ""
            raise ConfigError(f"{key}.{extra}", f"is not a setting of {key}{hint}")
    try:
        OmegaConf.to_object(node)
    except ConfigError as err:
        raise err.under(key) from None


def _check_callbacks(node: DictConfig | None) -> None:
    """Each ``callbacks`` entry names a class; one that declares a ``config_class`` gets its
    settings checked like a group's (unknown keys and ranges, the full key named)."""
    from hydra.utils import get_class

    for name, entry in (node or {}).items():
        key = f"callbacks.{name}"
        if not OmegaConf.is_config(entry) or "_target_" not in entry:
            raise ConfigError(f"{key}._target_", "must name a Callback class, e.g. "
                              "nearpole_exp.callbacks.EarlyStopping")
        try:
            config_class = getattr(get_class(str(entry._target_)), "config_class", None)
        except (ImportError, ValueError) as err:
            raise ConfigError(f"{key}._target_", f"cannot be imported: {err}") from None
        if config_class is None:
            continue
        fields = {f.name for f in dataclasses.fields(config_class)}
        settings = {str(k): v for k, v in entry.items() if k != "_target_"}
        for extra in sorted(set(settings) - fields):
            close = difflib.get_close_matches(extra, sorted(fields), n=1)
            hint = f"; did you mean {key}.{close[0]}?" if close else ""
            raise ConfigError(f"{key}.{extra}", f"is not a setting of {key}{hint}")
        try:
            config_class(**settings)
        except ConfigError as err:
            raise err.under(key) from None


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
    _check_callbacks(cfg.get("callbacks"))
    check(0 <= cfg.seed < SEED_LIMIT, "seed", f"must lie in [0, 2**63), got {cfg.seed}")
    check_tags(list(cfg.get("tags") or []), "tags")
    task = str(cfg.get("task_name", ""))
    check(0 < len(task) <= TASK_NAME_LIMIT and "/" not in task and task not in (".", ".."),
          "task_name", f"names the output folder: 1 to {TASK_NAME_LIMIT} characters, no '/' "
          f"(got {len(task)} characters: {task[:40]!r})")
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
    breeder, data = OmegaConf.select(cfg, "ogas.breeder"), OmegaConf.select(cfg, "ogas.data")
    if breeder is not None and data is not None and "min_reservoir_size" in breeder:
        check(data.buffer_size >= breeder.min_reservoir_size, "ogas.data.buffer_size",
              f"{data.buffer_size} is below ogas.breeder.min_reservoir_size="
              f"{breeder.min_reservoir_size}: the reservoir could never hold enough sims to breed")


def validate_overrides(cfg: DictConfig, overrides: list[str]) -> None:
    """Refuse command-line settings the composed config would not use: ``trainer.lr`` or a
    scheduler with a full-batch optimizer, whose line search sets its step."""
    from hydra.utils import get_class

    if not getattr(get_class(cfg.optimizer._target_), "full_batch", False):
        return
    for override in overrides:
        key = override.split("=", 1)[0].lstrip("+~")
        if key == "trainer.lr" or key == "scheduler" or key.startswith("scheduler."):
            raise ConfigError(key, "does not apply to a full-batch optimizer (optimizer="
                              f"{str(cfg.optimizer._target_).rsplit('.', 1)[-1]}): its line search "
                              "sets the step length")

