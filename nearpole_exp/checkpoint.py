"""Checkpoints: every component's ``state_dict`` in one file, loadable with ``weights_only``."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from nearpole_exp.atomic import save_torch
from nearpole_exp.config.schemas import is_non_defining
from nearpole_exp.errors import CheckpointError, ConfigError

FORMAT_VERSION = 1

log = logging.getLogger(__name__)


def save_checkpoint(states: dict[str, Any], path: str | Path) -> None:
    """Write ``{"version", **states}`` atomically (a kill mid-write keeps the old file)."""
    save_torch({"version": FORMAT_VERSION, **states}, path)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint on the CPU with ``weights_only=True``; checks the format version. A file
    that is not a readable checkpoint raises :class:`CheckpointError` saying what to do."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as err:  # torch's own message suggests weights_only=False: unsafe, not said
        raise CheckpointError(f"{path} is corrupt or truncated (torch.load: {type(err).__name__}); "
                              "delete it to start "
                              "afresh, or pass resume=never or resume=<another checkpoint>") from None
    version = state.get("version") if isinstance(state, dict) else None
    if version != FORMAT_VERSION:
        raise CheckpointError(f"{path}: checkpoint format {version} is not supported "
                              f"(expected {FORMAT_VERSION}); pass resume=never to start afresh")
    return state


def find_checkpoint(resume: str, output_dir: str | Path) -> Path | None:
    """The checkpoint to resume from: ``auto`` = this job's last.pt if present; a path = that."""
    if resume == "never":
        return None
    if resume == "auto":
        candidate = Path(output_dir) / "checkpoints" / "last.pt"
        return candidate if candidate.exists() else None
    candidate = Path(resume)
    if candidate.is_dir():
        candidate = candidate / "checkpoints" / "last.pt"
    if not candidate.exists():
        raise CheckpointError(f"resume: no checkpoint at {candidate} (give a job directory or a "
                              ".pt file, or resume=never)")
    return candidate


def _flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(node, dict):
        out: dict[str, Any] = {}
        for key, value in node.items():
            out.update(_flatten(value, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: node}


def config_fingerprint(cfg: DictConfig) -> dict[str, Any]:
    """The settings a checkpoint depends on: everything but logging, paths and devices."""
    flat = _flatten(OmegaConf.to_container(cfg, resolve=False))
    return {k: str(v) for k, v in flat.items() if not is_non_defining(k)}


def check_resumable(saved: dict[str, Any] | None, current: dict[str, Any], path: Path,
                    same_version: bool = True) -> None:
    """Refuse to continue a checkpoint written under different settings (it would mix two runs).

    A checkpoint of another package version may lack settings added since, or hold settings
    removed since: those are schema changes, not the user's, and are logged, not refused."""
    if saved is None:
        return
    keys = set(saved) | set(current)
    if not same_version:
        schema = sorted(keys - (set(saved) & set(current)))
        if schema:
            log.warning("%s was written by another version of nearpole_exp; settings added or "
                        "removed since are ignored: %s", path, ", ".join(schema[:8]))
        keys = set(saved) & set(current)
    changed = sorted(k for k in keys if saved.get(k) != current.get(k))
    if changed:
        shown = ", ".join(f"{k}: {saved.get(k)} -> {current.get(k)}" for k in changed[:6])
        raise ConfigError("resume", f"{path} was written with other settings ({shown}); "
                                    "use resume=never or another hydra.run.dir")


def migrate(state: dict[str, Any]) -> dict[str, Any]:
    """A checkpoint of an earlier layout in today's: the pool's simulation ids (once the runner's
    ``breeder_ids``), its draw counts (once the sampler's) and the breeder's time (once the loop's)."""
    state = dict(state)
    if "breeder_ids" in state:
        state["pool"] = {**state["pool"], "point_sim_ids": state.pop("breeder_ids")}
    sampler = state.get("sampler") or {}
    draws = sampler.get("draws") or (sampler.get("importance") or {}).get("draws")
    if draws is not None and "draws" not in state["pool"]:
        state["pool"] = {**state["pool"], "draws": draws}
    loop = dict(state["loop"])
    if "breeder_s" in loop:
        state.setdefault("acquisition", {"breeder_s": loop.pop("breeder_s")})
        loop.pop("breeder_s", None)
        state["loop"] = loop
    return state
