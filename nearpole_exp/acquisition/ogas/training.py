"""The generator's training: the DDPM and the ratio classifier, the frozen data they train on and
one training step. It runs in the breeder's thread, on a background thread or in a child process
(trainer_process.py); its ``state_dict`` is what a process hands back."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import torch
from torch import Tensor

from nearpole_exp.acquisition.ogas.config import ExperimentConfig
from nearpole_exp.acquisition.ogas.ddpm import ConditionalDDPM
from nearpole_exp.acquisition.ogas.ratio import RatioEstimator
from nearpole_exp.rng import load_generator_state

MAX_LOSS_POINTS = 4000


@dataclasses.dataclass(frozen=True)
class TrainingData:
    """The reservoir as it was when training was scheduled: what the DDPM's steps draw from."""

    unit: Tensor
    cond: Tensor
    is_bred: Tensor
    bred_fraction: float

    def state_dict(self) -> dict[str, Any]:
        return {"unit": self.unit, "cond": self.cond, "is_bred": self.is_bred,
                "bred_fraction": self.bred_fraction}

    @classmethod
    def from_state(cls, state: dict[str, Any] | None) -> TrainingData | None:
        if state is None:
            return None
        return cls(torch.as_tensor(state["unit"]), torch.as_tensor(state["cond"]),
                   torch.as_tensor(state["is_bred"]), float(state["bred_fraction"]))


class GeneratorTraining:
    """The DDPM, the ratio classifier (``learn_sampling_ratio``) and what their steps record:
    the DDPM loss (EMA and a thinned curve) and the classifier's ESS per step (``ess_seen``,
    handed to the breed-ratio controller before each generation)."""

    def __init__(self, dim: int, config: ExperimentConfig, device: torch.device,
                 train_generator: torch.Generator, batch_generator: torch.Generator) -> None:
        bc = config.breeder
        self.config = config
        self.train_generator, self.batch_generator = train_generator, batch_generator
        self.ddpm = ConditionalDDPM(dim, config.model, device)
        self.ratio = (
            RatioEstimator(dim, bc.ratio_mlp_hidden_dim, bc.ratio_mlp_dropout,
                           bc.ratio_mlp_weight_decay, bc.ratio_mlp_label_smoothing,
                           bc.ratio_mlp_lr, device)
            if bc.learn_sampling_ratio else None
        )
        self.ddpm_loss = float("nan")
        self.ratio_ess = 1.0
        self.loss_stride = 1
        self.loss_curve: list[list[float]] = []
        self.ess_seen: list[float] = []

    def step(self, data: TrainingData | None) -> bool:
        """One ratio-MLP step and one weighted DDPM step on a batch of ``data``; False if there
        is none."""
        bc, dc = self.config.breeder, self.config.data
        if data is None:
            return False
        if bc.train_only_with_non_breed_samples:
            pool = torch.nonzero(~data.is_bred)[:, 0]
            if pool.numel() == 0:
                return False
            idx = pool[torch.randint(0, pool.numel(), (dc.batch_size,),
                                     generator=self.batch_generator)]
        else:
            idx = torch.randint(0, data.unit.shape[0], (dc.batch_size,),
                                generator=self.batch_generator)
        cond, unit, is_bred = data.cond[idx], data.unit[idx], data.is_bred[idx]
        weights = None
        if self.ratio is not None and 0.0 < data.bred_fraction < 1.0:
            self.ratio.step(unit, is_bred)
            weights, ess = self.ratio.weights(unit, data.bred_fraction, bc.ratio_clip)
            self.ratio_ess = ess
            self.ess_seen.append(ess)
        loss = self.ddpm.train_step(unit, cond, weights, self.train_generator)
        if not math.isfinite(loss):
            raise FloatingPointError(f"the OGAS DDPM's loss became {loss} at step "
                                     f"{self.ddpm.steps}: lower ogas.model.lr")
        prev = self.ddpm_loss
        self.ddpm_loss = loss if math.isnan(prev) else 0.9 * prev + 0.1 * loss
        if self.ddpm.steps % (bc.loss_log_every * self.loss_stride) == 0:
            self.loss_curve.append([float(self.ddpm.steps), loss])
            if len(self.loss_curve) > MAX_LOSS_POINTS:  # thin the curve so long runs stay small
                self.loss_curve = self.loss_curve[1::2]
                self.loss_stride *= 2
        return True

    def take_ess(self) -> list[float]:
        """The ESS of the steps since the last call (for the breed-ratio controller)."""
        seen, self.ess_seen = self.ess_seen, []
        return seen

    def state_dict(self) -> dict[str, Any]:
        return {
            "ddpm": self.ddpm.state_dict(),
            "ratio": None if self.ratio is None else self.ratio.state_dict(),
            "train": self.train_generator.get_state(),
            "batch": self.batch_generator.get_state(),
            "ddpm_loss": self.ddpm_loss, "ratio_ess": self.ratio_ess,
            "loss_stride": self.loss_stride,
            "loss_curve": [list(p) for p in self.loss_curve],
            "ess_seen": list(self.ess_seen),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.ddpm.load_state_dict(state["ddpm"])
        if self.ratio is not None:
            self.ratio.load_state_dict(state["ratio"])
        load_generator_state(self.train_generator, state["train"])
        load_generator_state(self.batch_generator, state["batch"])
        self.ddpm_loss = float(state["ddpm_loss"])
        self.ratio_ess = float(state["ratio_ess"])
        self.loss_stride = int(state["loss_stride"])
        self.loss_curve = [list(p) for p in state["loss_curve"]]
        self.ess_seen = [float(v) for v in state.get("ess_seen", [])]
