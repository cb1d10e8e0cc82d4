"""Printing a config composes with the component schemas cached as data, without importing torch,
and prints exactly what the full import prints."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import typing
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from nearpole_exp.config import schema_cache
from nearpole_exp.config.discovery import component_schemas

from .conftest import subprocess_env


def _field_types(schema: type) -> dict[str, object]:
    hints = typing.get_type_hints(schema)
    return {f.name: hints[f.name] for f in dataclasses.fields(schema)}


def test_every_component_schema_survives_the_cache_with_its_types_and_defaults() -> None:
    for group, options in component_schemas().items():
        for option, schema in options.items():
            back = schema_cache.decode(json.loads(json.dumps(schema_cache.encode(schema))))
            where = f"{group}/{option}"
            assert _field_types(back) == _field_types(schema), where
            assert OmegaConf.to_yaml(OmegaConf.structured(back)) == \
                OmegaConf.to_yaml(OmegaConf.structured(schema)), where


def test_a_cache_of_other_code_or_a_damaged_one_is_not_used(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert schema_cache.read() is None  # none written yet
    schema_cache.write(component_schemas())
    assert schema_cache.read() is not None
    monkeypatch.setattr(schema_cache, "package_digest", lambda: "other-code")
    assert schema_cache.read() is None
    monkeypatch.undo()
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    schema_cache.cache_path(schema_cache.package_digest()).write_text('{"model": {"mlp": ')
    assert schema_cache.read() is None


PRINT = ("import sys; from nearpole_exp.__main__ import main\n"
         "sys.argv = ['nearpole_exp', *sys.argv[1:]]\n"
         "main(); print('torch imported:', 'torch' in sys.modules)")


def _print_config(cache: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**subprocess_env(), "XDG_CACHE_HOME": str(cache)}
    return subprocess.run([sys.executable, "-c", PRINT, *args], capture_output=True, text=True,
                          env=env, timeout=120)


@pytest.mark.parametrize("args", [("--cfg", "job", "experiment=burgers"),
                                  ("-c", "job", "ogas/breeder=ogas", "model=mlp")])
def test_cfg_job_prints_the_same_config_without_torch_once_cached(tmp_path, args) -> None:
    first = _print_config(tmp_path, *args)  # no cache: imports the components and writes it
    assert first.returncode == 0, first.stderr
    assert first.stdout.endswith("torch imported: True\n")
    second = _print_config(tmp_path, *args)
    assert second.returncode == 0, second.stderr
    assert second.stdout.endswith("torch imported: False\n")
    assert second.stdout.rsplit("torch imported", 1)[0] == first.stdout.rsplit("torch imported", 1)[0]
    bad = _print_config(tmp_path, "--cfg", "job", "model=mlp", "model.hidden=abc")
    assert bad.returncode == 2 and "model.hidden" in bad.stderr  # still typed
