"""The loop of docs/architecture.md: build, then per round acquire → train → evaluate → report →
checkpoint. The two levers are objects (:class:`~nearpole_exp.acquisition.acquire.Acquisition`,
:class:`~nearpole_exp.sampling.selection.BatchSelection`) and the model computes its own loss, so
the runner keeps the loop, the gradient step, the reports and the lifecycle."""

from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from nearpole_exp import __version__
from nearpole_exp.acquisition.acquire import Acquisition
from nearpole_exp.acquisition.feed import SimulationFeed
from nearpole_exp.build import (
    build,
    build_breeder,
    build_callbacks,
    build_executor,
    build_model,
    build_problem,
    check_compatible,
    non_finite_parameters,
    optional,
    pick_device,
    set_threads,
)
from nearpole_exp.checkpoint import (
    check_resumable,
    config_fingerprint,
    find_checkpoint,
    load_checkpoint,
    migrate,
    save_checkpoint,
)
from nearpole_exp.config.schemas import TrainerConfig
from nearpole_exp.errors import CheckpointError, ConfigError
from nearpole_exp.models.base import LossOutput, capabilities, loss_function, q_function
from nearpole_exp.models.losses import resolve_loss
from nearpole_exp.pool import Pool
from nearpole_exp.problems.base import ModelQ
from nearpole_exp.reporting import plots
from nearpole_exp.reporting.console import progress, progress_line
from nearpole_exp.reporting.reporter import Reporter
from nearpole_exp.rng import rng_state, seed_everything, set_rng_state
from nearpole_exp.sampling.diagnostics import NoMonitor
from nearpole_exp.sampling.selection import Batch, BatchSelection
from nearpole_exp.stop_signals import StopSignals
from nearpole_exp.verdicts import fit_verdict, stability

log = logging.getLogger(__name__)


@dataclass
class LoopState:
    """Where the loop is; saved in every checkpoint."""

    round: int = 0
    step: int = 0
    wall_s: float = 0.0
    skipped_steps: int = 0
    stopped: str = ""  # why the loop ended before trainer.rounds (a callback's request)


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
        # the problem and the model that learns it (this order fixes every seeded draw)
        self.problem = build_problem(cfg.problem)
        self.model = build_model(cfg.model, self.problem.model_dims()).to(device=self.device,
                                                                          dtype=self.dtype)
        self.model_caps = capabilities(self.model)
        self.compute_loss = loss_function(self.model)
        sampler = build(cfg.sampler, "sampler")
        curriculum = optional(cfg.curriculum, "curriculum")
        # the optional parts of a step: the hybrid band and the diagnostic monitor
        self.gradient = optional(cfg.gradient, "gradient")
        self.monitor = optional(cfg.diagnostics, "diagnostics",
                                export_path=str(self.output_dir / "diagnostics.jsonl")) or NoMonitor()
        # the two levers
        breeder = build_breeder(cfg.ogas, self.problem.bounds, self.device)  # the DDPM beside the surrogate
        self._threads_before = set_threads(t.num_threads, breeder.capabilities.trains_in_background)
        executor = build_executor(cfg.executor, self.problem, self.output_dir)
        feed = None if executor is None else SimulationFeed(
            executor, breeder, t.initial_points + (t.rounds - 1) * t.points_per_round,
            generation_size=t.points_per_round or t.initial_points, max_in_flight=t.max_in_flight,
            regenerate_after=t.regenerate_after)
        model_q = q_function(self.model) if t.q_source == "model" else None
        if model_q is not None:
            sampler.use_q_fn(self.model_q())
        self.pool = Pool(t.pool_capacity)
        self.acquisition = Acquisition(self.problem, self.pool, breeder, sampler,
                                       initial_points=t.initial_points,
                                       points_per_round=t.points_per_round, dtype=self.dtype,
                                       device=self.device, feed=feed)
        self.selection = BatchSelection(
            self.pool, sampler, curriculum=curriculum, q_fn=model_q,
            problem_q=self.problem.q if self.problem.capabilities.knows_poles else None,
            q_refresh_every=t.q_refresh_every, design_weighting=t.design_weighting,
            design_weights=breeder.design_weights, pool_losses=self._pool_losses)
        # the optimisation
        self.optim_option = build(cfg.optimizer, "optimizer")
        self.schedule = build(cfg.scheduler, "scheduler")
        self.optimizer = self.optim_option.build(self.model.parameters(), t.lr)
        self.polish = build(cfg.polish, "polish")
        self.callbacks = build_callbacks(cfg.get("callbacks"))
        self.total_steps = t.rounds * t.steps_per_round
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, self._lr_factor)
        self._round_batch: Batch | None = None
        caps = self.problem.capabilities
        self.loss_kind = resolve_loss(t.loss, rational=self.model_caps.rational,
                                      knows_poles=caps.knows_poles,
                                      labels_have_poles=caps.labels_have_poles,
                                      band=self.gradient is not None)
        self.polish.check(self.model, self.loss_kind)
        self.state = LoopState()
        check_compatible(self.tc, self.loss_kind, self.model_caps, self.gradient is not None,
                         sampler.capabilities.needs_q, self.problem, breeder)

    def _lr_factor(self, step: int) -> float:
        """The schedule's factor (1 for a full-batch optimizer: its line search sets the step)."""
        return 1.0 if self.optim_option.full_batch else self.schedule.factor(step, self.total_steps)

    def model_q(self) -> ModelQ | None:
        """The model's Q for problems and proposals: evaluated on the model's device, on the CPU."""
        q = q_function(self.model)
        if q is None:
            return None
        return ModelQ(lambda x: q(x.to(self.device)).cpu(), self.dtype)

    # ---------------------------------------------------------------- training
    def train_step(self) -> dict[str, float]:
        """One optimizer step on the step's batch (a full-batch optimizer: one iteration on the
        round's); tells the breeder the signal."""
        self.acquisition.pump()
        if self.optim_option.full_batch:
            batch = self._round_batch or self._draw_batch()
            self._round_batch = batch
        else:
            batch = self._draw_batch()
        self.model.train()
        if self.optim_option.full_batch:
            loss, out, finite = self._line_search_step(batch)
        else:
            loss, out, finite = self._gradient_step(batch)
        if not finite:
            self.state.skipped_steps += 1
        self.scheduler.step()
        losses = out.losses.detach()
        self.acquisition.tell(batch.idx, out.prediction.detach(), batch.targets, losses)
        self.monitor.update_batch(self.state.step, batch.idx, batch.q_abs, batch.distance,
                                  batch.weights, losses)
        self.state.step += 1
        return {"loss": float(loss.detach()) if finite else float("nan"), "delta": out.delta,
                "ess": batch.selection.ess}

    def _draw_batch(self) -> Batch:
        """``trainer.batch_size`` samples drawn by the selection, or the whole pool with 0."""
        with_q = self.monitor.wants_q
        if self.tc.batch_size == 0:
            return self.selection.whole_pool(self.state.step, self.device, with_q=with_q)
        return self.selection.next(self.state.step, self.tc.batch_size, self.device, with_q=with_q)

    def _objective(self, batch: Batch) -> tuple[torch.Tensor, LossOutput]:
        """The batch's weighted mean loss and the model's per-sample output."""
        out = self.compute_loss(batch.inputs, batch.targets, self.loss_kind, self._band())
        weights = batch.weights.to(self.device, out.losses.dtype)
        return (weights * out.losses).sum() / weights.sum().clamp_min(1e-12), out

    def _gradient_step(self, batch: Batch) -> tuple[torch.Tensor, LossOutput, bool]:
        """One step of a stochastic optimizer; skipped when the loss or a gradient is not finite."""
        loss, out = self._objective(batch)
        self.optimizer.zero_grad(set_to_none=True)
        finite = bool(torch.isfinite(loss))
        if finite and self.monitor.gradient_due(self.state.step):
            weights = batch.weights.to(self.device, out.losses.dtype)
            self.monitor.probe_gradients([p for p in self.model.parameters() if p.requires_grad],
                                         out.losses, weights, batch.near_values)
        if finite:
            loss.backward()
            finite = self._clip_finite_gradients()
            if finite:
                self.optimizer.step()
        return loss, out, finite

    def _clip_finite_gradients(self) -> bool:
        """Clip the gradients to ``trainer.grad_clip`` (when set) and say whether all are finite,
        from their total norm: one host sync, where a check per parameter cost one each (a step
        that is not finite is skipped, so clipping it first changes nothing)."""
        params = [p for p in self.model.parameters() if p.grad is not None]
        if not params:
            return True
        if self.tc.grad_clip > 0:
            norm = torch.nn.utils.clip_grad_norm_(params, self.tc.grad_clip)
        else:
            norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(p.grad)
                                                         for p in params]))
        return bool(torch.isfinite(norm))

    def _line_search_step(self, batch: Batch) -> tuple[torch.Tensor, LossOutput, bool]:
        """One iteration of a full-batch optimizer on the round's objective; skipped when the
        objective is not finite where it starts."""
        loss, out = self._objective(batch)
        if not bool(torch.isfinite(loss)):
            return loss, out, False

        def closure() -> torch.Tensor:
            self.optimizer.zero_grad(set_to_none=True)
            value, _ = self._objective(batch)
            if bool(torch.isfinite(value)):
                value.backward()
            return value

        self.optimizer.step(closure)
        return loss, out, True

    def _pool_losses(self) -> torch.Tensor:
        """The model's per-sample training loss on the whole pool (no band, no gradient)."""
        with torch.no_grad():
            parts = [self.compute_loss(x, y, self.loss_kind, None).losses
                     for x, y in zip(self.pool.inputs.split(65536), self.pool.targets.split(65536),
                                     strict=True)]
        return torch.cat(parts)

    def _polish(self) -> dict[str, float]:
        """The polish on the whole pool, weighted by the objective the batches estimate."""
        batch = self.selection.whole_pool(self.state.step, self.device)
        return self.polish.apply(self.model, batch.inputs, batch.targets, batch.weights,
                                 lambda: self._objective(batch)[0])

    def _new_objective(self) -> None:
        """A full-batch optimizer minimises one objective per round: its batch is drawn anew and
        its curvature history restarts (as after a resume, which happens at round ends)."""
        if self.optim_option.full_batch:
            self._round_batch = None
            self.optimizer.state.clear()

    def _band(self) -> Any:
        """The hybrid band of this step as a function of the batch's |Q| (None: exact division)."""
        if self.gradient is None:
            return None
        step = self.state.step
        return lambda q_abs: self.gradient.delta(step, q_abs)

    # ---------------------------------------------------------------- evaluation and plots
    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Model predictions in eval mode, in chunks, returned on the CPU."""
        self.model.eval()
        with torch.no_grad():
            outs = [self.model(chunk.to(self.device, self.dtype)).cpu() for chunk in x.split(65536)]
        return torch.cat(outs)

    def evaluate(self) -> dict[str, float]:
        metrics = self.problem.evaluate(self.predict, self.model_q())
        self._call("on_evaluation", metrics)
        return metrics

    # ---------------------------------------------------------------- callbacks
    def request_stop(self, reason: str) -> None:
        """End the run after the current round (a callback's request; the first reason stays)."""
        self.state.stopped = self.state.stopped or reason

    def _call(self, hook: str, *args: Any) -> None:
        """Call ``hook`` of every callback in config order; a ConfigError names its entry."""
        for name, callback in self.callbacks.items():
            try:
                getattr(callback, hook)(self, *args)
            except ConfigError as err:
                raise err.under(f"callbacks.{name}") from None

    def make_plots(self, metrics: dict[str, float]) -> list[str]:
        outdir = self.output_dir / "plots"
        outdir.mkdir(parents=True, exist_ok=True)
        paths = list(self.problem.plots(self.predict, str(outdir)))
        paths += plots.bucket_errors(metrics, outdir / "bucket_errors.png")
        draws = self.pool.draws.counts(len(self.pool)).cpu()
        paths += plots.sampled_histogram(self.pool.inputs.cpu(), draws, self.problem.bounds,
                                         outdir / "sampled_x.png")
        paths += self.acquisition.plots(str(outdir))
        return paths

    # ---------------------------------------------------------------- state
    def components(self) -> dict[str, Any]:
        """Every stateful component, in load order (None where the run has none): the one list
        that checkpoints save and restore."""
        return {"model": self.model, "optimizer": self.optimizer, "scheduler": self.scheduler,
                "sampler": self.selection.sampler, "curriculum": self.selection.curriculum,
                "gradient": self.gradient, "monitor": self.monitor,
                **self.acquisition.components(), "acquisition": self.acquisition,
                "pool": self.pool, **{f"callback/{name}": cb for name, cb in self.callbacks.items()}}

    def state_dict(self, run_id: str | None) -> dict[str, Any]:
        states = {name: None if obj is None else obj.state_dict()
                  for name, obj in self.components().items()}
        return {"loop": asdict(self.state), **states, "rng": rng_state(), "wandb_run_id": run_id,
                "config": config_fingerprint(self.cfg), "package_version": __version__}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        state = migrate(state)
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
        self._call("on_checkpoint", self.ckpt_dir / "last.pt")

    # ---------------------------------------------------------------- the loop
    def run(self) -> dict[str, Any]:
        """Run (or resume) the whole job; returns the summary written to summary.json. The
        caller holds the job directory (the task wrapper takes its lock)."""
        cfg = self.cfg
        ckpt_path = find_checkpoint(cfg.resume, self.output_dir)
        resumed = load_checkpoint(ckpt_path) if ckpt_path is not None else None
        if resumed is not None:
            check_resumable(resumed.get("config"), config_fingerprint(cfg), ckpt_path,
                            same_version=resumed.get("package_version") == __version__)
            self.load_state_dict(resumed)
            log.info("resumed from %s at round %d, step %d", ckpt_path, self.state.round, self.state.step)
        reporter = Reporter(cfg, self.output_dir, None if resumed is None else resumed.get("wandb_run_id"),
                            {"model_parameters": sum(p.numel() for p in self.model.parameters())})
        summary: dict[str, Any] = {"status": "failed"}
        failed = True
        start_wall = time.perf_counter() - self.state.wall_s
        self.acquisition.start()
        signals = StopSignals()
        signals.install()
        try:
            summary = self._loop(reporter, start_wall)
            failed = False
        except BaseException as err:
            status = "interrupted" if isinstance(err, KeyboardInterrupt) else "failed"
            summary = {"status": status, "error": f"{type(err).__name__}: {err}",
                       "round": self.state.round, "step": self.state.step,
                       **self.acquisition.failure_record()}
            raise
        finally:
            self.acquisition.close()
            torch.set_num_threads(self._threads_before)
            reporter.finish(summary, failed=failed)
            signals.release()  # after the summary: a second SIGTERM waits; a preempted job requeues
        return summary

    def _loop(self, reporter: Reporter, start_wall: float) -> dict[str, Any]:
        t = self.tc
        metrics: dict[str, float] = {}
        with progress(t.progress) as bar:
            task = bar.add_task(self.cfg.task_name, total=self.total_steps, completed=self.state.step,
                                info="")
            while self.state.round < t.rounds and not self.state.stopped:
                r = self.state.round
                self._call("on_round_start")
                added = self.acquisition.acquire(r)
                self._new_objective()
                round_losses = []
                skipped_before = self.state.skipped_steps
                for _ in range(t.steps_per_round):
                    out = self.train_step()
                    round_losses.append(out["loss"])
                    bar.update(task, advance=1, info=self._bar_info(r, out["loss"]))
                self.acquisition.flush_tells()
                if self.state.skipped_steps - skipped_before == t.steps_per_round:
                    raise FloatingPointError(
                        f"every step of round {r + 1} was skipped (non-finite loss or gradients; "
                        f"{self.state.skipped_steps} of {self.state.step} in all): the model has "
                        "diverged; lower trainer.lr or set trainer.grad_clip")
                self._check_finite_model()  # before a polish could hide a diverged optimizer
                record = self._round_record(round_losses, out, added)
                if self.polish.due(r, t.rounds):
                    record.update(self._polish())
                if (r + 1) % t.eval_every == 0 or r + 1 == t.rounds:
                    metrics = self.evaluate()
                    record.update(metrics)
                record.update(self.selection.end_round(r, record))
                self.state.round += 1
                self.state.wall_s = time.perf_counter() - start_wall
                record["time/wall_s"] = self.state.wall_s
                record["time/breeder_s"] = self.acquisition.breeder_s
                self._call("on_round_end", record)
                self._report_round(reporter, record)
                self._check_finite_model()
                if (self.state.round % t.checkpoint_every == 0 or self.state.round == t.rounds
                        or self.state.stopped):
                    self.save(reporter.run_id)
            if self.state.stopped:
                progress_line(self.state.stopped, True)
        self.acquisition.finish()
        if not metrics:
            metrics = self.evaluate()
        summary = self._summary(metrics)
        if t.plots:
            reporter.images(self.make_plots(metrics), self.state.step)
        return summary

    def _report_round(self, reporter: Reporter, record: dict[str, Any]) -> None:
        """The round's record to metrics.jsonl and W&B, a line to the log file."""
        reporter.log(record, self.state.step)
        progress_line(f"round {self.state.round}/{self.tc.rounds}, step {self.state.step}: loss "
                      f"{record['train/loss']:.4g}" + "".join(
                          f", {k} {record[k]:.4g}" for k in ("eval/mse", "eval/nrmse_mean", "eval/ple")
                          if k in record), self.tc.progress)
        sampled = self.monitor.histogram_values()
        if sampled.numel():
            reporter.histogram("sampler/q_abs_hist", np.asarray(sampled), self.state.step)

    def _summary(self, metrics: dict[str, float]) -> dict[str, Any]:
        """The finished run's summary: the last evaluation, the loop's counts, the levers'
        reports and the verdicts (stability, fit near the poles)."""
        summary = {**metrics, "status": "completed", "round": self.state.round, "step": self.state.step,
                   **({"stopped": self.state.stopped} if self.state.stopped else {}),
                   "time/wall_s": self.state.wall_s,
                   "train/skipped_steps": self.state.skipped_steps, "pool/size": len(self.pool),
                   "pool/rejected": self.pool.n_rejected}
        summary.update(self.acquisition.summary(self.state.wall_s))
        summary.update(self.problem.summary_info())
        summary.update(stability(self.state.skipped_steps, self.state.step,
                                 self.tc.max_skipped_fraction))
        summary.update(fit_verdict(self.problem, metrics))
        return summary

    def _bar_info(self, round_idx: int, loss: float) -> str:
        """The progress bar's text: round and loss, and with an executor the simulations
        finished / in flight / failed out of the budget."""
        info = f"round {round_idx + 1}/{self.tc.rounds} loss {loss:.3g}"
        feed = self.acquisition.feed
        if feed is not None:
            sims = feed.metrics()
            info += (f" | sims {sims['sims/finished']:.0f}/{feed.budget} done, "
                     f"{sims['sims/in_flight']:.0f} running, {sims['sims/failed']:.0f} failed")
        return info

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
        record["sampler/ess"] = last["ess"]  # the monitor's mean over the round replaces it
        record.update(self.monitor.end_round(self.state.round))
        record.update(self.selection.metrics())
        record.update(self.acquisition.round_metrics())
        if self.gradient is not None:
            record.update(self.gradient.metrics())
        return record

