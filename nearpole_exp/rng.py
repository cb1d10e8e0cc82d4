"""Seeding: one global seed, applied before anything is built, and per-component generators."""

from __future__ import annotations

import logging
import random
from typing import Any

import numpy as np
import torch
from torch import Tensor

log = logging.getLogger(__name__)


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices) from one integer."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def child_generator(device: str | torch.device = "cpu") -> torch.Generator:
    """A generator on ``device`` seeded from the global torch RNG, so one seed fixes it."""
    seed = int(torch.randint(0, 2**62, (1,)).item())
    return torch.Generator(device=device).manual_seed(seed)


def rng_state() -> dict[str, object]:
    """The global RNG states, as tensors and plain types (loadable with ``weights_only``)."""
    state: dict[str, object] = {
        "python": list(random.getstate()[1]),
        "python_version": random.getstate()[0],
        "python_gauss": random.getstate()[2],
        "numpy": torch.from_numpy(np.random.get_state()[1].astype(np.int64)),
        "numpy_pos": int(np.random.get_state()[2]),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, object]) -> None:
    """Restore what :func:`rng_state` captured."""
    random.setstate((state["python_version"], tuple(state["python"]), state["python_gauss"]))
    keys = state["numpy"].numpy().astype(np.uint32)  # type: ignore[union-attr]
    np.random.set_state(("MT19937", keys, int(state["numpy_pos"]), 0, 0.0))  # type: ignore[arg-type]
    torch.set_rng_state(state["torch"])  # type: ignore[arg-type]
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])  # type: ignore[arg-type]


def resolve_device(device: torch.device | str | None, like: Tensor | None = None) -> torch.device:
    """A concrete ``torch.device`` (CUDA with its index), defaulting to ``like``'s device."""
    if device is None:
        device = like.device if like is not None else torch.device("cpu")
    device = torch.device(device)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    return device


def generator_state(gen: torch.Generator | None) -> dict[str, Any]:
    """A generator's state and device as tensors/strings (``weights_only``-loadable)."""
    if gen is None:
        return {"generator": None, "generator_device": None}
    return {"generator": gen.get_state(), "generator_device": str(gen.device)}


def load_generator_state(generator: torch.Generator, state: Tensor) -> None:
    """Restore ``state`` into ``generator``; a state from another device type (CPU and CUDA
    layouts differ) reseeds it deterministically from the saved bytes instead, with a warning."""
    if state.numel() == generator.get_state().numel():
        generator.set_state(state)
        return
    seed = int.from_bytes(bytes(state[:8].tolist()), "little") % 2**63
    log.warning("generator state from another device type; reseeding with %d, "
                "draws will differ from the original run", seed)
    generator.manual_seed(seed)


def restore_generator(state: dict[str, Any]) -> torch.Generator | None:
    """Rebuild a generator saved by :func:`generator_state` on its own device (the CPU when that
    device is gone)."""
    if state.get("generator") is None:
        return None
    device = torch.device(state.get("generator_device") or "cpu")
    if device.type == "cuda" and not torch.cuda.is_available():
        device = torch.device("cpu")
    gen = torch.Generator(device=device)
    load_generator_state(gen, state["generator"])
    return gen
