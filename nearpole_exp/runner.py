"""The generic loop of docs/architecture.md: acquire → label → train with per-sample losses →
evaluate → report → checkpoint. Pole problems and simulators run through the same code; the loop
asks each component what it can do (declared capabilities), never probes for methods."""

from __future__ import annotations

import logging
import math
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from hydra.errors import InstantiationException
from hydra.utils import get_class, instantiate
from omegaconf import DictConfig, OmegaConf
from torch import Tensor

from nearpole_exp.acquisition.base import Breeder
from nearpole_exp.acquisition.feed import SimulationFeed
from nearpole_exp.acquisition.placement import PlacementLog
from nearpole_exp.adamw import AdamW
from nearpole_exp.checkpoint import (
    check_resumable,
    config_fingerprint,
    find_checkpoint,
    load_checkpoint,
    save_checkpoint,
)
from nearpole_exp.config import TrainerConfig, accepts_keywords, model_options
from nearpole_exp.errors import CheckpointError, ConfigError, Terminated
from nearpole_exp.execution.samples import merge_results
from nearpole_exp.joblock import JobDirectoryLock
from nearpole_exp.models.base import capabilities
from nearpole_exp.models.losses import per_sample_loss, residual_loss
from nearpole_exp.models.rational import hybrid_divide
from nearpole_exp.pool import NO_SIM, Pool
from nearpole_exp.problems.base import Problem
from nearpole_exp.problems.poles import model_q
from nearpole_exp.reporting import plots
from nearpole_exp.reporting.console import progress, to_log_file
from nearpole_exp.reporting.reporter import Reporter
from nearpole_exp.rng import child_generator, rng_state, seed_everything, set_rng_state

log = logging.getLogger(__name__)


@dataclass
class LoopState:
    """Where the loop is; saved in every checkpoint."""

    round: int = 0
    step: int = 0
    wall_s: float = 0.0
    breeder_s: float = 0.0
    skipped_steps: int = 0


def pick_device(name: str) -> torch.device:
    """``auto`` picks CUDA when present, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def has_target(node: Any) -> bool:
    """Whether a config node names something to build (``none`` options are empty)."""
    return OmegaConf.is_config(node) and "_target_" in node


def build_breeder(ogas: DictConfig, bounds: Tensor) -> Breeder:
    """The acquisition breeder; OGAS-style breeders also get the ``ogas/model`` and ``ogas/data`` parts."""
    node = ogas.breeder
    parts = get_class(node._target_).config_parts
    extra = {part: OmegaConf.to_object(ogas[part]) for part in parts
             if part in ogas and OmegaConf.is_config(ogas[part])}
    return build(node, "ogas.breeder", bounds=bounds, **extra)


def build_model(node: DictConfig, dims: dict[str, Any]) -> torch.nn.Module:
    """The model for a problem's dimensions; a model that cannot take them (a pole problem's
    features vs a simulator's channels), or a bad value that only the dimensions reveal (e.g.
    ``context_dims`` beyond the inputs), raises a ConfigError keyed under ``model``."""
    if not accepts_keywords(str(node._target_), dims):
        fitting = sorted(name for name, target in model_options().items() if accepts_keywords(target, dims))
        raise ConfigError("model", f"{node._target_} cannot take this problem's inputs "
                          f"({', '.join(dims)}): use model={' or model='.join(fitting)} "
                          "(simulators also want trainer=online; experiment=burgers, ks, landscape "
                          "set both)")
    return build(node, "model", **dims)


def build(node: DictConfig, key: str, **kwargs: Any) -> Any:
    """``instantiate(node)``; a ConfigError raised by the class (which Hydra wraps) comes back
    out keyed under ``key``, so the CLI names e.g. ``problem.fn`` in one line."""
    try:
        return instantiate(node, _convert_="all", **kwargs)
    except InstantiationException as err:
        if isinstance(err.__cause__, ConfigError):
            raise err.__cause__.under(key) from None
        raise


def _raise_terminated(signum: int, frame: Any) -> None:
    raise Terminated(f"stopped by signal {signal.Signals(signum).name}")


def _stop_on_sigterm() -> Any:
    """Turn SIGTERM into :class:`Terminated` while the loop runs (main thread only); returns the
    handler to restore, or None where none was installed."""
    if threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signal.SIGTERM, _raise_terminated)


def non_finite_parameters(state: dict[str, Tensor]) -> list[str]:
    """Names of the floating-point tensors of a model state that hold NaN or inf."""
    return [name for name, value in state.items()
            if torch.is_floating_point(value) and not bool(torch.isfinite(value).all())]


class Runner:
    """Builds every component from a composed config (seed first) and runs the loop."""

    def __init__(self, cfg: DictConfig, output_dir: str | Path) -> None:
        self.cfg = cfg
        self.output_dir = Path(output_dir)
        self.ckpt_dir = self.output_dir / "checkpoints"
        seed_everything(int(cfg.seed))
        self.tc: TrainerConfig = OmegaConf.to_object(cfg.trainer)  # plain attributes on the hot path
        t = self.tc
        self.device = pick_device(t.device)
        self.dtype = torch.float64 if t.precision == "float64" else torch.float32
        self.problem = build(cfg.problem, "problem")
        if not isinstance(self.problem, Problem):
            raise ConfigError("problem._target_", f"{cfg.problem._target_} built a "
                              f"{type(self.problem).__name__}, not a Problem: subclass "
                              "nearpole_exp.problems.base.Problem (or PoleProblem, SimulatorProblem)")
        if not bool(torch.isfinite(torch.as_tensor(self.problem.bounds)).all()):
            raise ConfigError("problem", f"{self.problem.name}'s box must be finite, got bounds "
                              f"{torch.as_tensor(self.problem.bounds).tolist()}")
        self.model = build_model(cfg.model, self.problem.model_dims()).to(device=self.device,
                                                                          dtype=self.dtype)
        self.model_caps = capabilities(self.model)
        self.sampler = build(cfg.sampler, "sampler")
        self.curriculum = build(cfg.curriculum, "curriculum") if has_target(cfg.curriculum) else None
        self.gradient = build(cfg.gradient, "gradient") if has_target(cfg.gradient) else None
        self.monitor = (build(cfg.diagnostics, "diagnostics",
                              export_path=str(self.output_dir / "diagnostics.jsonl"))
                        if has_target(cfg.diagnostics) else None)
        self.breeder = build_breeder(cfg.ogas, self.problem.bounds)
        self._set_threads(t.num_threads)
        self.executor = self._build_executor(cfg)
        self.feed = None if self.executor is None else SimulationFeed(
            self.executor, self.breeder, t.initial_points + (t.rounds - 1) * t.points_per_round,
            generation_size=t.points_per_round or t.initial_points, max_in_flight=t.max_in_flight,
            regenerate_after=t.regenerate_after)
        self.optimizer = AdamW(self.model.parameters(), lr=t.lr, weight_decay=t.weight_decay)
        self.total_steps = t.rounds * t.steps_per_round
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, self._lr_factor)
        self.pool = Pool(t.pool_capacity)
        self.state = LoopState()
        self._q_abs: Tensor | None = None
        self._q_step = -1
        self._q_version = 0  # bumped whenever |Q| of the pool is recomputed
        self._draw: tuple[int, Any] = (-1, None)
        self._design_prior: Tensor | None = None
        self._design_stale = True
        self.q_source = t.q_source
        if self.q_source == "model" and self.model_caps.rational:
            self.sampler.use_q_fn(model_q(self.model))
        self.loss_kind = self._resolve_loss(t.loss)
        ideal = self.problem.ideal_placement()
        if ideal is not None and self.feed is not None:
            log.warning("the placement diagnostic scores generations of executor=batched runs only: "
                        "this run (%s) has none", type(self.executor).__name__)
            ideal = None
        self.placement = None if ideal is None else PlacementLog(ideal, self.problem.bounds)
        self._placement_record: dict[str, float] = {}
        self._check_compatible()

    def _resolve_loss(self, loss: str) -> str:
        """``auto``: the residual loss for rational models on labels with poles (the quotient loss
        when a δ schedule is set, since δ acts on P/Q), ``relative`` otherwise on pole problems
        (on RR-IK's damped labels the residual loss placed spurious poles: eval/mse 36.5 vs 0.23),
        ``mse`` for simulators."""
        if loss != "auto":
            return loss
        if not self.problem.knows_poles:
            return "mse"
        if self.model_caps.rational and self.gradient is None and self.problem.labels_have_poles:
            return "residual"
        return "relative"

    def _set_threads(self, requested: int) -> None:
        """``num_threads``: as given; 0 = torch's default, less one core for a breeder that trains in
        the background (on 2 cores, 3 busy threads made an OGAS run 1.9x slower than uniform)."""
        self._threads_before = torch.get_num_threads()
        if requested:
            torch.set_num_threads(requested)
        elif self.breeder.trains_in_background:
            torch.set_num_threads(max(1, (os.cpu_count() or 2) - 1))

    def _build_executor(self, cfg: DictConfig) -> Any:
        """The simulation executor for asynchronous generations (None: label each round in-process,
        in one batch, before training it)."""
        if not has_target(cfg.executor):
            return None
        if not self.problem.simulates:
            raise ValueError("executor=... runs simulations asynchronously; pole problems label in one "
                             "batch in-process: use executor=batched")
        extra: dict[str, Any] = {}
        if "folder" in cfg.executor and not Path(cfg.executor.folder).is_absolute():
            extra["folder"] = str(self.output_dir / cfg.executor.folder)
        return build(cfg.executor, "executor", problem=self.problem, **extra)

    def _lr_factor(self, step: int) -> float:
        if self.tc.lr_schedule == "constant":
            return 1.0
        return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(step / max(self.total_steps, 1), 1.0)))

    def _check_compatible(self) -> None:
        """Refuse combinations that cannot work, with the key to change."""
        needs_q = self.sampler.needs_q
        if self.q_source == "model" and not self.model_caps.rational:
            raise ValueError("trainer.q_source=model needs a model with q_values (model=rational)")
        if self.loss_kind == "residual" and not self.model_caps.rational:
            raise ValueError("trainer.loss=residual needs a rational model (model=rational)")
        if self.gradient is not None and not self.model_caps.hybrid_division:
            raise ConfigError("gradient", "the δ schedule sets the band of a P/Q division that this "
                              "model does not have: use model=rational, or gradient=exact")
        if self.tc.design_weighting > 0 and not self.breeder.has_design_ratio:
            log.warning("trainer.design_weighting=%g has no effect: %s has no design density ratio "
                        "(ogas/breeder=ogas with learn_sampling_ratio provides one)",
                        self.tc.design_weighting, type(self.breeder).__name__)
        if self.loss_kind == "residual" and self.gradient is not None:
            raise ValueError("the gradient schedule acts on the quotient P/Q, which trainer.loss=residual "
                             "never forms: use trainer.loss=relative (or auto) with it")
        if needs_q and self.q_source == "problem" and not self.problem.knows_poles:
            raise ValueError(
                f"sampler needs |Q| but problem {self.problem.name!r} has none: use trainer.q_source=model "
                "with model=rational, or a sampler that does not need Q (sampler=uniform)")

    # ---------------------------------------------------------------- acquisition
    def acquire(self, round_idx: int) -> int:
        """Label the breeder's next generation and the sampler's proposals; returns points added."""
        t = self.tc
        n = t.initial_points if round_idx == 0 else t.points_per_round
        added = 0
        if self.feed is not None:
            return self.pump_simulations(wait=len(self.pool) == 0)
        prescribed = self.problem.initial_design(n, child_generator()) if round_idx == 0 and n else None
        if prescribed is not None:
            self._add(prescribed, torch.full((len(prescribed),), NO_SIM, dtype=torch.long))
            added, n = len(prescribed), 0
        if n > 0:
            start = time.perf_counter()
            first_id = self.breeder.n_asked
            params = self.breeder.ask(n)
            self.state.breeder_s += time.perf_counter() - start
            ids = torch.arange(first_id, first_id + len(params))
            if self.placement is not None:
                self._placement_record = self.placement.record(params, self.breeder.bred_mask(ids))
            self._add(params, ids)
            added += len(params)
        if len(self.pool):
            proposed = self.sampler.propose(self.problem, self.pool, round_idx)
            if proposed is not None and len(proposed):
                self._add(proposed, torch.full((len(proposed),), NO_SIM, dtype=torch.long))
                added += len(proposed)
        if len(self.pool) == 0:
            raise RuntimeError("the pool is empty after acquisition: every labelled sample was non-finite")
        return added

    def pump_simulations(self, wait: bool) -> int:
        """Move finished simulations into the pool and keep the executor fed; with ``wait``, block
        until at least one sample is in the pool. Returns the simulations added."""
        assert self.feed is not None
        added = 0
        while True:
            results = self.feed.pump(timeout=1.0 if wait else 0.0)
            merged, ids = merge_results(results)
            if merged is not None and len(ids):
                self._add_samples(merged, ids)
                added += len(ids)
            if not wait or len(self.pool) > 0 or self.feed.done:
                break
        if len(self.pool) == 0:
            raise RuntimeError("no simulation succeeded: the pool is empty "
                               "(see the failures in summary.json)")
        return added

    def _add(self, points: Tensor, sim_ids: Tensor) -> None:
        self._add_samples(self.problem.label(points.cpu()), sim_ids)

    def _add_samples(self, samples: Any, sim_ids: Tensor) -> None:
        """Append labelled samples of ``len(sim_ids)`` points (``NO_SIM``: not the breeder's)."""
        samples.inputs = samples.inputs.to(self.dtype)
        samples.targets = samples.targets.to(self.dtype)
        evicted = self.pool.n_evicted
        self.pool.add(samples, sim_ids=sim_ids)
        self.sampler.draws.drop_oldest(self.pool.n_evicted - evicted)  # rows shifted down
        self.pool.to(self.device)
        self._q_step = -1
        self._design_stale = True

    # ---------------------------------------------------------------- |Q| of the pool
    def pool_q_abs(self) -> Tensor | None:
        """|Q| of every pool sample: the problem's known Q, or the model's, refreshed on a cadence."""
        if self.q_source == "problem":
            if self._q_step < 0:
                q = self.pool.field("q")
                self._q_abs = None if q is None else q.abs()
                self._q_step = self.state.step
                self._q_version += 1
            return self._q_abs
        if self._q_abs is None or self._q_step < 0 or \
                self.state.step - self._q_step >= self.tc.q_refresh_every:
            with torch.no_grad():
                chunks = [self.model.q_values(x).abs() for x in self.pool.inputs.split(65536)]
            self._q_abs = torch.cat(chunks)
            self._q_step = self.state.step
            self._q_version += 1
        return self._q_abs

    def q_function(self) -> Callable[[Tensor], Tensor] | None:
        """Q as a differentiable function of the inputs: the problem's or the model's (per
        ``trainer.q_source``), for distances that need ∇Q (``sampler.distance=newton``)."""
        if self.q_source == "model":
            return self.model.q_values if self.model_caps.rational else None
        return self.problem.q if self.problem.knows_poles else None

    def draw_values(self) -> Any:
        """What the sampler draws by (its ``draw_values`` of the pool's |Q|, prepared for many
        draws: e.g. the importance tables), recomputed only when |Q| is."""
        q_abs = self.pool_q_abs()
        version, values = self._draw
        if version != self._q_version:
            values = None if q_abs is None else self.sampler.prepare(self.sampler.draw_values(
                self.pool.inputs, q_abs, self.q_function()))
            self._draw = (self._q_version, values)
        return values

    def design_prior(self) -> Tensor | None:
        """Per-sample batch prior (p_design/p_pool)^α of the sample's simulation, from the breeder
        (``trainer.design_weighting`` = α), so that batches lean back from a breeder-biased pool
        towards the design; None when α = 0 or the breeder has no such ratio."""
        alpha = self.tc.design_weighting
        if alpha <= 0:
            return None
        if self._design_stale:
            self._design_stale = False
            self._design_prior = None
            point_sims = self.pool.point_sim_ids
            mine = torch.nonzero(point_sims >= 0)[:, 0]
            w = self.breeder.design_weights(point_sims[mine]) if mine.numel() else None
            if w is not None:
                per_point = torch.ones(len(point_sims), dtype=torch.float64)
                per_point[mine] = w.double().pow(alpha)
                self._design_prior = per_point[self.pool.source.cpu()].to(self.device)
        return self._design_prior

    def pool_distance(self) -> Tensor | None:
        """Distance to the nearest pole of every pool sample (falls back to |Q|)."""
        dist = self.pool.field("distance")
        return dist if dist is not None else self.pool_q_abs()

    # ---------------------------------------------------------------- training
    def train_step(self) -> dict[str, float]:
        """One gradient step on a batch chosen by the sampler; tells the breeder the per-sample signal."""
        t = self.tc
        if self.feed is not None:
            self.pump_simulations(wait=False)
        needs_q = self.sampler.needs_q
        q_abs = self.pool_q_abs() if needs_q or self.gradient is not None or self.monitor else None
        prior = None
        if self.curriculum is not None:
            on_q = self.curriculum.variable == "q"
            values = self.pool_q_abs() if on_q else self.pool_distance()
            prior = None if values is None else self.curriculum.prior(values)
        design = self.design_prior()
        if design is not None:
            prior = design if prior is None else prior * design
        sel = self.sampler.select(len(self.pool), t.batch_size,
                                  q=self.draw_values() if needs_q else None,
                                  prior=prior, device=self.device)
        idx = sel.idx.to(self.device)
        x, y = self.pool.inputs[idx], self.pool.targets[idx]
        batch_q = None if q_abs is None else q_abs[idx]
        self.model.train()
        if self.loss_kind == "residual":
            delta = self._delta(batch_q)
            p, q = self.model.pq(x)
            losses = residual_loss(p, q, y)
            pred = (p / q[:, None]).detach()
        elif self.gradient is not None and self.model_caps.hybrid_division:
            # one forward: the band is set from the model's own Q, which the division then uses
            p, q = self.model.pq(x)
            delta = self._delta(q.detach().abs())
            pred = hybrid_divide(p, q[:, None], delta)
            losses = per_sample_loss(pred, y, self.loss_kind)
        else:
            delta = self._delta(batch_q)
            pred = self.model(x, delta)
            losses = per_sample_loss(pred, y, self.loss_kind)
        weights = sel.weights.to(self.device, losses.dtype)
        loss = (weights * losses).sum() / weights.sum().clamp_min(1e-12)
        self.optimizer.zero_grad(set_to_none=True)
        finite = bool(torch.isfinite(loss))
        if finite and self.monitor is not None and self.monitor.gradient_due(self.state.step):
            self._probe_gradients(losses, weights, idx, batch_q)
        if finite:
            loss.backward()
            grads = [p.grad for p in self.model.parameters() if p.grad is not None]
            grads_ok = all(bool(torch.isfinite(g).all()) for g in grads)
            if grads_ok:
                if t.grad_clip > 0:
                    torch.nn.utils.clip_grad_norm_(self.model.parameters(), t.grad_clip)
                self.optimizer.step()
            finite = grads_ok
        if not finite:
            self.state.skipped_steps += 1
        self.scheduler.step()
        self.sampler.record(idx, len(self.pool))
        self._tell_breeder(idx, pred.detach(), y, losses.detach())
        if self.monitor is not None:
            dist = self.pool.field("distance")
            self.monitor.update_batch(self.state.step, idx, batch_q,
                                      None if dist is None else dist[idx], sel.weights, losses.detach())
        self.state.step += 1
        return {"loss": float(loss.detach()) if finite else float("nan"), "delta": delta, "ess": sel.ess}

    def _delta(self, band_q: Tensor | None) -> float:
        """This step's hybrid band from the |Q| it acts on (0: exact gradient, no schedule)."""
        return 0.0 if self.gradient is None else float(self.gradient.delta(self.state.step, band_q))

    def _probe_gradients(self, losses: Tensor, weights: Tensor, idx: Tensor, batch_q: Tensor | None) -> None:
        """Gradient norms of the near-pole and far-pole parts of the batch loss, for the monitor."""
        dist = self.pool.field("distance")
        values = dist[idx] if dist is not None else batch_q
        if values is None:
            return
        near = values < self.monitor.near_threshold
        params = [p for p in self.model.parameters() if p.requires_grad]
        norms: list[float | None] = []
        for mask in (near, ~near):
            if not bool(mask.any()):
                norms.append(None)
                continue
            part = (weights[mask] * losses[mask]).sum() / weights.sum().clamp_min(1e-12)
            grads = torch.autograd.grad(part, params, retain_graph=True, allow_unused=True)
            flat = [g.reshape(-1) for g in grads if g is not None]
            norms.append(float(torch.cat(flat).norm()) if flat else None)
        self.monitor.update_gradients(norms[0], norms[1])

    def _tell_breeder(self, idx: Tensor, pred: Tensor, target: Tensor, losses: Tensor) -> None:
        signal = self.problem.per_sample_signal(pred, target)
        if signal is None:
            signal = losses
        sim_ids = self.pool.sim_ids[idx].cpu()
        mine = sim_ids >= 0
        if bool(mine.any()):
            start = time.perf_counter()
            self.breeder.tell(sim_ids[mine], signal.cpu()[mine])
            self.state.breeder_s += time.perf_counter() - start

    # ---------------------------------------------------------------- evaluation and plots
    def predict(self, x: Tensor) -> Tensor:
        """Model predictions in eval mode, in chunks, returned on the CPU."""
        self.model.eval()
        with torch.no_grad():
            outs = [self.model(chunk.to(self.device, self.dtype)).cpu() for chunk in x.split(65536)]
        return torch.cat(outs)

    def evaluate(self) -> dict[str, float]:
        return self.problem.evaluate(self.predict, self.model)

    def make_plots(self, metrics: dict[str, float]) -> list[str]:
        outdir = self.output_dir / "plots"
        outdir.mkdir(parents=True, exist_ok=True)
        paths = list(self.problem.plots(self.predict, str(outdir)))
        paths += plots.bucket_errors(metrics, outdir / "bucket_errors.png")
        draws = self.sampler.draws.counts(len(self.pool)).cpu()
        paths += plots.sampled_histogram(self.pool.inputs.cpu(), draws, self.problem.bounds,
                                         outdir / "sampled_x.png")
        paths += list(self.breeder.plots(str(outdir)))
        if self.placement is not None:
            paths += self.placement.plot(str(outdir))
        return paths

    # ---------------------------------------------------------------- state
    def components(self) -> dict[str, Any]:
        """Every stateful component, in load order (None where the run has none): the one list
        that checkpoints save and restore."""
        return {"model": self.model, "optimizer": self.optimizer, "scheduler": self.scheduler,
                "sampler": self.sampler, "curriculum": self.curriculum, "gradient": self.gradient,
                "monitor": self.monitor, "breeder": self.breeder, "feed": self.feed,
                "placement": self.placement, "pool": self.pool}

    def state_dict(self, run_id: str | None) -> dict[str, Any]:
        states = {name: None if obj is None else obj.state_dict()
                  for name, obj in self.components().items()}
        return {"loop": asdict(self.state), **states, "rng": rng_state(), "wandb_run_id": run_id,
                "config": config_fingerprint(self.cfg)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if "breeder_ids" in state:  # written before the pool kept the simulation ids
            state = {**state, "pool": {**state["pool"], "point_sim_ids": state["breeder_ids"]}}
        broken = non_finite_parameters(state["model"])
        if broken:
            raise CheckpointError(f"the checkpoint's model holds NaN or inf ({', '.join(broken[:4])}): "
                             "it cannot be continued; start afresh with resume=never")
        self.state = LoopState(**state["loop"])
        for name, obj in self.components().items():
            if obj is not None and state.get(name) is not None:
                obj.load_state_dict(state[name])
        self.pool.to(self.device)
        set_rng_state(state["rng"])

    def _check_finite_model(self) -> None:
        """Fail the run, before its checkpoint is written, once a parameter is NaN or inf."""
        broken = non_finite_parameters(self.model.state_dict())
        if broken:
            raise FloatingPointError(
                f"the model's parameters became NaN or inf ({', '.join(broken[:4])}; "
                f"{self.state.skipped_steps} of {self.state.step} steps skipped): lower trainer.lr "
                "or set trainer.grad_clip")

    def save(self, run_id: str | None) -> None:
        save_checkpoint(self.state_dict(run_id), self.ckpt_dir / "last.pt")

    # ---------------------------------------------------------------- the loop
    def run(self) -> dict[str, Any]:
        """Run (or resume) the whole job, holding its directory; returns the summary written to
        summary.json."""
        with JobDirectoryLock(self.output_dir):
            return self._run()

    def _run(self) -> dict[str, Any]:
        cfg = self.cfg
        ckpt_path = find_checkpoint(cfg.resume, self.output_dir)
        resumed = load_checkpoint(ckpt_path) if ckpt_path is not None else None
        if resumed is not None:
            check_resumable(resumed.get("config"), config_fingerprint(cfg), ckpt_path)
            self.load_state_dict(resumed)
            log.info("resumed from %s at round %d, step %d", ckpt_path, self.state.round, self.state.step)
        reporter = Reporter(cfg, self.output_dir, None if resumed is None else resumed.get("wandb_run_id"),
                            {"model_parameters": sum(p.numel() for p in self.model.parameters())})
        summary: dict[str, Any] = {"status": "failed"}
        failed = True
        start_wall = time.perf_counter() - self.state.wall_s
        self.breeder.start()
        previous_handler = _stop_on_sigterm()
        try:
            summary = self._loop(reporter, start_wall)
            failed = False
        except BaseException as err:
            status = "interrupted" if isinstance(err, KeyboardInterrupt) else "failed"
            summary = {"status": status, "error": f"{type(err).__name__}: {err}",
                       "round": self.state.round, "step": self.state.step}
            raise
        finally:
            if previous_handler is not None:
                signal.signal(signal.SIGTERM, previous_handler)
            self.breeder.close()
            if self.executor is not None:
                self.executor.close()
            torch.set_num_threads(self._threads_before)
            reporter.finish(summary, failed=failed)
        return summary

    def _loop(self, reporter: Reporter, start_wall: float) -> dict[str, Any]:
        t = self.tc
        metrics: dict[str, float] = {}
        with progress(t.progress) as bar:
            task = bar.add_task(self.cfg.task_name, total=self.total_steps, completed=self.state.step,
                                info="")
            while self.state.round < t.rounds:
                r = self.state.round
                added = self.acquire(r)
                round_losses = []
                skipped_before = self.state.skipped_steps
                for _ in range(t.steps_per_round):
                    out = self.train_step()
                    round_losses.append(out["loss"])
                    bar.update(task, advance=1, info=self._bar_info(r, out["loss"]))
                if self.state.skipped_steps - skipped_before == t.steps_per_round:
                    raise FloatingPointError(
                        f"every step of round {r + 1} was skipped (non-finite loss or gradients; "
                        f"{self.state.skipped_steps} of {self.state.step} in all): the model has "
                        "diverged; lower trainer.lr or set trainer.grad_clip")
                record = self._round_record(round_losses, out, added)
                if (r + 1) % t.eval_every == 0 or r + 1 == t.rounds:
                    metrics = self.evaluate()
                    record.update(metrics)
                if self.curriculum is not None:
                    self.curriculum.update(r, record)
                    record.update(self.curriculum.metrics())
                self.state.round += 1
                self.state.wall_s = time.perf_counter() - start_wall
                record["time/wall_s"] = self.state.wall_s
                record["time/breeder_s"] = self.state.breeder_s
                reporter.log(record, self.state.step)
                to_log_file(f"round {r + 1}/{t.rounds}, step {self.state.step}: loss "
                            f"{record['train/loss']:.4g}" + "".join(
                                f", {k} {record[k]:.4g}" for k in ("eval/mse", "eval/nrmse_mean",
                                                                    "eval/ple") if k in record))
                if self.monitor is not None:
                    reporter.histogram("sampler/q_abs_hist", np.asarray(self.monitor.histogram_values()),
                                       self.state.step)
                self._check_finite_model()
                if self.state.round % t.checkpoint_every == 0 or self.state.round == t.rounds:
                    self.save(reporter.run_id)
        if self.feed is not None and not self.feed.done:
            log.info("training finished with simulations in flight: waiting for them (budget accounting)")
            while not self.feed.done:
                self.pump_simulations(wait=True)
        if not metrics:
            metrics = self.evaluate()
        summary = {**metrics, "status": "completed", "round": self.state.round, "step": self.state.step,
                   "time/wall_s": self.state.wall_s,
                   "train/skipped_steps": self.state.skipped_steps, "pool/size": len(self.pool),
                   "pool/rejected": self.pool.n_rejected}
        if self.problem.simulates:  # a pole problem's points are labels, not simulations
            summary.update({"time/breeder_s": self.state.breeder_s,
                            "breeder/simulations": self.breeder.n_asked, **self.breeder.metrics()})
        summary.update(self.problem.summary_info())
        summary.update(self._stability())
        summary.update(self._fit_verdict(metrics))
        if self.placement is not None:
            summary.update(self.placement.summary())
        if self.feed is not None:
            summary.update(self.feed.metrics())
            summary.update(self.executor.metrics())
            summary["sims/failures"] = list(self.feed.failures)
            summary["time/trainer_idle_fraction"] = self.feed.pump_s / max(self.state.wall_s, 1e-9)
        if t.plots:
            paths = self.make_plots(metrics)
            reporter.images(paths, self.state.step)
        return summary

    def _bar_info(self, round_idx: int, loss: float) -> str:
        """The progress bar's text: round and loss, and with an executor the simulations
        finished / in flight / failed out of the budget."""
        info = f"round {round_idx + 1}/{self.tc.rounds} loss {loss:.3g}"
        if self.feed is not None:
            sims = self.feed.metrics()
            info += (f" | sims {sims['sims/finished']:.0f}/{self.feed.budget} done, "
                     f"{sims['sims/in_flight']:.0f} running, {sims['sims/failed']:.0f} failed")
        return info

    def _fit_verdict(self, metrics: dict[str, float]) -> dict[str, Any]:
        """``fit/near_pole_failed`` (and a warning saying why) on problems that judge their fit:
        a run can complete and still not have learnt the poles."""
        if not self.problem.knows_poles:
            return {}
        reason = self.problem.fit_verdict(metrics)
        if reason is not None:
            log.warning("the fit failed near the poles: %s", reason)
        return {"fit/near_pole_failed": reason is not None, "fit/near_pole_reason": reason or ""}

    def _stability(self) -> dict[str, Any]:
        """Status ``unstable`` and a warning when more than ``trainer.max_skipped_fraction`` of
        the steps were skipped for a non-finite loss or gradient: the model is finite but its
        training was not what the config asked for."""
        fraction = self.state.skipped_steps / max(self.state.step, 1)
        if fraction <= self.tc.max_skipped_fraction:
            return {}
        warning = (f"{self.state.skipped_steps} of {self.state.step} steps ({fraction:.1%}) were "
                   "skipped for a non-finite loss or gradient, above trainer.max_skipped_fraction="
                   f"{self.tc.max_skipped_fraction:g}: lower trainer.lr or set trainer.grad_clip")
        log.warning("%s", warning)
        return {"status": "unstable", "warning": warning}

    def _round_record(self, losses: list[float], last: dict[str, float], added: int) -> dict[str, Any]:
        finite = [v for v in losses if math.isfinite(v)]
        record: dict[str, Any] = {
            "round": self.state.round + 1,
            "train/loss": float(np.mean(finite)) if finite else float("nan"),
            "train/lr": self.scheduler.get_last_lr()[0],
            "train/skipped_steps": self.state.skipped_steps,
            "gradient/delta": last["delta"],
            "pool/size": len(self.pool),
            "pool/added": added,
            "pool/rejected": self.pool.n_rejected,
        }
        if self.monitor is not None:
            record.update(self.monitor.end_round(self.state.round))
        else:
            record["sampler/ess"] = last["ess"]
        record.update(self.sampler.metrics())
        record.update(self.breeder.metrics())
        record.update(self._placement_record)
        self._placement_record = {}
        if self.feed is not None:
            record.update(self.feed.metrics())
        if self.gradient is not None:
            record.update(self.gradient.metrics())
        if self._design_prior is not None:
            # share of the pool the design-weighted batches effectively draw from (1: uniform)
            prior = self._design_prior
            record["train/design_ess"] = float(prior.sum() ** 2 / (prior.pow(2).sum() * len(prior)))
        return record
