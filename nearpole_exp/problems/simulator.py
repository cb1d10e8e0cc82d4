"""Problems whose acquired points each yield a short trajectory of samples, scored by nRMSE.

A *trajectory problem* turns every acquired parameter vector λ (a row of ``params``) into S
training samples that share λ's row as their ``source``. Its evaluation follows docs/architecture.md:
a held-out set of ``n_eval`` points from a randomly shifted Halton design (fixed seed),
labelled once and cached, and per-point normalised RMSE statistics.

nRMSE, exactly. For one sample with prediction p and target y (all output entries, e.g. the
grid of u_{t+1}): e = sqrt(mean((p − y)²)) / max(sqrt(mean(y²)), 1e-6). The score of a held-out
point (a trajectory) is the mean of e over its S samples (its time steps); ``eval/nrmse_*``
are statistics of those per-trajectory scores over the held-out set, and ``eval/mse`` is the
mean of (p − y)² over every entry of every held-out sample.

A *simulator problem* is a trajectory problem backed by a batched solver: ``simulate`` gives
frames u_0…u_T per λ and each step (u_t → u_{t+1}) is one sample whose input stacks u_t with
the box-normalised λ broadcast along the grid.

Blown-up simulations: a trajectory with any non-finite value, or any |u| above
``config.blowup``, is invalid as a whole (the solver failed, so even its early frames are
suspect). ``label`` sets all of its samples to NaN, so ``Pool.add`` drops them and counts
them in ``n_rejected``; the held-out set silently leaves such trajectories out.
"""

from __future__ import annotations

import math
import os
from abc import abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor

from nearpole_exp import metrics
from nearpole_exp.config.schemas import check_fits_memory
from nearpole_exp.designs import halton
from nearpole_exp.errors import ConfigError, check
from nearpole_exp.problems import resolution
from nearpole_exp.problems.base import ModelQ, Predictor, Problem, ProblemCapabilities, Samples
from nearpole_exp.problems.resolution import Requirement

RMS_FLOOR = 1e-6
MAX_SIM_POINTS = 1 << 15
MAX_SUBSTEPS = 10_000


@dataclass
class TrajectoryConfig:
    """Held-out evaluation settings shared by every trajectory problem."""

    n_eval: int = 128
    eval_seed: int = 12345
    eval_batch: int = 4096

    def __post_init__(self) -> None:
        check(self.n_eval >= 2, "n_eval", f"must be at least 2, got {self.n_eval}")
        check_fits_memory("n_eval", self.n_eval, 1024, "held-out trajectories")
        check(self.eval_batch >= 1, "eval_batch", f"must be positive, got {self.eval_batch}")


@dataclass
class SimulatorConfig(TrajectoryConfig):
    """Training grid, horizon and time stepping of a batched 1D simulator.

    ``grid`` is where the surrogate sees the field; the solver runs on ``sim_grid`` points
    (a multiple of ``grid``) with ``substeps`` steps per saved frame (dt = dt_save / substeps).
    Left unset (null), both follow the problem's resolution rule per simulation; set, they must
    resolve the whole box, unless ``allow_under_resolved`` says the run is knowingly not the PDE.
    """

    #: points per side the resolution rule may ask for (a 1-D grid)
    max_sim_points: ClassVar[int] = MAX_SIM_POINTS

    grid: int = 64
    n_steps: int = 25
    dt_save: float = 0.1
    sim_grid: int | None = None
    substeps: int | None = None
    allow_under_resolved: bool = False
    ic_terms: int = 3
    ic_decay: float = 0.0
    amp_low: float = -1.0
    amp_high: float = 1.0
    blowup: float = 1e3

    def __post_init__(self) -> None:
        super().__post_init__()
        check(self.grid >= 8 and self.grid % 2 == 0, "grid",
              f"must be even and at least 8, got {self.grid}")
        check(self.n_steps >= 1, "n_steps", f"must be positive, got {self.n_steps}")
        check(self.dt_save > 0, "dt_save", f"must be positive, got {self.dt_save}")
        if self.sim_grid is not None:
            check(self.sim_grid >= self.grid and self.sim_grid % self.grid == 0, "sim_grid",
                  f"must be a multiple of grid ({self.grid}), got {self.sim_grid}")
        if self.substeps is not None:
            check(self.substeps >= 1, "substeps", f"must be positive, got {self.substeps}")
        check(self.ic_terms >= 1, "ic_terms", f"must be positive, got {self.ic_terms}")
        self.check_ic_band()
        check(math.isfinite(self.ic_decay) and self.ic_decay >= 0, "ic_decay",
              f"must be a finite number >= 0, got {self.ic_decay}")
        for key in ("amp_low", "amp_high", "dt_save"):
            check(math.isfinite(getattr(self, key)), key, f"must be finite, got {getattr(self, key)}")
        check(self.amp_high > self.amp_low, "amp_high",
              f"must exceed amp_low ({self.amp_low}), got {self.amp_high}")
        check(self.blowup > 0, "blowup", f"must be positive, got {self.blowup}")

    def check_ic_band(self) -> None:
        """The initial condition's highest wave must lie in the training grid's dealiased band."""
        top = math.ceil(self.grid / 3) - 1
        check((self.ic_terms + 1) // 2 <= top, "ic_terms",
              f"{self.ic_terms} terms reach wave {(self.ic_terms + 1) // 2}, above the dealiased band "
              f"of grid={self.grid} (wave {top}, {2 * top} terms): raise grid or lower ic_terms")

    def ic_waves(self) -> Tensor:
        """The wave number of each initial-condition term (term j: wave j//2 + 1)."""
        return torch.arange(self.ic_terms, dtype=torch.float64) // 2 + 1

    def ic_bounds(self) -> Tensor:
        """Box of the initial-condition amplitudes, ``[ic_terms, 2]`` (float64): a term of wave
        m ranges over [amp_low, amp_high]·m^−ic_decay, so many terms keep a bounded, smooth
        field (ic_decay 0: every term over the same range)."""
        scale = self.ic_waves() ** -self.ic_decay
        return torch.stack([self.amp_low * scale, self.amp_high * scale], dim=1)

    def box_requirement(self) -> Requirement | None:
        """What the hardest row of the box needs (None: the problem has no resolution rule)."""
        return None

    def resolution_shortfall(self) -> tuple[str, str] | None:
        """(key, message) when a fixed ``sim_grid``/``substeps`` does not resolve the box."""
        req = self.box_requirement()
        if req is None:
            return None
        return resolution.shortfall(req, self.grid, self.dt_save, self.sim_grid, self.substeps)

    def hardest_key(self) -> str:
        """The box setting that makes the hardest row hard (named when the box is unaffordable)."""
        return "grid"

    def plan_rows(self, req: Requirement) -> resolution.Plan:
        """Grid multiple and steps per saved frame of rows needing ``req``. A row outside the box
        (an out-of-bounds or non-finite parameter) gets at most the box's hardest row's
        resolution, so a stray point can never ask for an unbounded grid."""
        box = self.box_requirement()
        if box is not None:
            most, least_dt = float(box.points.max()), float(box.dt.min())
            req = Requirement(
                points=torch.nan_to_num(req.points, nan=most, posinf=most).clamp(max=most),
                dt=torch.nan_to_num(req.dt, nan=least_dt, neginf=least_dt).clamp(min=least_dt))
        return resolution.plan(req, self.grid, self.dt_save, self.sim_grid, self.substeps)

    def resolution_summary(self) -> dict[str, Any]:
        """``problem/under_resolved`` and the hardest row's grid and steps per frame."""
        info: dict[str, Any] = {"problem/under_resolved": self.resolution_shortfall() is not None}
        req = self.box_requirement()
        if req is not None:
            worst = resolution.plan(req, self.grid, self.dt_save, self.sim_grid, self.substeps)
            info["problem/sim_grid_max"] = int(worst.multiple.max()) * self.grid
            info["problem/substeps_max"] = int(worst.substeps.max())
        return info

    def check_resolution(self) -> None:
        """Refuse fixed settings that do not resolve the box, unless the run opted in, and boxes
        whose resolution rule asks for more than ``MAX_SIM_POINTS`` points or ``MAX_SUBSTEPS``
        steps per frame (a stray ν = 1e-6 must not mean a grid of millions)."""
        req = self.box_requirement()
        if req is not None:
            points = float(req.points.max())
            steps = self.dt_save / float(req.dt.min())
            affordable = ((self.sim_grid is not None or points <= self.max_sim_points)
                          and (self.substeps is not None or steps <= MAX_SUBSTEPS))
            check(affordable, self.hardest_key(),
                  f"the box's hardest row needs {points:.3g} points and {steps:.3g} steps per "
                  f"saved frame (limits {self.max_sim_points} and {MAX_SUBSTEPS}): narrow the box, or "
                  "fix sim_grid and substeps with allow_under_resolved=true")
        gap = self.resolution_shortfall()
        if gap is not None and not self.allow_under_resolved:
            key, message = gap
            raise ConfigError(key, f"{message}; leave it unset (null) to follow the resolution "
                                   "rule per simulation, narrow the box, or set "
                                   "allow_under_resolved=true")


def valid_rows(frames: Tensor, blowup: float) -> Tensor:
    """Rows of ``frames`` that are finite and at most ``blowup`` in magnitude everywhere, ``[n]``."""
    flat = frames.flatten(1)
    return torch.isfinite(flat).all(dim=1) & (flat.abs() <= blowup).all(dim=1)


def nrmse(pred: Tensor, target: Tensor) -> Tensor:
    """Per-sample RMSE(pred, target) / max(RMS(target), 1e-6) over all but the first dim."""
    p = (pred.flatten(1) if pred.ndim > 1 else pred[:, None]).double()
    y = (target.flatten(1) if target.ndim > 1 else target[:, None]).double()
    rmse = (p - y).pow(2).mean(dim=1).sqrt()
    return rmse / y.pow(2).mean(dim=1).sqrt().clamp_min(RMS_FLOOR)


class TrajectoryProblem(Problem):
    """Each acquired point yields S samples; evaluated by per-point nRMSE statistics."""

    kind = "simulator"
    capabilities = ProblemCapabilities(simulates=True)

    def __init__(self, config: TrajectoryConfig) -> None:
        self.config = config
        self._eval: tuple[Tensor, Tensor, Tensor] | None = None

    @abstractmethod
    def pairs(self, params: Tensor) -> tuple[Tensor, Tensor]:
        """Inputs ``[n, S, ...]`` and targets ``[n, S, ...]`` (float32; NaN rows where invalid)."""

    def normalized(self, params: Tensor) -> Tensor:
        """Parameters mapped from the box onto [-1, 1] (the models' input convention)."""
        b = self.bounds.to(params.device)
        return (2 * (params.float() - b[:, 0]) / (b[:, 1] - b[:, 0]) - 1).float()

    def label(self, points: Tensor) -> Samples:
        inputs, targets = self.pairs(points)
        n, s = inputs.shape[:2]
        return Samples(inputs=inputs.reshape(n * s, *inputs.shape[2:]),
                       targets=targets.reshape(n * s, *targets.shape[2:]),
                       source=torch.arange(n).repeat_interleave(s))

    def per_sample_signal(self, pred: Tensor, target: Tensor) -> Tensor:
        """nRMSE of each sample (the difficulty signal the runner tells the breeder), ``[m]``."""
        return nrmse(pred, target).to(pred.dtype)

    def eval_params(self) -> Tensor:
        """The held-out points: the scrambled Halton design of ``eval_seed``."""
        unit = halton(0, self.config.n_eval, self.param_dim, self.config.eval_seed)
        b = self.bounds
        return b[:, 0] + unit * (b[:, 1] - b[:, 0])

    def eval_set(self) -> tuple[Tensor, Tensor, Tensor]:
        """(params, inputs ``[n, S, ...]``, targets ``[n, S, ...]``) of valid held-out points."""
        if self._eval is None:
            params = self.eval_params()
            inputs, targets = self.pairs(params)
            flat = torch.cat([inputs.reshape(len(params), -1), targets.reshape(len(params), -1)], 1)
            keep = torch.isfinite(flat).all(dim=1)
            self._eval = (params[keep], inputs[keep], targets[keep])
        return self._eval

    def predict_flat(self, predict: Predictor, inputs: Tensor, shape: torch.Size) -> Tensor:
        """``predict`` over flat samples in chunks of ``eval_batch``, as CPU float64 ``shape``."""
        chunks = []
        with torch.no_grad():
            for chunk in inputs.split(self.config.eval_batch):
                chunks.append(predict(chunk).detach().cpu().double().reshape(len(chunk), -1))
        return torch.cat(chunks).reshape(shape)

    def eval_scores(self, predict: Predictor) -> tuple[Tensor, Tensor, Tensor]:
        """(per-point nRMSE ``[n]``, predictions, targets) on the held-out set."""
        _, inputs, targets = self.eval_set()
        n, s = inputs.shape[:2]
        flat_targets = targets.reshape(n * s, *targets.shape[2:])
        pred = self.predict_flat(predict, inputs.reshape(n * s, *inputs.shape[2:]),
                                 flat_targets.shape)
        per_point = nrmse(pred, flat_targets).reshape(n, s).mean(dim=1)
        return per_point, pred.reshape(targets.shape), targets.double()

    def evaluate(self, predict: Predictor, model_q: ModelQ | None = None) -> dict[str, float]:
        per_point, pred, targets = self.eval_scores(predict)
        out = metrics.trajectory_metrics(per_point)
        out["eval/mse"] = float((pred - targets).pow(2).mean())
        out.update(self.extra_metrics(self.eval_set()[0], per_point))
        return out

    def extra_metrics(self, params: Tensor, per_point: Tensor) -> dict[str, float]:
        """Problem-specific metrics from the held-out points and their nRMSE (none by default)."""
        return {}


class SimulatorProblem(TrajectoryProblem):
    """A batched 1D solver; its samples are one-step pairs (u_t, λ) → u_{t+1}."""

    config: SimulatorConfig

    @abstractmethod
    def simulate(self, params: Tensor) -> Tensor:
        """Frames ``[n, T+1, L]`` (float32, deterministic) for parameter rows ``[n, p]``."""

    def valid(self, frames: Tensor) -> Tensor:
        """Rows whose trajectory is finite and below ``config.blowup`` everywhere, ``[n]``."""
        return valid_rows(frames, self.config.blowup)

    def pairs(self, params: Tensor) -> tuple[Tensor, Tensor]:
        frames = self.simulate(params)
        frames = torch.where(self.valid(frames)[:, None, None], frames, float("nan"))
        n, steps, grid = frames.shape[0], frames.shape[1] - 1, frames.shape[2]
        coeffs = self.normalized(params)[:, None, :, None].expand(n, steps, self.param_dim, grid)
        inputs = torch.cat([frames[:, :-1, None, :], coeffs], dim=2)
        return inputs, frames[:, 1:, None, :]

    def model_dims(self) -> dict[str, Any]:
        return {"in_channels": 1 + self.param_dim, "out_channels": 1, "length": self.config.grid}

    def plots(self, predict: Predictor, outdir: str) -> list[str]:
        """Heat-maps (x across, t down) of truth, one-step prediction and error for the best,
        median and worst held-out trajectories."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        per_point, pred, targets = self.eval_scores(predict)
        order = torch.argsort(per_point)
        picks = {"best": int(order[0]), "median": int(order[len(order) // 2]),
                 "worst": int(order[-1])}
        fig, axes = plt.subplots(len(picks), 3, figsize=(11, 3 * len(picks)), squeeze=False)
        for row, (label, i) in enumerate(picks.items()):
            truth, guess = targets[i, :, 0], pred[i, :, 0]
            lim = float(truth.abs().max())
            panels = (("truth", truth, "RdBu_r", -lim, lim), ("one-step prediction", guess,
                      "RdBu_r", -lim, lim), ("|error|", (guess - truth).abs(), "magma", 0, None))
            for col, (title, img, cmap, lo, hi) in enumerate(panels):
                ax = axes[row, col]
                shown = ax.imshow(img.numpy(), aspect="auto", cmap=cmap, vmin=lo, vmax=hi)
                fig.colorbar(shown, ax=ax)
                ax.set_title(f"{label} (nRMSE {float(per_point[i]):.3g}): {title}", fontsize=8)
                ax.set_xlabel("x index")
                ax.set_ylabel("t index")
        fig.tight_layout()
        path = os.path.join(outdir, f"{self.name}_onestep.png")
        fig.savefig(path, dpi=80)
        plt.close(fig)
        return [path]
