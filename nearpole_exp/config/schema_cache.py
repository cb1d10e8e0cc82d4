"""The component schemas cached as plain data, so that printing a config (``--cfg job``, ``--info``)
composes with the real schemas without importing torch (2.3 s of CPU against 0.16 s for
``--help``, since every component class lives in a module that imports it).

A run that imports the components writes the cache; a printing command reads it when it was
written from this very package (a digest of its code and shipped options), and otherwise imports
the components as a run does. The cache lives in ``$XDG_CACHE_HOME/nearpole_exp`` (``~/.cache``
by default); a cache that cannot be written or read costs only the import.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import typing
from dataclasses import MISSING as DC_MISSING
from dataclasses import field
from pathlib import Path
from typing import Any

from omegaconf import MISSING

PACKAGE = Path(__file__).resolve().parent.parent
_TYPE_NAMES = {"int": int, "float": float, "str": str, "bool": bool, "list": list, "tuple": tuple,
               "Any": Any, "None": None}


def package_digest() -> str:
    """A digest of the package's code and shipped options (the cache is valid for these only)."""
    digest = hashlib.sha256()
    for path in sorted([*PACKAGE.rglob("*.py"), *PACKAGE.rglob("*.yaml")]):
        digest.update(str(path.relative_to(PACKAGE)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:20]


def cache_path(digest: str) -> Path:
    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return root / "nearpole_exp" / f"schemas-{digest}.json"


def _type_name(hint: Any) -> str:
    """``hint`` written so that :func:`_type_of` can read it back."""
    if isinstance(hint, type) and typing.get_origin(hint) is None:
        return hint.__name__
    return repr(hint).replace("typing.", "")


def _type_of(name: str) -> Any:
    """The type :func:`_type_name` wrote: a name, ``X | None``, ``list[X]``, ``tuple[X, ...]``."""
    name = name.strip()
    union = _split(name, "|")
    if len(union) > 1:
        parts = [_type_of(part) for part in union]
        out = parts[0]
        for part in parts[1:]:
            out = out | (type(None) if part is None else part)
        return out
    if name.endswith("]"):
        outer, _, inner = name[:-1].partition("[")
        args = tuple(Ellipsis if a.strip() == "..." else _type_of(a) for a in _split(inner, ","))
        return _TYPE_NAMES[outer.strip()][args if len(args) > 1 else args[0]]
    return _TYPE_NAMES[name]


def _split(text: str, sep: str) -> list[str]:
    """``text`` split at ``sep`` outside brackets."""
    parts, depth, start = [], 0, 0
    for i, char in enumerate(text):
        depth += (char == "[") - (char == "]")
        if char == sep and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    return [*parts, text[start:]]


def encode(schema: type) -> dict[str, Any]:
    """A schema dataclass as ``{"name", "fields": [[field, type, default], ...]}``."""
    hints = typing.get_type_hints(schema)
    fields = []
    for f in dataclasses.fields(schema):
        if f.default is not DC_MISSING:
            default = f.default
        elif f.default_factory is not DC_MISSING:
            default = f.default_factory()
        else:
            default = MISSING
        fields.append([f.name, _type_name(hints[f.name]), list(default) if isinstance(default, tuple)
                       else default])
    return {"name": schema.__name__, "fields": fields}


def decode(entry: dict[str, Any]) -> type:
    """The schema :func:`encode` wrote (the same fields, types and defaults)."""
    fields = []
    for name, type_name, default in entry["fields"]:
        if isinstance(default, list):
            fields.append((name, _type_of(type_name), field(default_factory=lambda v=default: list(v))))
        else:
            fields.append((name, _type_of(type_name), field(default=default)))
    return dataclasses.make_dataclass(entry["name"], fields)


def write(schemas: dict[str, dict[str, type]]) -> None:
    """Cache ``schemas`` (group → option → schema) for this package; failures are ignored."""
    try:
        path = cache_path(package_digest())
        if path.exists():
            return
        text = json.dumps({group: {option: encode(schema) for option, schema in options.items()}
                           for group, options in schemas.items()})  # inf defaults stay Infinity
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.{os.getpid()}")
        partial.write_text(text)
        os.replace(partial, path)  # readers see the whole file or none
    except (OSError, TypeError, ValueError):
        return


def read() -> dict[str, dict[str, type]] | None:
    """The cached schemas of this package, or None when there are none (or they cannot be read)."""
    try:
        data = json.loads(cache_path(package_digest()).read_text())
        return {group: {option: decode(entry) for option, entry in options.items()}
                for group, options in data.items()}
    except (OSError, ValueError, KeyError, TypeError):
        return None
