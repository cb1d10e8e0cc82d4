"""The non-editable wheel ships the config: ``python -m nearpole_exp`` works from any directory."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import nearpole_exp

from .conftest import subprocess_env

ROOT = Path(__file__).resolve().parents[1]


def test_wheel_ships_config_and_runs_from_elsewhere(tmp_path: Path) -> None:
    wheel_dir, site = tmp_path / "wheel", tmp_path / "site"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(wheel_dir), str(ROOT)],
                   check=True, capture_output=True, timeout=300)
    wheel = next(wheel_dir.glob("nearpole_exp-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert "nearpole_exp/py.typed" in names and any(n.endswith("/licenses/LICENSE") for n in names)
    metadata = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("/METADATA"))).decode()
    assert "License-Expression: MIT" in metadata
    assert f"Version: {nearpole_exp.__version__}" in metadata  # the one version, from __init__
    subprocess.run([*pip, "install", "--no-deps", "--target", str(site), str(wheel)],
                   check=True, capture_output=True, timeout=300)
    env = subprocess_env()
    env["PYTHONPATH"] = str(site)
    where = subprocess.run([sys.executable, "-c", "import nearpole_exp; print(nearpole_exp.__file__)"],
                           cwd=tmp_path, env=env, capture_output=True, text=True, check=True)
    assert where.stdout.strip().startswith(str(site))
    info = subprocess.run([sys.executable, "-m", "nearpole_exp", "--info", "searchpath"], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=120, check=True)
    assert "pkg://nearpole_exp.conf" in info.stdout
    groups = subprocess.run([sys.executable, "-m", "nearpole_exp", "--help"], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=120, check=True)
    for option in ("problem: ", "rational1d", "sampler: ", "uniform"):
        assert option in groups.stdout
