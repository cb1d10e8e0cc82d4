"""Shared fixtures: W&B off by default, a composer for the packaged config, tiny overrides."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

import nearpole_exp.app  # noqa: F401  (registers the schemas)

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"
TINY = ["debug=default", "trainer.progress=false"]


@pytest.fixture(scope="module")
def one_thread() -> Iterator[None]:
    """Small models are fastest (and stable on a shared 2-core box) with one intra-op thread."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(autouse=True)
def _quiet_wandb(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """No network, no global W&B state: disabled unless a test asks for offline."""
    wandb_home = tmp_path_factory.mktemp("wandb_home")
    monkeypatch.setenv("WANDB_MODE", "disabled")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    for var in ("WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR"):
        monkeypatch.setenv(var, str(wandb_home))
    monkeypatch.setenv("NETRC", str(wandb_home / "netrc-absent"))


def compose_config(overrides: list[str], output_dir: Path) -> DictConfig:
    """Compose the packaged config as Hydra would for a run in ``output_dir``."""
    GlobalHydra.instance().clear()
    with initialize_config_module("nearpole_exp.conf", version_base="1.3"):
        cfg = compose("config", overrides=[*overrides, f"hydra.run.dir={output_dir}"],
                      return_hydra_config=True)
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(output_dir)
        cfg.hydra.job.num = 0
    HydraConfig.instance().set_config(cfg)
    return cfg


@pytest.fixture
def composer(tmp_path: Path) -> Iterator[Callable[..., DictConfig]]:
    """``composer(overrides, name)`` → a composed config whose job directory is under tmp_path."""

    def _compose(overrides: list[str], name: str = "job") -> DictConfig:
        out = tmp_path / name
        out.mkdir(parents=True, exist_ok=True)
        return compose_config(overrides, out)

    yield _compose
    GlobalHydra.instance().clear()


def group_options(group: str) -> list[str]:
    """Every YAML option of a config group, read from conf/."""
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))


def subprocess_env() -> dict[str, str]:
    """Environment for ``python -m nearpole_exp`` subprocesses (no W&B network, fast exit)."""
    env = dict(os.environ)
    env.update({"WANDB_SILENT": "true", "COLUMNS": "120", "HYDRA_FULL_ERROR": "0"})
    # An in-process W&B run of an earlier test leaves its service address here; a child would
    # join that service, which still holds the streams of children killed by a test.
    env.pop("WANDB_SERVICE", None)
    return env


@pytest.fixture
def cli(capfd: pytest.CaptureFixture[str]) -> Callable[..., tuple[int, str, str]]:
    """``cli(*args)`` → (exit code, stdout, stderr) of ``python -m nearpole_exp args``, run in this
    process through the console entry point (the same code path, without a new interpreter)."""
    from nearpole_exp.__main__ import main

    def _run(*args: str) -> tuple[int, str, str]:
        GlobalHydra.instance().clear()
        capfd.readouterr()
        try:
            main([*args, "logger=none", "trainer.progress=false"])
            code = 0
        except SystemExit as stop:
            code = int(stop.code or 0)
        finally:
            GlobalHydra.instance().clear()
        out, err = capfd.readouterr()
        return code, out, err

    return _run


def run_interrupted_then_resumed(composer: Callable[..., DictConfig],
                                 monkeypatch: pytest.MonkeyPatch, overrides: list[str],
                                 stop_after: int, name: str = "interrupted") -> dict:
    """A run stopped as Ctrl-C would stop it after ``stop_after`` training steps, then resumed
    in its own directory; returns the resumed run's summary."""
    from nearpole_exp.runner import Runner

    cfg = composer(overrides, name)
    out = Path(cfg.hydra.runtime.output_dir)
    crashing = Runner(cfg, out)
    original, calls = crashing.train_step, {"n": 0}

    def stop_mid_run() -> dict:
        calls["n"] += 1
        if calls["n"] > stop_after:
            raise KeyboardInterrupt
        return original()

    monkeypatch.setattr(crashing, "train_step", stop_mid_run)
    with pytest.raises(KeyboardInterrupt):
        crashing.run()
    return Runner(composer(overrides, name), out).run()
