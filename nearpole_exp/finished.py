"""A finished (or checkpointed) job directory back in Python: its config, problem and trained model.

    from nearpole_exp import load_run
    run = load_run("outputs/nearpole/runs/2026-12-04_17-20-00")
    y = run.predict(x)                    # the trained model, eval mode, no gradients
    run.summary["eval/mse"], run.config.sampler._target_
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from torch import Tensor

from nearpole_exp.checkpoint import load_checkpoint
from nearpole_exp.config.discovery import restore_schema
from nearpole_exp.errors import CheckpointError, OutputError
from nearpole_exp.problems.base import Problem


@dataclass
class FinishedRun:
    """What :func:`load_run` returns; ``model`` is in eval mode on the CPU in the run's precision."""

    path: Path
    config: DictConfig
    problem: Problem
    model: torch.nn.Module
    summary: dict[str, Any] = field(default_factory=dict)

    def predict(self, inputs: Tensor) -> Tensor:
        """The model's prediction at ``inputs`` (cast to the model's dtype), without gradients."""
        dtype = next(self.model.parameters()).dtype
        with torch.no_grad():
            return self.model(inputs.to(dtype))


def load_run(job_dir: str | Path, checkpoint: str | Path | None = None) -> FinishedRun:
    """Rebuild a job's problem and model from ``<job_dir>/.hydra/config.yaml`` and load the
    model's weights from ``checkpoints/last.pt`` (or ``checkpoint``)."""
    from nearpole_exp.build import build_model, build_problem, non_finite_parameters

    root = Path(job_dir)
    saved = root / ".hydra" / "config.yaml"
    if not saved.is_file():
        raise FileNotFoundError(f"{root} is not a job directory: no .hydra/config.yaml")
    path = Path(checkpoint) if checkpoint is not None else root / "checkpoints" / "last.pt"
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}: the job saved none (or give checkpoint=)")
    raw = OmegaConf.load(saved)
    raw.pop("hydra", None)  # a config saved with its hydra node (not Hydra's own job config)
    cfg = restore_schema(raw)
    state = load_checkpoint(path)
    broken = non_finite_parameters(state["model"])
    if broken:
        raise CheckpointError(f"{path}: the model holds NaN or inf ({', '.join(broken[:4])})")
    problem = build_problem(cfg.problem)
    dtype = torch.float64 if cfg.trainer.precision == "float64" else torch.float32
    model = build_model(cfg.model, problem.model_dims()).to(dtype=dtype)
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as err:  # the saved config no longer builds the model that was trained
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(f"{path} does not fit the model that {saved} now builds ({first}); "
                              "was the config edited, or written by another version?") from None
    model.eval()
    return FinishedRun(root, cfg, problem, model, _read_summary(root / "summary.json"))


def _read_summary(path: Path) -> dict[str, Any]:
    """A job's summary.json ({} when there is none); a damaged one is an error naming it."""
    if not path.is_file():
        return {}
    try:
        summary = json.loads(path.read_text())
    except ValueError as err:
        raise OutputError(f"{path} is not valid JSON ({err}); the run may have been killed while "
                          "writing it") from None
    if not isinstance(summary, dict):
        raise OutputError(f"{path} holds {type(summary).__name__}, not a JSON object")
    return summary
