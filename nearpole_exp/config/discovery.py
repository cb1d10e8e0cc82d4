"""Component schemas found from the shipped options: each option's YAML names its class
(``_target_``), and the class declares its schema (``config_class``, else its constructor's
keyword arguments). They are registered in Hydra's ConfigStore as ``base_<name>`` with the
loop's own schemas; a config re-loaded from a job's saved YAML gets them back."""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import types
import typing
from dataclasses import field
from pathlib import Path
from typing import Any, Union

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf

from nearpole_exp.config.schemas import (
    LoggerConfig,
    PathsConfig,
    RunConfig,
    TrainerConfig,
    override_exclude_keys,
)

_SCALARS = (int, float, bool, str)


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


# the config groups whose options build a component (their schemas: component_schemas)
COMPONENT_GROUPS = ("problem", "model", "sampler", "curriculum", "gradient", "optimizer", "scheduler",
                    "polish", "diagnostics",
                    "executor", "ogas/breeder", "ogas/model", "ogas/data")
# constructor arguments the runner supplies itself, per group (not config keys)
RUNTIME_ARGS = {"model": ("in_features", "out_features", "input_bounds"), "ogas/breeder": ("bounds",)}


def option_files(groups: tuple[str, ...] = COMPONENT_GROUPS) -> list[tuple[str, str, DictConfig]]:
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
    return {option: str(node["_target_"]) for _, option, node in option_files(("model",))
            if "_target_" in node}


def schema_name(node: DictConfig) -> str | None:
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


def component_schemas() -> dict[str, dict[str, type]]:
    """Schemas per group and ``base_<name>``, found from the shipped YAML options: each names its
    class (``_target_``) and the class declares its schema; an ``ogas/<part>`` option takes the
    dataclass the breeders declare for that part (``config_parts``)."""
    from hydra.utils import get_class

    schemas: dict[str, dict[str, type]] = {}
    parts: dict[str, type] = {}
    options = option_files()
    for group, _, node in options:
        name, target = schema_name(node), node.get("_target_")
        if name is None or target is None:
            continue
        cls = get_class(target)
        schemas.setdefault(group, {})[name] = schema_of(cls, target, group)
        parts.update({f"ogas/{part}": dc for part, dc in getattr(cls, "config_parts", {}).items()})
    for group, _, node in options:
        name = schema_name(node)
        if group in parts and name is not None:
            schemas.setdefault(group, {})[name] = parts[group]
    return schemas


SLUG_MAX = 120  # a job directory's name stays far below the usual 255-byte limit


def slug(text: str) -> str:
    """A directory-name-safe form of an override string (``ogas/breeder=ogas`` → ``ogas.breeder=ogas``);
    a long one keeps its first characters and a hash of the whole, so sweep points stay distinct."""
    out = str(text).replace("/", ".").replace(",", "_").replace(" ", "") or "default"
    if len(out) <= SLUG_MAX:
        return out
    digest = hashlib.sha1(out.encode()).hexdigest()[:10]
    return f"{out[: SLUG_MAX - 11]}~{digest}"


def register_resolvers() -> None:
    """The resolvers the primary config's ``hydra`` node uses: ``non_defining_overrides`` behind
    ``override_dirname.exclude_keys`` (needed to read a saved ``multirun.yaml`` too) and ``slug``
    for job directory names."""
    if not OmegaConf.has_resolver("non_defining_overrides"):
        OmegaConf.register_new_resolver("non_defining_overrides", override_exclude_keys)
    if not OmegaConf.has_resolver("slug"):
        OmegaConf.register_new_resolver("slug", slug)


def register_configs(placeholders: bool = False, cached: bool = False) -> None:
    """Store the top-level schema and one ``base_<option>`` schema per group option. With
    ``placeholders`` the component schemas are empty nodes, found from the YAML files alone:
    enough to compose names and values for shell completion without importing torch. With
    ``cached`` they come from :mod:`~nearpole_exp.config.schema_cache` when it holds this
    package's (printing a config without importing torch), else from the components."""
    from nearpole_exp.config import schema_cache

    register_resolvers()
    cs = ConfigStore.instance()
    cs.store(name="base_config", node=RunConfig)
    cs.store(group="trainer", name="base_trainer", node=TrainerConfig)
    cs.store(group="logger", name="base_logger", node=LoggerConfig)
    cs.store(group="paths", name="base_paths", node=PathsConfig)
    if placeholders:
        for group, _, node in option_files():
            name = schema_name(node)
            if name is not None:
                cs.store(group=group, name=f"base_{name}", node={})
        return
    schemas = schema_cache.read() if cached else None
    if schemas is None:
        schemas = component_schemas()
        schema_cache.write(schemas)
    for group, options in schemas.items():
        for option, schema in options.items():
            cs.store(group=group, name=f"base_{option}", node=schema)


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


def job_choices(hc: Any) -> dict[str, Any]:
    """The job's group choices (``problem: rational1d`` …), Hydra's own left out. A rerun from a
    saved config has none of its own: it takes those the original job saved beside that config."""
    choices = {k: v for k, v in hc.runtime.choices.items() if not k.startswith("hydra")}
    if choices:
        return choices
    for source in hc.runtime.config_sources:
        if source.get("provider") == "main" and source.get("schema") == "file":
            saved = Path(str(source.get("path", ""))) / "hydra.yaml"
            if saved.is_file():
                node = OmegaConf.select(OmegaConf.load(saved), "hydra.runtime.choices") or {}
                return {k: v for k, v in node.items() if not k.startswith("hydra")}
    return {}
