"""Two-dimensional simulators: batched pseudo-spectral solvers on an N×N periodic grid.

A parameter row λ = (physical coefficients, c_1…c_k) gives frames u_0…u_T of C fields on the
``grid``² training grid; each step (u_t, λ) → u_{t+1} is one sample. The input is stored flat,
``[C·N·N + d]`` (the fields, then λ mapped onto [−1, 1]), not with λ broadcast as grid channels:
at d = 100 and 64² that would be 1.6 MB a sample. The 2-D models (``model=fno2d``, ``unet2d``)
split it again. The initial condition is Σ c_j φ_j over a 2-D real Fourier basis ordered by
wave number (``spectral2d.fourier_modes2d``), and each row is solved on the grid its resolution
rule asks for (``sim_grid``/``substeps`` null), like the 1-D simulators.
"""

from __future__ import annotations

import logging
import os
from abc import abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor

from nearpole_exp.errors import check
from nearpole_exp.problems import resolution, spectral2d
from nearpole_exp.problems.base import ModelQ, Predictor, Samples
from nearpole_exp.problems.resolution import Plan, Requirement
from nearpole_exp.problems.simulator import SimulatorConfig, TrajectoryProblem, nrmse, valid_rows
from nearpole_exp.problems.spectral import top_mode

log = logging.getLogger(__name__)

#: points per side a 2-D resolution rule may ask for (512² fields of 8 bytes: 2 MB a row)
MAX_SIM_POINTS_2D = 512


@dataclass
class Simulator2DConfig(SimulatorConfig):
    """Training grid (points per side), horizon, time stepping and initial condition of a 2-D
    simulator; ``ic_terms`` counts 2-D Fourier terms (sin and cos of each wave vector)."""

    max_sim_points: ClassVar[int] = MAX_SIM_POINTS_2D

    grid: int = 32
    n_steps: int = 20
    dt_save: float = 0.5
    ic_terms: int = 8
    ic_decay: float = 1.0
    n_eval: int = 128
    # training loss over this many steps: 1, the one-step loss; 2, the paper's two-step loss
    # ½(ℓ(f(u_t), u_{t+1}) + ℓ(f(f(u_t)), u_{t+2})), each training sample then carrying both
    # targets (the held-out scores stay one-step)
    unroll: int = 1

    def __post_init__(self) -> None:
        super().__post_init__()
        check(self.unroll in (1, 2), "unroll", f"must be 1 or 2, got {self.unroll}")
        check(self.n_steps >= self.unroll, "n_steps",
              f"must be at least unroll ({self.unroll}), got {self.n_steps}")

    def check_ic_band(self) -> None:
        top = top_mode(self.grid)
        reach = max(max(abs(mx), abs(my)) for mx, my, _ in spectral2d.fourier_modes2d(self.ic_terms))
        check(reach <= top, "ic_terms",
              f"{self.ic_terms} terms reach wave {reach} along an axis, above the dealiased band "
              f"of grid={self.grid} (wave {top}): raise grid or lower ic_terms")

    def ic_waves(self) -> Tensor:
        return spectral2d.mode_wave(self.ic_terms)


class Simulator2DProblem(TrajectoryProblem):
    """A batched 2-D solver of v̂_t = L v̂ + N(v̂) for ``species`` fields, resolved per row."""

    config: Simulator2DConfig
    species: ClassVar[int] = 1

    def __init__(self, config: Simulator2DConfig) -> None:
        super().__init__(config)
        gap = config.resolution_shortfall()
        if gap is not None:
            log.warning("%s is under-resolved by choice (allow_under_resolved): %s: %s",
                        self.name, *gap)

    # ------------------------------------------------------------------ the equation
    @abstractmethod
    def domain_length(self, params: Tensor) -> Tensor:
        """Side of the square domain of each row, ``[n]`` (float64)."""

    @abstractmethod
    def linear_operator(self, kx: Tensor, ky: Tensor, params: Tensor) -> Tensor:
        """Diagonal L of each row and species, ``[n, C, N, N/2+1]`` (float64)."""

    @abstractmethod
    def nonlinear(self, v: Tensor, kx: Tensor, ky: Tensor, params: Tensor) -> Tensor:
        """N(v̂) of the spectra ``v`` ``[n, C, N, N/2+1]`` (before dealiasing)."""

    @abstractmethod
    def requirement(self, params: Tensor) -> Requirement:
        """Points per side and time step each row needs to be resolved."""

    def initial_condition(self, params: Tensor, n_grid: int) -> Tensor:
        """u_0 ``[n, C, N, N]``: Σ c_j φ_j in species 0 (the others zero)."""
        k = self.config.ic_terms
        basis = spectral2d.fourier_basis2d(k, n_grid).reshape(k, -1)
        u0 = torch.zeros(len(params), self.species, n_grid, n_grid, dtype=torch.float64)
        u0[:, 0] = (params[:, -k:].double() @ basis).reshape(-1, n_grid, n_grid)
        return u0

    # ------------------------------------------------------------------ solving
    def plan(self, params: Tensor) -> Plan:
        """The grid multiple and steps per saved frame of each row (bounded by the box's
        hardest row: ``SimulatorConfig.plan_rows``)."""
        return self.config.plan_rows(self.requirement(params.detach().cpu()))

    def evolve(self, params: Tensor, multiple: int, substeps: int) -> Tensor:
        """Frames ``[n, T+1, C, grid, grid]`` (float64) of rows solved on ``multiple·grid``
        points per side with ``substeps`` ETDRK4 steps per saved frame."""
        cfg = self.config
        n_grid = multiple * cfg.grid
        kx, ky = spectral2d.wavenumbers2d(n_grid, self.domain_length(params))
        lin = self.linear_operator(kx, ky, params)
        return spectral2d.integrate2d(
            self.initial_condition(params, n_grid), lin,
            lambda v: self.nonlinear(v, kx, ky, params), cfg.dt_save / substeps, substeps,
            cfg.n_steps, multiple)

    def solve(self, params: Tensor) -> Tensor:
        """Resolved frames at the training grid, ``[n, T+1, C, grid, grid]`` (float64); rows
        with the same plan are solved as one batch."""
        cfg = self.config
        params = params.detach().cpu()
        frames = torch.empty(len(params), cfg.n_steps + 1, self.species, cfg.grid, cfg.grid,
                             dtype=torch.float64)
        if len(params) == 0:
            return frames
        for rows, m, s in resolution.row_groups(self.plan(params)):
            frames[rows] = self.evolve(params[rows], m, s)
        return frames

    def simulate(self, params: Tensor) -> Tensor:
        return self.solve(params).float()

    def valid(self, frames: Tensor) -> Tensor:
        """Rows whose trajectory is finite and below ``config.blowup`` everywhere, ``[n]``."""
        return valid_rows(frames, self.config.blowup)

    # ------------------------------------------------------------------ samples
    def pairs(self, params: Tensor) -> tuple[Tensor, Tensor]:
        """Inputs ``[n, T, C·N·N + d]`` (field, then normalised λ) and targets ``[n, T, C, N, N]``."""
        frames = self.simulate(params)
        frames = torch.where(self.valid(frames)[:, None, None, None, None], frames, float("nan"))
        n, steps = frames.shape[0], frames.shape[1] - 1
        lam = self.normalized(params)[:, None, :].expand(n, steps, self.param_dim)
        inputs = torch.cat([frames[:, :-1].flatten(2), lam], dim=2)
        return inputs, frames[:, 1:]

    def rollout_scores(self, predict: Predictor) -> Tensor:
        """nRMSE of the surrogate's autoregressive rollout from u_0 against u_1…u_T, per held-out
        trajectory and step, ``[n, T]``: each step's input is the previous prediction."""
        _, inputs, targets = self.eval_set()
        n, steps = targets.shape[:2]
        size = inputs.shape[-1] - self.param_dim
        state, lam = inputs[:, 0, :size], inputs[:, 0, size:]
        scores = torch.empty(n, steps, dtype=torch.float64)
        with torch.no_grad():
            for t in range(steps):
                pred = self.predict_flat(predict, torch.cat([state, lam], dim=1),
                                         targets[:, t].shape)
                scores[:, t] = nrmse(pred, targets[:, t])
                state = pred.reshape(n, -1).to(inputs.dtype)
        return scores

    def evaluate(self, predict: Predictor, model_q: ModelQ | None = None) -> dict[str, float]:
        """The one-step tails, and the rollout's: ``eval/rollout_nrmse_mean`` (over steps and
        trajectories) and ``eval/rollout_nrmse_final_max`` (the worst trajectory's last step)."""
        out = super().evaluate(predict, model_q)
        rollout = self.rollout_scores(predict)
        out["eval/rollout_nrmse_mean"] = float(rollout.mean())
        out["eval/rollout_nrmse_final_p50"] = float(rollout[:, -1].median())
        out["eval/rollout_nrmse_final_max"] = float(rollout[:, -1].max())
        return out

    def label(self, points: Tensor) -> Samples:
        """Training samples: one-step pairs, or with ``unroll=2`` targets ``[2, C, N, N]``
        (u_{t+1}, u_{t+2}) for the inputs u_t, t < T − 1."""
        if self.config.unroll == 1:
            return super().label(points)
        inputs, targets = self.pairs(points)
        inputs, targets = inputs[:, :-1], torch.stack([targets[:, :-1], targets[:, 1:]], dim=2)
        n, s = inputs.shape[:2]
        return Samples(inputs=inputs.reshape(n * s, -1),
                       targets=targets.reshape(n * s, *targets.shape[2:]),
                       source=torch.arange(n).repeat_interleave(s))

    def per_sample_signal(self, pred: Tensor, target: Tensor) -> Tensor:
        """The one-step nRMSE of each sample (the first target of a two-step sample)."""
        if target.ndim == pred.ndim + 1:
            target = target[:, 0]
        return super().per_sample_signal(pred, target)

    def model_dims(self) -> dict[str, Any]:
        return {"channels": self.species, "grid": self.config.grid, "n_params": self.param_dim}

    def summary_info(self) -> dict[str, Any]:
        return self.config.resolution_summary()

    def plots(self, predict: Predictor, outdir: str) -> list[str]:
        """Truth, one-step prediction and error at the last frame of the best, median and
        worst held-out trajectories (species 0)."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        per_point, pred, targets = self.eval_scores(predict)
        order = torch.argsort(per_point)
        picks = {"best": int(order[0]), "median": int(order[len(order) // 2]),
                 "worst": int(order[-1])}
        fig, axes = plt.subplots(len(picks), 3, figsize=(10, 3.2 * len(picks)), squeeze=False)
        for row, (label, i) in enumerate(picks.items()):
            truth, guess = targets[i, -1, 0], pred[i, -1, 0]
            lim = float(truth.abs().max())
            for col, (title, img, cmap, lo, hi) in enumerate((
                    ("truth", truth, "RdBu_r", -lim, lim),
                    ("one-step prediction", guess, "RdBu_r", -lim, lim),
                    ("|error|", (guess - truth).abs(), "magma", 0, None))):
                shown = axes[row, col].imshow(img.numpy(), cmap=cmap, vmin=lo, vmax=hi)
                fig.colorbar(shown, ax=axes[row, col])
                axes[row, col].set_title(f"{label} (nRMSE {float(per_point[i]):.3g}): {title}",
                                         fontsize=8)
        fig.tight_layout()
        path = os.path.join(outdir, f"{self.name}_onestep.png")
        fig.savefig(path, dpi=80)
        plt.close(fig)
        return [path]


def gradient_squared(v: Tensor, kx: Tensor, ky: Tensor, n_grid: int) -> Tensor:
    """|∇u|² on the grid of the field whose spectrum is ``v``."""
    ux = torch.fft.irfft2(1j * kx * v, s=(n_grid, n_grid))
    uy = torch.fft.irfft2(1j * ky * v, s=(n_grid, n_grid))
    return ux * ux + uy * uy


def side_points(length: Tensor, spacing: float) -> Tensor:
    """Points per side for a grid spacing of at most ``spacing``."""
    return torch.ceil(length.double() / spacing)

