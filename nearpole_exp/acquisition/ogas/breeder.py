"""OGASBreeder: Online Generative Active Sampling as an ask/tell breeder for a plain PyTorch loop.

A loss-conditioned DDPM over the normalised parameter box is trained ``train_steps_per_ask`` steps
per generation (on a background thread during the round after a generation is drawn, on the
reservoir as it was then; or inline just before each generation in ``synchronous`` mode) on a FIFO
reservoir of scored simulations, debiased
by a RatioMLP; each generation mixes DDPM children conditioned on high target difficulties with
non-bred design points, at a scheduled breed ratio. Optionally part of the bred share are local
children of high-score reservoir sims, its size set by each proposal's measured yield (mixture.py).

Threads and locks: the trainer thread holds ``trainer.lock`` for each step (model lock) and reads
only the frozen training data (:class:`TrainingData`), so ``tell`` never waits for it; a
generation first waits until the thread has spent its budget, so the steps between two
generations, and so a seeded run, are the same every time whatever the threads' timing. Lock
order is model → data.
Melissa's method names (``next_parameters`` …) are the adapter in melissa.py.
"""

from __future__ import annotations

import dataclasses
import math
import threading
import time
from collections.abc import Mapping
from typing import Any, ClassVar

import torch
from torch import Tensor

from nearpole_exp.acquisition.base import Breeder, BreederCapabilities, Generation
from nearpole_exp.acquisition.children import jitter, recombine
from nearpole_exp.acquisition.config import build_config
from nearpole_exp.acquisition.history import (
    EVICTED,
    NOT_IN_RESERVOIR,
    PROPOSAL_SOURCES,
    SOURCE_DESIGN,
    SimHistory,
    validate_signals,
)
from nearpole_exp.acquisition.mixture import ProposalMix
from nearpole_exp.acquisition.ogas.conditions import (
    MinMaxQueues,
    conditions,
    sample_indices,
    sample_targets,
)
from nearpole_exp.acquisition.ogas.config import (
    BreederConfig,
    DataConfig,
    DDPMConfig,
    ExperimentConfig,
)
from nearpole_exp.acquisition.ogas.ddpm import ConditionalDDPM, Denoiser
from nearpole_exp.acquisition.ogas.ratio import RatioEstimator, design_over_pool
from nearpole_exp.acquisition.ogas.reservoir import Reservoir
from nearpole_exp.acquisition.ogas.smoothing import adaptive_bandwidth, knn_mean, loo_neighbours
from nearpole_exp.acquisition.ogas.trainer_process import ProcessTrainer
from nearpole_exp.acquisition.ogas.trainer_thread import BackgroundTrainer
from nearpole_exp.acquisition.ogas.training import GeneratorTraining, TrainingData
from nearpole_exp.acquisition.schedule import BreedRatioSchedule, ratio_controller
from nearpole_exp.designs import UnitDesign
from nearpole_exp.rng import child_generator, load_generator_state

FORMAT_VERSION = 1
# what the generator's training keeps (training.py), stored among the breeder's stats
TRAINING_STATS = ("ddpm_loss", "ratio_ess", "loss_stride")


def proposal_shares(bc: BreederConfig) -> dict[str, float]:
    """The starting share of each proposal in use: the generator alone (``proposal_mix=generator``),
    or the local and recombination shares with the generator taking the rest."""
    if bc.proposal_mix == "generator":
        return {"generator": 1.0}
    shares = {"generator": 1.0 - bc.local_share - bc.recombination_share,
              "local": bc.local_share, "recombination": bc.recombination_share}
    return {k: v for k, v in shares.items() if v > 1e-12}


def to_cpu(obj: Any) -> Any:
    """A copy of a nested state with every tensor on the CPU (device-agnostic checkpoints)."""
    if isinstance(obj, Tensor):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        return {k: to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return type(obj)(to_cpu(v) for v in obj)
    return obj


class OGASBreeder(Breeder):
    """Loss-conditioned DDPM breeder (Melissa's OGASBreeder) with the ask/tell protocol.

    Build with ``OGASBreeder(bounds, ExperimentConfig(...))`` or with parts and flat breeder
    fields: ``OGASBreeder(bounds=b, model=DDPMConfig(...), data=DataConfig(...), end_breed_ratio=0.9)``
    (parts may also be mappings). ``bounds`` is ``[d, 2]``; ``device`` holds the DDPM and ratio MLP.
    """

    config_class = BreederConfig  # the schema of its config group option (config.py)
    config_parts: ClassVar[dict[str, type]] = {"model": DDPMConfig, "data": DataConfig}

    def __init__(self, bounds: Tensor, config: ExperimentConfig | None = None, *,
                 breeder: BreederConfig | Mapping[str, Any] | None = None,
                 model: DDPMConfig | Mapping[str, Any] | None = None,
                 data: DataConfig | Mapping[str, Any] | None = None,
                 device: str | torch.device = "cpu", **breeder_overrides: Any) -> None:
        super().__init__(bounds)
        base = config or ExperimentConfig()
        self.config = ExperimentConfig(
            breeder=build_config(BreederConfig, base.breeder if breeder is None else breeder,
                                 breeder_overrides, "breeder."),
            model=build_config(DDPMConfig, base.model if model is None else model, {}, "model."),
            data=build_config(DataConfig, base.data if data is None else data, {}, "data."),
        )
        bc, dc = self.config.breeder, self.config.data
        self.capabilities = BreederCapabilities(rewrites_unsubmitted=True,
                                                trains_in_background=not bc.synchronous,
                                                design_ratio=bc.learn_sampling_ratio)
        self.device = torch.device(device)
        self.generator = child_generator()
        self.sample_generator = child_generator(self.device)
        self.train_generator = child_generator(self.device)
        self.batch_generator = child_generator()
        self.design = UnitDesign(bc.non_breed_design, self.dim, child_generator())
        self.schedule = BreedRatioSchedule(bc.start_breed_ratio, bc.end_breed_ratio,
                                           bc.breakpoint, bc.schedule_on, bc.total_budget,
                                           bc.budget_breakpoint)
        self.ratio_control = ratio_controller(bc.adaptive_ratio, self.schedule,
                                              bc.start_breed_ratio, bc.end_breed_ratio,
                                              bc.yield_window, bc.adaptive_ess_target,
                                              bc.adaptive_gain)
        self.mix = ProposalMix(bc.proposal_mix, proposal_shares(bc), bc.mix_floor, bc.yield_window)
        self.history = SimHistory(self.dim, dc.ema_loss_alpha)
        self.queues = MinMaxQueues(dc.min_max_queue_length)
        self.reservoir = Reservoir(dc.buffer_size, self.dim)
        self.training = GeneratorTraining(self.dim, self.config, self.device,
                                          self.train_generator, self.batch_generator)
        self._frozen: Denoiser = self.ddpm.snapshot()
        self._data_lock = threading.Lock()
        self._train_data: TrainingData | None = None
        self.trainer: BackgroundTrainer | ProcessTrainer = (
            ProcessTrainer(self.training, lambda: self._train_data, self.dim, self.config,
                           self.device, num_threads=bc.trainer_num_threads,
                           sleep_s=bc.trainer_sleep_s)
            if bc.trainer_process else
            BackgroundTrainer(self._train_step, num_threads=bc.trainer_num_threads,
                              sleep_s=bc.trainer_sleep_s))
        self.stats: dict[str, float] = {
            "ratio": 0.0, "ratio_target": 0.0, "oob_rate": 0.0, "oob_fallback": 0.0,
            "dropped_values": 0.0, "generate_s": 0.0, "train_wait_s": 0.0, "train_steps": 0.0,
            "smoothing_k": float("nan"),
            **{f"{k}_share": v for k, v in self.mix.shares.items()},
        }
        self.records: dict[str, list[Any]] = {"ratio": [], "ratio_target": [], "oob_rate": []}

    @property
    def ddpm(self) -> ConditionalDDPM:
        return self.training.ddpm

    @property
    def ratio(self) -> RatioEstimator | None:
        return self.training.ratio

    def _train_step(self) -> bool:
        """One step of the generator's training on the frozen data (the trainer thread's work)."""
        return self.training.step(self._train_data)

    # ----------------------------------------------------------------------------- helpers
    def _to_box(self, unit: Tensor) -> Tensor:
        lo, hi = self.bounds[:, 0], self.bounds[:, 1]
        return lo + unit * (hi - lo)

    def _choose_smoothing(self) -> None:
        """``smoothing_neighbours=0``: pick the count by leave-one-out on the live reservoir
        (once per generation; caller holds the data lock)."""
        n = self.reservoir.size
        self.stats["smoothing_k"] = float(loo_neighbours(self.reservoir.unit[:n],
                                                         self.reservoir.signal[:n]))

    def _smoothing_k(self) -> int:
        """Neighbours each score is averaged over: the configured count, or the automatic one of
        the current generation (caller holds the data lock)."""
        k = self.config.data.smoothing_neighbours
        if k > 0:
            return k
        if not math.isfinite(self.stats.get("smoothing_k", float("nan"))):
            self._choose_smoothing()
        return int(self.stats["smoothing_k"])

    def _reservoir_conditions(self, idx: Tensor | None = None) -> Tensor:
        """Conditions of the live reservoir entries ``idx`` (all by default; caller holds the
        data lock). Scores are neighbour-averaged first when the smoothing count is > 1; only
        the rows asked for are smoothed unless the condition (rank, 3σ clip) needs them all."""
        dc = self.config.data
        n = self.reservoir.size
        signal, unit = self.reservoir.signal[:n], self.reservoir.unit[:n]
        elementwise = dc.condition == "minmax" and not dc.clip_loss_norm_to_3_sigma
        k = self._smoothing_k()
        if k > 1:
            rows = idx if idx is not None and elementwise else torch.arange(n)
            signal = knn_mean(unit[rows], unit, signal, k)
            if idx is not None and elementwise:
                return conditions(signal, self.queues, dc.condition, dc.normalize_losses, False)
        cond = conditions(signal, self.queues, dc.condition, dc.normalize_losses,
                          dc.clip_loss_norm_to_3_sigma)
        return cond if idx is None else cond[idx]

    def _freeze_training_data(self) -> None:
        """Copy the reservoir (points, conditions, provenance) that the next training steps draw
        their batches from; None while it holds fewer than ``min_reservoir_size`` sims."""
        with self._data_lock:
            n = self.reservoir.size
            if n < self.config.breeder.min_reservoir_size:
                self._train_data = None
                return
            self._train_data = TrainingData(
                unit=self.reservoir.unit[:n].clone(), cond=self._reservoir_conditions(),
                is_bred=self.reservoir.is_bred[:n].clone(),
                bred_fraction=self.reservoir.bred_fraction())

    def train_now(self, n: int) -> int:
        """Run ``n`` DDPM steps in this thread on the reservoir as it is now; returns how many
        ran (fewer without data)."""
        self._freeze_training_data()
        return self.trainer.run_inline(n)

    def train_in_background(self, n: int) -> None:
        """Give the trainer thread ``n`` steps on the reservoir as it is now (none without
        data); the next generation waits for them."""
        self._freeze_training_data()
        if self._train_data is not None:
            self.trainer.refill(n)

    def _ensure_trained(self) -> None:
        """Before a bred generation: a DDPM of at least ``min_train_steps`` steps (the missing
        ones now)."""
        missing = max(0, self.config.breeder.min_train_steps - self.ddpm.steps)
        if missing:
            self.train_now(missing)

    def _train_between_generations(self) -> None:
        """The ``train_steps_per_ask`` steps that precede a generation: inline on the reservoir as
        it is now (synchronous), or the thread's budget scheduled when the previous generation was
        drawn, waited for (asynchronous; none once the breeder is closed)."""
        bc = self.config.breeder
        if not bc.activate_breed:
            return
        if bc.synchronous:
            self.train_now(bc.train_steps_per_ask)
            return
        t0 = time.perf_counter()
        pending = self.trainer.pending
        if pending and not self.trainer.wait_idle(bc.train_wait_timeout_s):
            raise RuntimeError(f"the OGAS trainer thread did not finish its {pending} steps within "
                               f"train_wait_timeout_s={bc.train_wait_timeout_s} s")
        self.stats["train_wait_s"] += time.perf_counter() - t0

    def _schedule_training(self) -> None:
        """Asynchronous mode, after a generation is drawn: the thread's next budget, on the
        reservoir as it is now, run while the surrogate trains."""
        bc = self.config.breeder
        if not bc.synchronous and bc.activate_breed and not self.trainer.closed:
            self.train_in_background(bc.train_steps_per_ask)

    def _snapshot(self) -> Denoiser:
        with self.trainer.lock:
            return self.ddpm.snapshot(into=self._frozen)

    def _out_of_box(self, unit: Tensor) -> Tensor:
        """Rows outside the unit box, non-finite ones included."""
        return ~((unit >= 0) & (unit <= 1)).all(dim=1)

    def _generate(self, targets: Tensor) -> tuple[Tensor, Tensor, int, int]:
        """DDPM children for ``targets``: (unit points, valid mask, #OOB candidates, #candidates).

        ``logit`` and ``mirror`` points are always inside. ``box`` points outside are regenerated with fresh
        noise up to ``max_oob_attempts`` times (``resample_oob``) and the rest marked invalid
        (the caller replaces them by design draws), or clipped when ``resample_oob`` is False.
        """
        bc = self.config.breeder
        model = self._snapshot()
        unit = self.ddpm.decode(self.ddpm.generate(targets, self.sample_generator, model)).cpu()
        finite = torch.isfinite(unit).all(dim=1)  # a non-finite point is never simulated
        if self.config.model.parametrisation != "box":
            return unit.clamp(0.0, 1.0), finite, int((~finite).sum()), len(unit)
        oob = self._out_of_box(unit)
        n_oob, n_cand = int(oob.sum()), unit.shape[0]
        if not bc.resample_oob:
            return unit.clamp(0.0, 1.0), finite, n_oob, n_cand
        for _ in range(bc.max_oob_attempts):
            rows = torch.nonzero(oob)[:, 0]
            if rows.numel() == 0:
                break
            fresh = self.ddpm.decode(
                self.ddpm.generate(targets[rows], self.sample_generator, model)).cpu()
            bad = self._out_of_box(fresh)
            unit[rows] = fresh
            oob[rows] = bad
            n_oob += int(bad.sum())
            n_cand += rows.numel()
        return unit, ~oob, n_oob, n_cand

    def _generator_children(self, targets: Tensor) -> tuple[Tensor, Tensor, int, int]:
        """DDPM points for ``targets`` with the child jitter: (unit points, their targets,
        #OOB candidates, #candidates); invalid generations are dropped."""
        bc = self.config.breeder
        unit, valid, n_oob, n_cand = self._generate(targets)
        unit, targets = unit[valid], targets[valid]
        if bc.child_jitter > 0:
            unit = jitter(unit, bc.child_jitter, self.generator)
        elif bc.child_jitter_scale > 0:
            sigma = adaptive_bandwidth(unit, bc.child_jitter_scale)
            unit = jitter(unit, sigma[:, None], self.generator)
        return unit, targets, n_oob, n_cand

    def _bred(self, n_bred: int) -> tuple[Tensor, Tensor, Tensor, int, int]:
        """The bred share of a generation: (unit points, targets (NaN but for the generator's),
        sources, #OOB candidates, #candidates), split among the generator, local children and
        recombinations of reservoir sims drawn like the targets, ∝ c^alpha (mixture.py)."""
        bc = self.config.breeder
        if n_bred == 0:
            return (torch.empty(0, self.dim), torch.zeros(0), torch.zeros(0, dtype=torch.long),
                    0, 0)
        with self._data_lock:
            shares = self.mix.update(self.history)
            self.stats.update({f"{k}_share": v for k, v in shares.items()})
        counts = self.mix.split(n_bred)
        n_gen, n_local = counts.get("generator", 0), counts.get("local", 0)
        n_recomb = counts.get("recombination", 0)
        if n_gen > 0:
            self._ensure_trained()
        with self._data_lock:
            if self.config.data.smoothing_neighbours == 0:
                self._choose_smoothing()
            cond = self._reservoir_conditions()
            pick = sample_indices(cond, n_local + 2 * n_recomb, bc.loss_sampling_alpha,
                                  self.generator) if n_local + n_recomb else torch.zeros(0, dtype=torch.long)
            parents = self.reservoir.unit[: self.reservoir.size][pick]
        targets = sample_targets(cond, n_gen, bc.loss_sampling_strategy, bc.loss_sampling_alpha,
                                 bc.loss_sampling_quantile, self.generator)
        gen_unit, n_oob, n_cand = torch.empty(0, self.dim), 0, 0
        if n_gen > 0:
            gen_unit, targets, n_oob, n_cand = self._generator_children(targets)
        local_unit = jitter(parents[:n_local], bc.local_sigma, self.generator)
        pairs = parents[n_local:]
        recomb_unit = recombine(pairs[:n_recomb], pairs[n_recomb:], bc.recombination_spread,
                                self.generator)
        parts = (("generator", gen_unit), ("local", local_unit), ("recombination", recomb_unit))
        source = torch.cat([torch.full((unit.shape[0],), PROPOSAL_SOURCES[name]) for name, unit in parts])
        n_other = local_unit.shape[0] + recomb_unit.shape[0]
        return (torch.cat([unit for _, unit in parts]),
                torch.cat([targets.float(), torch.full((n_other,), float("nan"))]),
                source, n_oob, n_cand)

    def request_training(self) -> int:
        """Train between generations: ``train_steps_per_ask`` inline steps in synchronous mode
        (returns how many ran); asynchronous training is scheduled at every generation (0)."""
        self.trainer.raise_if_failed()
        bc = self.config.breeder
        if not bc.activate_breed or not bc.synchronous:
            return 0
        return self.train_now(bc.train_steps_per_ask)

    # ------------------------------------------------------------------ generations, in two phases
    def draw_generation(self, n: int) -> dict[str, Any]:
        """Draw (not yet write) a generation of ``n`` points: the bred share at this generation's
        ratio, the rest from the design, shuffled. :meth:`commit` writes it at chosen ids."""
        self.trainer.raise_if_failed()
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        bc = self.config.breeder
        t0 = time.perf_counter()
        self._train_between_generations()
        target_ratio = self._target_ratio() if bc.activate_breed else 0.0
        with self._data_lock:
            can_breed = self.reservoir.size >= bc.min_reservoir_size
        n_bred = math.floor(n * target_ratio + 1e-9) if can_breed else 0
        bred_unit, targets, source, n_oob, n_cand = self._bred(n_bred)
        n_valid = bred_unit.shape[0]
        design_unit = self.design.draw(n - n_valid)
        unit = torch.cat([bred_unit, design_unit])
        source = torch.cat([source, torch.full((n - n_valid,), SOURCE_DESIGN)])
        target = torch.cat([targets.float(), torch.full((n - n_valid,), float("nan"))])
        perm = torch.randperm(n, generator=self.generator)
        self.stats.update(
            ratio=n_valid / n if n else 0.0, ratio_target=target_ratio,
            oob_rate=n_oob / n_cand if n_cand else 0.0, oob_fallback=float(n_bred - n_valid),
            generate_s=time.perf_counter() - t0,
            train_steps=float(self.ddpm.steps),  # the steps this generation saw (not racy)
        )
        if self.ratio is not None:
            with self.trainer.lock:
                self.ratio.freeze_view()
        return {"unit": unit[perm], "is_bred": source[perm] != SOURCE_DESIGN,
                "source": source[perm], "target": target[perm],
                "generation": self.schedule.generation}

    def _target_ratio(self) -> float:
        """R of the generation being drawn, from the ratio controller (schedule.py)."""
        with self.trainer.lock:
            seen = self.training.take_ess()
        with self._data_lock:
            for ess in seen:
                self.ratio_control.observe_ess(ess)
            return self.ratio_control.next_ratio(self.history, self.schedule.generation,
                                                 self.n_asked)

    def commit(self, staged: dict[str, Any], first: int) -> Generation:
        """Write a drawn generation at ids ``first …`` (overwriting asked ids nobody has
        submitted; ``first`` ≤ ``n_asked``) and advance the schedule."""
        self.trainer.raise_if_failed()
        if not 0 <= first <= self.n_asked:
            raise ValueError(f"a generation can be written from id 0 to {self.n_asked}, not {first}")
        k = staged["unit"].shape[0]
        with self._data_lock:
            self.history.write(first, staged["unit"], staged["is_bred"], staged["generation"],
                               staged["target"], staged.get("source"))
        self.n_asked = max(self.n_asked, first + k)
        self.schedule.advance()
        for key in ("ratio", "ratio_target", "oob_rate"):
            self.records[key].append(self.stats[key])
        self._schedule_training()
        return Generation(self._to_box(staged["unit"]), torch.arange(first, first + k))

    # --------------------------------------------------------------------------- state
    def _training_state(self) -> tuple[dict[str, Any], int]:
        """The generator's training state now and the steps of its budget not yet run (the
        caller holds the trainer's lock)."""
        if isinstance(self.trainer, ProcessTrainer):
            return self.trainer.training_state()
        return to_cpu(self.training.state_dict()), self.trainer.pending

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume exactly, as CPU tensors and plain types (loads with
        ``torch.load(weights_only=True)`` on any machine; exact resume needs the same device type)."""
        with self.trainer.lock, self._data_lock:
            training, pending = self._training_state()
            return to_cpu({
                "format_version": FORMAT_VERSION,
                "kind": "ogas",
                "config": dataclasses.asdict(self.config),
                "bounds": self.bounds.clone(),
                "n_asked": self.n_asked,
                "schedule": self.schedule.state_dict(),
                "adaptive": self.ratio_control.state_dict(),
                "history": self.history.state_dict(),
                "mix": self.mix.state_dict(),
                "queues": self.queues.state_dict(),
                "reservoir": self.reservoir.state_dict(),
                "design": self.design.state_dict(),
                "ddpm": training["ddpm"],
                "ratio": training["ratio"],
                "generators": {
                    "main": self.generator.get_state(),
                    "sample": self.sample_generator.get_state(),
                    "train": training["train"],
                    "batch": training["batch"],
                },
                "trainer_steps": self.trainer.steps + self.trainer.pending - pending,
                # steps scheduled but not yet run, and the data they train on: a resumed run
                # runs them as the uninterrupted one would have
                "trainer_pending": pending,
                "train_data": None if self._train_data is None else self._train_data.state_dict(),
                "ess_seen": training["ess_seen"],
                "stats": {**self.stats, "ddpm_loss": training["ddpm_loss"],
                          "ratio_ess": training["ratio_ess"],
                          "loss_stride": float(training["loss_stride"])},
                "records": {**{k: list(v) for k, v in self.records.items()},
                            "ddpm_loss": training["loss_curve"]},
            })

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` output (any device; same dimension and capacity)."""
        version = int(state.get("format_version", -1))
        if version != FORMAT_VERSION or state.get("kind") != "ogas":
            raise ValueError(f"not an OGAS breeder state of format {FORMAT_VERSION}: "
                             f"kind={state.get('kind')!r}, format_version={version}")
        bounds = torch.as_tensor(state["bounds"], dtype=torch.float32)
        if bounds.shape != self.bounds.shape:
            raise ValueError(f"state bounds {tuple(bounds.shape)} != {tuple(self.bounds.shape)}")
        if (state["ratio"] is None) != (self.ratio is None):
            raise ValueError("learn_sampling_ratio differs between the state and this breeder")
        stats, records, gens = state["stats"], state["records"], state["generators"]
        training = {"ddpm": state["ddpm"], "ratio": state["ratio"], "train": gens["train"],
                    "batch": gens["batch"], "ddpm_loss": stats.get("ddpm_loss", float("nan")),
                    "ratio_ess": stats.get("ratio_ess", 1.0),
                    "loss_stride": int(stats.get("loss_stride", 1)),
                    "loss_curve": records.get("ddpm_loss", []),
                    "ess_seen": state.get("ess_seen", [])}
        with self.trainer.lock, self._data_lock:
            self.n_asked = int(state["n_asked"])
            self.schedule.load_state_dict(state["schedule"])
            self.ratio_control.load_state_dict(state.get("adaptive"))
            self.history.load_state_dict(state["history"])
            if "mix" in state:
                self.mix.load_state_dict(state["mix"])
            self.queues.load_state_dict(state["queues"])
            self.reservoir.load_state_dict(state["reservoir"])
            self.design.load_state_dict(state["design"])
            self.training.load_state_dict(training)
            if isinstance(self.trainer, ProcessTrainer):
                self.trainer.load(training)
            load_generator_state(self.generator, gens["main"])
            load_generator_state(self.sample_generator, gens["sample"])
            self.trainer.steps = int(state["trainer_steps"])
            self._train_data = TrainingData.from_state(state.get("train_data"))
            self.stats = {**self.stats, **{k: float(v) for k, v in stats.items()
                                           if k not in TRAINING_STATS}}
            self.records = {k: list(v) for k, v in records.items() if k != "ddpm_loss"}
        pending = int(state.get("trainer_pending", 0))
        if pending and not self.config.breeder.synchronous:
            self.trainer.refill(pending)

    # --------------------------------------------------------------------- Breeder protocol
    def ask(self, n: int) -> Tensor:
        return self.next_generation(n).points

    def next_generation(self, n: int, after: int | None = None) -> Generation:
        """A generation drawn now and written at ids ``after + 1 …`` (the next free ids by
        default), rewriting asked ids nobody submitted."""
        staged = self.draw_generation(n)
        return self.commit(staged, self.n_asked if after is None else int(after) + 1)

    def tell(self, sim_ids: Tensor, values: Tensor) -> None:
        """Per-sample signals of asked sims. Values are clipped at ``max_loss_value``;
        non-finite values are dropped and counted (``breeder/dropped_values``); unknown ids or
        mismatched shapes raise ValueError."""
        self.tell_many(sim_ids, values, torch.zeros(torch.as_tensor(sim_ids).shape, dtype=torch.long))

    def tell_many(self, sim_ids: Tensor, values: Tensor, calls: Tensor) -> None:
        """Consecutive tell calls at once (see :meth:`Breeder.tell_many`): the history, the
        min/max queues and the reservoir end as one call at a time would leave them (sims enter
        the reservoir in the order they reach ``min_observations``)."""
        self.trainer.raise_if_failed()
        ids, vals, calls, dropped = validate_signals(sim_ids, values, self.n_asked, calls)
        self.stats["dropped_values"] += dropped
        if ids.numel() == 0:
            return
        dc = self.config.data
        vals = vals.clamp(max=dc.max_loss_value)
        with self._data_lock:
            self.queues.push(vals, calls)
            h = self.history
            touched, reached = h.update(ids, vals, calls, dc.min_observations)
            slots = h.slot[touched]
            live = slots >= 0  # refreshed before the newcomers may take their slots
            self.reservoir.refresh(slots[live], h.signal[touched[live]])
            joins = (slots == NOT_IN_RESERVOIR) & (reached >= 0)
            fresh = touched[joins][torch.sort(reached[joins], stable=True).indices]
            if fresh.numel():
                new_slots, evicted = self.reservoir.add(fresh, h.unit[fresh], h.signal[fresh],
                                                        h.is_bred[fresh], h.generation[fresh])
                h.slot[fresh] = new_slots
                h.slot[evicted] = EVICTED

    def metrics(self) -> dict[str, float]:
        """``breeder/*`` scalars (non-finite ones, e.g. the loss before any step, are left out)."""
        self.trainer.raise_if_failed()
        out = {
            "breeder/ratio": self.stats["ratio"],
            "breeder/ratio_target": self.stats["ratio_target"],
            "breeder/ddpm_loss": self.training.ddpm_loss,
            "breeder/oob_rate": self.stats["oob_rate"],
            "breeder/oob_fallback": self.stats["oob_fallback"],
            "breeder/generation": float(self.schedule.generation),
            "breeder/ratio_ess": self.training.ratio_ess,
            "breeder/train_steps": self.stats["train_steps"],
            "breeder/reservoir_size": float(self.reservoir.size),
            "breeder/dropped_values": self.stats["dropped_values"],
            "breeder/generate_s": self.stats["generate_s"],
            "breeder/train_wait_s": self.stats["train_wait_s"],
            "breeder/train_cpu_s": self.trainer.busy_s,
            "breeder/smoothing_k": self.stats.get("smoothing_k", float("nan")),
        }
        if self.config.breeder.proposal_mix != "generator":
            out.update({f"breeder/{k}_share": self.stats[f"{k}_share"] for k in self.mix.shares})
            for key, value in self.mix.last.items():
                out[f"breeder/{key}"] = value
        out.update({f"breeder/{k}": v for k, v in self.ratio_control.metrics().items()})
        return {k: float(v) for k, v in out.items() if math.isfinite(v)}

    def start(self) -> None:
        """Start the background trainer (no-op in synchronous mode or with breeding off)."""
        bc = self.config.breeder
        if not bc.synchronous and bc.activate_breed:
            self.trainer.start()

    def close(self) -> None:
        """Stop the background trainer; idempotent. Asking still works (no more training)."""
        self.trainer.close()


    def design_weights(self, sim_ids: Tensor) -> Tensor | None:
        """p_design/p_asked at asked sims from the ratio classifier (see :func:`design_over_pool`),
        clipped at ``ratio_clip``, mean 1; None before the classifier has trained."""
        ids = torch.as_tensor(sim_ids, dtype=torch.long)
        if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= self.n_asked):
            raise ValueError("sim ids out of range")
        if self.ratio is None or ids.numel() == 0:
            return None
        with self._data_lock:
            b = float(self.history.is_bred[: self.n_asked].double().mean()) if self.n_asked else 0.0
            b_res = self.reservoir.bred_fraction()
            unit = self.history.unit[ids].clone()
        if not (0.0 < b < 1.0 and 0.0 < b_res < 1.0) or self.ratio.view_steps == 0:
            return None
        with self.trainer.lock:
            p = self.ratio.p_bred_view(unit).cpu()
        return design_over_pool(p, b_res, b, self.config.breeder.ratio_clip)

    # ------------------------------------------------------------------------- inspection
    def bred_mask(self, sim_ids: Tensor) -> Tensor:
        ids = torch.as_tensor(sim_ids, dtype=torch.long)
        with self._data_lock:
            return self.history.is_bred[ids].clone()

    def parameters_of(self, sim_ids: Tensor) -> Tensor:
        """Box coordinates of asked sims (Melissa's parameter table lookup)."""
        ids = torch.as_tensor(sim_ids, dtype=torch.long)
        if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= self.n_asked):
            raise ValueError("sim ids out of range")
        return self._to_box(self.history.unit[ids])

    def plots(self, outdir: str) -> list[str]:
        """Write the breeder PNGs (see :func:`plot_breeder`) into ``outdir``."""
        from nearpole_exp.acquisition.plots import plot_breeder  # matplotlib only when plotting

        return [str(p) for p in plot_breeder(self, outdir)]

    def plot_data(self) -> dict[str, Any]:
        """What :func:`nearpole_exp.acquisition.plots.plot_breeder` draws: per-sim parameters,
        generation, provenance and score, the DDPM loss curve and per-generation ratios."""
        with self.trainer.lock, self._data_lock:
            n = self.history.size
            return {
                "params": self._to_box(self.history.unit[:n]),
                "generation": self.history.generation[:n].clone(),
                "is_bred": self.history.is_bred[:n].clone(),
                "signal": self.history.signal[:n].clone(),
                "ddpm_loss": torch.tensor(self.training.loss_curve).reshape(-1, 2),
                "breed_ratio": list(self.records["ratio"]),
                "breed_ratio_target": list(self.records["ratio_target"]),
                "oob_rate": list(self.records["oob_rate"]),
                "bounds": self.bounds.clone(),
            }
