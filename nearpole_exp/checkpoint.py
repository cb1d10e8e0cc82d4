"""Checkpoints: every component's ``state_dict`` in one file, loadable with ``weights_only``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from nearpole_exp.atomic import save_torch

FORMAT_VERSION = 1


def save_checkpoint(states: dict[str, Any], path: str | Path) -> None:
    """Write ``{"version", **states}`` atomically (a kill mid-write keeps the old file)."""
    save_torch({"version": FORMAT_VERSION, **states}, path)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint on the CPU with ``weights_only=True``; checks the format version."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    version = state.get("version")
    if version != FORMAT_VERSION:
        raise ValueError(f"{path}: checkpoint format {version} is not supported (expected {FORMAT_VERSION})")
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
        raise FileNotFoundError(f"resume: no checkpoint at {candidate}")
    return candidate
