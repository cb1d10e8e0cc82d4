"""Command-line overrides checked before Hydra composes: a config-group option that does not
exist gets one line naming the real options and the closest match (Hydra's own message also
lists internal ``base_*`` schemas and suggests nothing)."""

from __future__ import annotations

import difflib
import re
from importlib.resources import files
from importlib.resources.abc import Traversable

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep, Override
from omegaconf import DictConfig, OmegaConf

#: Arguments that add config directories: options may then exist that this check cannot see.
SEARCH_PATH_ARGS = ("hydra.searchpath", "--config-dir", "-cd", "--config-path", "-cp")
#: Hydra's flags that take the next argument as their value (not an override).
VALUE_FLAGS = ("--config-path", "-cp", "--config-name", "-cn", "--config-dir", "-cd", "--cfg",
               "-c", "--package", "-p", "--info", "-i", "--shell-completion", "-sc",
               "--experimental-rerun")


def override_arguments(args: list[str]) -> list[str]:
    """The overrides among Hydra's command-line arguments (flags and their values left out)."""
    found, skip = [], False
    for arg in args:
        if skip:
            skip = False
        elif arg in VALUE_FLAGS:
            skip = True
        elif not arg.startswith("-") and "=" in arg:
            found.append(arg)
    return found


def group_options() -> dict[str, list[str]]:
    """Every config group shipped in ``nearpole_exp.conf`` (``ogas/breeder`` style) and its
    options, Hydra's own groups (``hydra/...``) left out."""
    root = files("nearpole_exp.conf")
    found: dict[str, list[str]] = {}

    def walk(node: Traversable, prefix: str) -> None:
        options = sorted(e.name[:-5] for e in node.iterdir() if e.name.endswith(".yaml"))
        if prefix and options:
            found[prefix] = options
        for entry in node.iterdir():
            if entry.is_dir() and not entry.name.startswith(("_", ".")) and entry.name != "hydra":
                walk(entry, f"{prefix}/{entry.name}" if prefix else entry.name)

    walk(root, "")
    return found


def primary_config() -> DictConfig:
    """The packaged primary config file as written (defaults list and top-level keys)."""
    return OmegaConf.create(files("nearpole_exp.conf").joinpath("config.yaml").read_text())


def top_level_keys() -> list[str]:
    """The scalar keys of the primary config (``seed``, ``resume``, …)."""
    return [k for k in primary_config() if k not in ("defaults", "hydra")]


def _values(override: Override) -> list[str]:
    """The option names an override selects (one, or each of a choice sweep)."""
    value = override.value()
    if isinstance(value, ChoiceSweep):
        return [v for v in value.list if isinstance(v, str)]
    return [value] if isinstance(value, str) else []


def _closest(word: str, choices: list[str]) -> str:
    match = difflib.get_close_matches(word, choices, n=1, cutoff=0.5)
    return f" Did you mean {match[0]!r}?" if match else ""


def override_error(args: list[str]) -> str | None:
    """What is wrong with the first unknown group or option in ``args``, or None."""
    if any(a.startswith(SEARCH_PATH_ARGS) or a.lstrip("+~").startswith("hydra.searchpath")
           for a in args):
        return None
    if any(a in ("--shell-completion", "-sc") for a in args):
        return None  # completion queries pass partial words
    overrides = override_arguments(args)
    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except Exception:  # Hydra reports malformed overrides itself
        return None
    groups = group_options()
    for override in parsed:
        key = override.key_or_group
        if override.is_delete() or key.startswith("hydra") or override.package:
            continue
        if key in groups:
            for option in _values(override):
                if option not in groups[key]:
                    return (f"{key}={option}: no such option in group {key!r}."
                            f"{_closest(option, groups[key])} Options: {', '.join(groups[key])}")
        elif "." not in key and "/" not in key and key not in top_level_keys() \
                and not override.is_add():
            known = sorted([*groups, *top_level_keys()])
            return f"{key}: no such config group or key.{_closest(key, known)}"
    return None


UNKNOWN_KEY = re.compile(r"Key '([^']+)' not in '([^']+)'; full_key: ([^;\s]+)")


def schema_fields(type_name: str) -> list[str]:
    """The settings of the schema class called ``type_name`` (a group's or the run's)."""
    import dataclasses

    from nearpole_exp.config.discovery import component_schemas
    from nearpole_exp.config.schemas import LoggerConfig, RunConfig, TrainerConfig

    classes = [RunConfig, TrainerConfig, LoggerConfig,
               *(s for group in component_schemas().values() for s in group.values())]
    for cls in classes:
        if cls.__name__ == type_name and dataclasses.is_dataclass(cls):
            return [f.name for f in dataclasses.fields(cls) if f.name != "_target_"]
    return []


def unknown_key_message(text: str) -> str | None:
    """Hydra's several-line refusal of an override whose key a schema lacks, as one line that
    names the closest real key (None when ``text`` is not such a refusal)."""
    found = UNKNOWN_KEY.search(text)
    if found is None:
        return None
    key, type_name, full = found.groups()
    parent = full.rsplit(".", 1)[0] if "." in full else ""
    close = difflib.get_close_matches(key, schema_fields(type_name), n=1)
    hint = f"; did you mean {parent + '.' if parent else ''}{close[0]}?" if close else ""
    return f"{full}: is not a setting of {parent or 'the run'}{hint}"
