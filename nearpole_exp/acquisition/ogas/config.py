"""Typed, validated configs of OGAS: the breeder's mixing and conditioning, the DDPM, the data.

Every field has a default sized for a 2-core CPU; ``__post_init__`` rejects bad values with a
``ConfigError`` naming the field. Strings that select a variant are validated against the tuples
below (OmegaConf has no ``Literal``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from nearpole_exp.acquisition.config import RAMP_BREAKPOINT, YIELD_WINDOW, check_ratio_schedule
from nearpole_exp.designs import DESIGNS
from nearpole_exp.errors import check

LOSS_SAMPLING_STRATEGIES = ("proportional", "uniform_quantile")
DDIM_STEPS = 25  # DDIM's default number of sampling steps
PROPOSAL_MIXES = ("generator", "fixed", "adaptive")
ADAPTIVE_RATIOS = ("off", "ess", "yield")
LEGACY_ADAPTIVE = {"true": "ess", "false": "off"}  # the former boolean switch
MIX_DEFAULTS = {"local_share": 0.5, "local_sigma": 0.1, "mix_floor": 0.1,
                "recombination_share": 0.0, "recombination_spread": 0.25}
BETA_SCHEDULES = ("cosine", "linear")
SAMPLERS = ("ddpm", "ddim")
PARAMETRISATIONS = ("box", "logit", "mirror")
CONDITIONS = ("minmax", "rank")
ADAPTIVE_ESS_TARGET = 0.5
ADAPTIVE_GAIN = 0.5
LOGIT_EPS = 1e-4  # defaults of the parametrisation-specific DDPM fields
MIRROR_MARGIN = 0.5


@dataclass
class BreederConfig:
    """How OGAS mixes bred and design points, picks target difficulties and debiases its history.

    The defaults are the shipped preset (``ogas/breeder=ogas``), each measured before it became
    one (docs/design_notes.md). Melissa's harness is ``adaptive_ratio="off"``,
    ``end_breed_ratio=0.5``, ``breakpoint=4``, ``loss_sampling_alpha=1``, ``child_jitter=0``,
    ``proposal_mix="generator"``, ``non_breed_design="uniform"`` with the DDPM's ``sampler="ddim"``
    and the data's ``buffer_size=6000``, ``smoothing_neighbours=1``.

    Breed ratio R: the share of bred points in a generation. With ``adaptive_ratio="off"`` it is
    ramped linearly from ``start_breed_ratio`` to ``end_breed_ratio`` over ``breakpoint``
    generations (``schedule_on="generation"``, Melissa's rule) or until ``budget_breakpoint`` of
    ``total_budget`` simulations have been asked (``schedule_on="budget"``). Generation 0 is always
    drawn from ``non_breed_design``.
    """

    activate_breed: bool = True
    start_breed_ratio: float = 0.0
    end_breed_ratio: float = 0.9
    breakpoint: int = RAMP_BREAKPOINT
    schedule_on: str = "generation"
    total_budget: int | None = None
    budget_breakpoint: float = 0.3
    # adaptive ratio, in place of the ramp: "yield" (the default): R = start + (end − start)·p,
    # p the probability that bred sims were harder for the surrogate than design sims (their
    # first-look yields over yield_window generations, acquisition/yields.py), 0.45 before any
    # evidence: while breeding finds the hard regions it breeds up to end_breed_ratio, once the
    # surrogate has caught up there the design takes the points back; "ess": from generation 1
    # at start_breed_ratio, R ← clip(R + gain·(ESS − target), 0, end_breed_ratio) each
    # generation, ESS the ratio classifier's mean since the last one; "off": the ramp
    adaptive_ratio: str = "yield"
    adaptive_ess_target: float = ADAPTIVE_ESS_TARGET
    adaptive_gain: float = ADAPTIVE_GAIN
    # target difficulties: P(c_j) ∝ max(c_j, 0)^alpha, or c* ~ U[Q_quantile(c), max c]; alpha 2
    # leans each generation on the hardest sims, as Breed's parents do
    loss_sampling_strategy: str = "proportional"
    loss_sampling_alpha: float = 2.0
    loss_sampling_quantile: float = 0.9
    # debiasing: ratio classifier P(bred | λ) (learn_sampling_ratio) or non-bred-only training
    learn_sampling_ratio: bool = True
    ratio_clip: float = 10.0
    train_only_with_non_breed_samples: bool = False
    ratio_mlp_hidden_dim: int = 64
    ratio_mlp_dropout: float = 0.0
    ratio_mlp_weight_decay: float = 0.01
    ratio_mlp_label_smoothing: float = 0.0
    ratio_mlp_lr: float = 1e-3
    # bred points perturbed by N(0, child_jitter²) per unit-box axis, reflected at the faces: a
    # kernel smoothing of the DDPM's samples over the conditional's support, since the surrogate
    # needs data on both sides of a hard region's edge, where the conditional thins out (0: off)
    child_jitter: float = 0.05
    # the same with a per-point std child_jitter_scale · r_k, r_k the distance to the k-th
    # nearest other bred point of the generation, k = ⌈√n⌉: the width follows the targeted
    # region's size instead of being fixed in box units (0: off)
    child_jitter_scale: float = 0.0
    # proposals of the bred share: the loss-conditioned generator alone ("generator", Melissa's
    # OGAS), or with a share of local children N(parent, local_sigma²) of reservoir sims drawn
    # like the targets, ∝ c^alpha: a fixed local_share ("fixed"), or one set each generation by
    # the first-look yield of each proposal over yield_window generations, never below
    # mix_floor for either ("adaptive", starting at local_share; mixture.py)
    proposal_mix: str = "adaptive"
    local_share: float = MIX_DEFAULTS["local_share"]
    local_sigma: float = MIX_DEFAULTS["local_sigma"]
    mix_floor: float = MIX_DEFAULTS["mix_floor"]
    # a third proposal: children on the line through two reservoir sims drawn like the targets,
    # a + u·(b − a), u ~ U(−spread, 1 + spread) (acquisition/children.py), with this share
    # (fixed) or starting share (adaptive); the generator takes 1 − local − recombination
    recombination_share: float = MIX_DEFAULTS["recombination_share"]
    recombination_spread: float = MIX_DEFAULTS["recombination_spread"]
    yield_window: int = YIELD_WINDOW
    # out-of-bounds generations (box parametrisation only): regenerate, then design draws
    resample_oob: bool = True
    max_oob_attempts: int = 3
    non_breed_design: str = "sobol"
    # reservoir must hold this many sims before a generation may be bred
    min_reservoir_size: int = 16
    # training cadence: train_steps_per_ask DDPM steps per generation, on the background thread
    # while the surrogate trains (on the reservoir as it was when the last generation was drawn;
    # the next generation waits for them, so a seeded run is reproducible) or inline just before
    # each generation (synchronous); at least min_train_steps before the first bred generation.
    # 25: on the landscape and Burgers the held-out errors were the same within their spread at
    # 25, 50, 100 and 200 steps per generation, and 25 costs 1.59x / 1.18x a uniform run's wall
    # against 2.10x / 1.35x at 200 (benchmarks/ogas_budget.md)
    synchronous: bool = False
    train_steps_per_ask: int = 25
    min_train_steps: int = 200
    train_wait_timeout_s: float = 120.0
    # where the steps run: a child process with a core of its own (true; waited for at once
    # in synchronous mode) or this process (a background thread, or inline when synchronous).
    # The same steps and numbers either way; the process measured 1.19x / 1.30x a uniform
    # landscape run's wall / CPU against the thread's 1.22x / 1.32x; on Burgers the two are
    # within their spread (benchmarks/ogas_cost.md)
    trainer_process: bool = True
    trainer_num_threads: int = 1
    trainer_sleep_s: float = 0.0
    loss_log_every: int = 10

    def __post_init__(self) -> None:
        check_ratio_schedule(self.start_breed_ratio, self.end_breed_ratio, self.breakpoint,
                              self.schedule_on, self.total_budget, self.budget_breakpoint,
                              ("start_breed_ratio", "end_breed_ratio"))
        check(self.loss_sampling_strategy in LOSS_SAMPLING_STRATEGIES, "loss_sampling_strategy",
              f"must be one of {LOSS_SAMPLING_STRATEGIES}, got {self.loss_sampling_strategy!r}")
        check(self.loss_sampling_alpha >= 0, "loss_sampling_alpha", "must be >= 0")
        check(0.0 <= self.loss_sampling_quantile < 1.0, "loss_sampling_quantile",
              "must lie in [0, 1)")
        check(self.ratio_clip > 1.0, "ratio_clip", "must exceed 1")
        check(0.0 < self.adaptive_ess_target < 1.0, "adaptive_ess_target", "must lie in (0, 1)")
        check(self.adaptive_gain > 0.0, "adaptive_gain", "must be positive")
        check(0.0 <= self.child_jitter <= 0.5, "child_jitter", "must lie in [0, 0.5]")
        check(0.0 <= self.child_jitter_scale <= 10.0, "child_jitter_scale",
              "must lie in [0, 10]")
        check(self.child_jitter == 0.0 or self.child_jitter_scale == 0.0, "child_jitter_scale",
              "is an alternative to child_jitter: set one of them")
        self.adaptive_ratio = LEGACY_ADAPTIVE.get(str(self.adaptive_ratio).lower(),
                                                  self.adaptive_ratio)
        check(self.adaptive_ratio in ADAPTIVE_RATIOS, "adaptive_ratio",
              f"must be one of {ADAPTIVE_RATIOS}, got {self.adaptive_ratio!r}")
        ess_driven = self.adaptive_ratio == "ess"
        for key, default in (("adaptive_ess_target", ADAPTIVE_ESS_TARGET),
                             ("adaptive_gain", ADAPTIVE_GAIN)):
            check(ess_driven or getattr(self, key) == default, key,
                  "is used only with adaptive_ratio=ess")
        check(self.adaptive_ratio == "off" or (self.schedule_on == "generation"
                                          and self.breakpoint == RAMP_BREAKPOINT), "breakpoint",
              "the ramp (breakpoint, schedule_on) is replaced by adaptive_ratio: leave it unset")
        check(not ess_driven or self.learn_sampling_ratio, "adaptive_ratio",
              "is driven by the ratio classifier's ESS: needs learn_sampling_ratio=true")
        check(not (self.learn_sampling_ratio and self.train_only_with_non_breed_samples),
              "train_only_with_non_breed_samples",
              "is an alternative to learn_sampling_ratio: enable at most one")
        check(self.ratio_mlp_hidden_dim >= 1, "ratio_mlp_hidden_dim", "must be >= 1")
        check(0.0 <= self.ratio_mlp_dropout < 1.0, "ratio_mlp_dropout", "must lie in [0, 1)")
        check(self.ratio_mlp_weight_decay >= 0, "ratio_mlp_weight_decay", "must be >= 0")
        check(0.0 <= self.ratio_mlp_label_smoothing < 0.5, "ratio_mlp_label_smoothing",
              "must lie in [0, 0.5)")
        check(0 < self.ratio_mlp_lr < math.inf, "ratio_mlp_lr",
              f"must be positive and finite, got {self.ratio_mlp_lr}")
        check(self.proposal_mix in PROPOSAL_MIXES, "proposal_mix",
              f"must be one of {PROPOSAL_MIXES}, got {self.proposal_mix!r}")
        check(0.0 <= self.local_share <= 1.0, "local_share", "must lie in [0, 1]")
        check(0.0 < self.local_sigma <= 0.5, "local_sigma", "must lie in (0, 0.5]")
        check(0.0 <= self.mix_floor <= 0.5, "mix_floor", "must lie in [0, 0.5]")
        check(0.0 <= self.recombination_share <= 1.0, "recombination_share", "must lie in [0, 1]")
        check(self.local_share + self.recombination_share <= 1.0 + 1e-9, "recombination_share",
              f"local_share + recombination_share must not exceed 1, got {self.local_share} + "
              f"{self.recombination_share}")
        check(0.0 <= self.recombination_spread <= 1.0, "recombination_spread", "must lie in [0, 1]")
        in_use = sum(v > 1e-12 for v in (1.0 - self.local_share - self.recombination_share,
                                         self.local_share, self.recombination_share))
        check(self.proposal_mix != "adaptive" or self.mix_floor * in_use <= 1.0, "mix_floor",
              f"× the {in_use} proposals in use must not exceed 1, got {self.mix_floor}")
        check(self.yield_window >= 1, "yield_window", "must be >= 1")
        check(self.yield_window == YIELD_WINDOW or self.proposal_mix == "adaptive"
              or self.adaptive_ratio == "yield", "yield_window",
              "is used only with proposal_mix=adaptive or adaptive_ratio=yield")
        for key, default in MIX_DEFAULTS.items():
            check(self.proposal_mix != "generator" or getattr(self, key) == default, key,
                  "is used only with proposal_mix=fixed or adaptive")
        check(self.proposal_mix == "adaptive" or self.mix_floor == MIX_DEFAULTS["mix_floor"],
              "mix_floor", "is used only with proposal_mix=adaptive")
        check(self.max_oob_attempts >= 0, "max_oob_attempts", "must be >= 0")
        check(self.non_breed_design in DESIGNS, "non_breed_design", f"must be one of {DESIGNS}")
        check(self.min_reservoir_size >= 1, "min_reservoir_size", "must be >= 1")
        check(self.train_steps_per_ask >= 0, "train_steps_per_ask", "must be >= 0")
        check(self.min_train_steps >= 0, "min_train_steps", "must be >= 0")
        check(self.train_wait_timeout_s > 0, "train_wait_timeout_s", "must be positive")
        check(self.trainer_num_threads >= 0, "trainer_num_threads", "must be >= 0 (0: leave)")
        check(self.trainer_sleep_s >= 0, "trainer_sleep_s", "must be >= 0")
        check(self.loss_log_every >= 1, "loss_log_every", "must be >= 1")


@dataclass
class DDPMConfig:
    """The conditional DDPM over normalised parameters: MLP denoiser, schedule, sampler, CFG.

    ``parametrisation="logit"`` diffuses logit(unit λ) so decoded points are always inside the
    box (the map's stretch makes generations denser towards the faces); ``"box"`` diffuses
    2·unit−1 ∈ [−1, 1] (Melissa; smoothing thins generations at the faces); ``"mirror"`` diffuses
    2·unit−1 with training points reflected across a face within ``mirror_margin`` of it (see
    :func:`~nearpole_exp.acquisition.ogas.ddpm.mirror_augment`) and folds samples back, so they are inside
    and even up to the faces. ``guidance_scale`` s: ε_∅ + s(ε_c − ε_∅); 1 is the conditional
    model, s > 1 extrapolates past it. ``clip_denoised`` clips the predicted
    x̂0 to the data range at every sampling step, which also keeps box samples inside; with
    ``box`` and ``clip_denoised=False`` (Melissa-like) samples can leave the box and the breeder's
    OOB loop handles them.

    ``sampler="ddpm"`` (ancestral, all timesteps) fills the targeted region more evenly than
    25-step deterministic DDIM from a DDPM trained for a few thousand steps; a guidance scale of 2
    pushed the landscape's bred points onto the box's faces (max/p99 ratios 1.13 / 1.03 against
    1.41 / 1.45 at 1; docs/design_notes.md).
    """

    model_dim: int = 64
    depth: int = 3
    timesteps: int = 100
    beta_schedule: str = "cosine"
    lr: float = 1e-3
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    guidance_scale: float = 1.0
    cond_drop_prob: float = 0.1
    sampler: str = "ddpm"
    sample_steps: int = DDIM_STEPS
    ddim_eta: float = 0.0
    ema_decay: float = 0.995
    parametrisation: str = "logit"
    logit_eps: float = LOGIT_EPS
    mirror_margin: float = MIRROR_MARGIN
    clip_denoised: bool = True

    def __post_init__(self) -> None:
        check(self.model_dim >= 4, "model_dim", "must be >= 4")
        check(self.depth >= 1, "depth", "must be >= 1")
        check(self.timesteps >= 2, "timesteps", "must be >= 2")
        check(self.beta_schedule in BETA_SCHEDULES, "beta_schedule",
              f"must be one of {BETA_SCHEDULES}")
        check(0 < self.lr < math.inf, "lr", f"must be positive and finite, got {self.lr}")
        check(self.weight_decay >= 0, "weight_decay", "must be >= 0")
        check(self.grad_clip > 0, "grad_clip", "must be positive")
        check(self.guidance_scale >= 0, "guidance_scale", "must be >= 0")
        check(0.0 <= self.cond_drop_prob < 1.0, "cond_drop_prob", "must lie in [0, 1)")
        check(self.sampler in SAMPLERS, "sampler", f"must be one of {SAMPLERS}")
        ddim = self.sampler == "ddim"
        check(ddim or (self.sample_steps, self.ddim_eta) == (DDIM_STEPS, 0.0),
              "sample_steps" if self.sample_steps != DDIM_STEPS else "ddim_eta",
              "is used only with sampler=ddim (ancestral sampling runs every timestep)")
        check(not ddim or 1 <= self.sample_steps <= self.timesteps, "sample_steps",
              "must lie in [1, timesteps]")
        check(0.0 <= self.ddim_eta <= 1.0, "ddim_eta", "must lie in [0, 1]")
        check(0.0 <= self.ema_decay < 1.0, "ema_decay", "must lie in [0, 1)")
        check(self.parametrisation in PARAMETRISATIONS, "parametrisation",
              f"must be one of {PARAMETRISATIONS}")
        check(0.0 < self.logit_eps < 0.01, "logit_eps", "must lie in (0, 0.01)")
        check(0.0 < self.mirror_margin <= 1.0, "mirror_margin", "must lie in (0, 1]")
        check(self.parametrisation == "logit" or self.logit_eps == LOGIT_EPS, "logit_eps",
              f"is used only with parametrisation=logit, not {self.parametrisation}")
        check(self.parametrisation == "mirror" or self.mirror_margin == MIRROR_MARGIN, "mirror_margin",
              f"is used only with parametrisation=mirror, not {self.parametrisation}")


@dataclass
class DataConfig:
    """How per-sample signals become per-sim scores and DDPM conditions, and the reservoir size.

    Per sim: s ← (1−α)·s + α·mean(new batch values) with α = ``ema_loss_alpha`` (first value
    taken as is), raw values clipped at ``max_loss_value``. Condition: ``minmax`` normalises by the
    mean of the last ``min_max_queue_length`` batch minima/maxima (Melissa); ``rank`` uses the
    empirical CDF of s within the reservoir (stationary by construction).

    The reservoir holds the recent ``buffer_size`` = 256 scored sims (Breed's window): old sims'
    scores are training losses the surrogate has since fit, so a long history conditions the
    DDPM on where the error was, not where it is. ``smoothing_neighbours=0`` picks k by
    leave-one-out at every generation (noisy scores get averaged, clean ones barely; a fixed 16
    was local in 2-D but blurred the 4-D PDE boxes).
    """

    buffer_size: int = 256
    batch_size: int = 128
    ema_loss_alpha: float = 0.3
    normalize_losses: bool = True
    min_max_queue_length: int = 20
    clip_loss_norm_to_3_sigma: bool = False
    max_loss_value: float = 5.0
    min_observations: int = 1
    condition: str = "minmax"
    # each sim's score averaged over its k nearest reservoir sims in the unit box before it
    # becomes a condition (1: the sim's own score, Melissa's; 0: k chosen by leave-one-out on the
    # reservoir at every generation, so that noisy scores are averaged and clean ones are not)
    smoothing_neighbours: int = 0

    def __post_init__(self) -> None:
        check(self.smoothing_neighbours >= 0, "smoothing_neighbours",
              "must be >= 0 (0: chosen by leave-one-out, 1: no smoothing)")
        check(self.buffer_size >= 2, "buffer_size", "must be >= 2")
        check(self.batch_size >= 2, "batch_size", "must be >= 2")
        check(0.0 < self.ema_loss_alpha <= 1.0, "ema_loss_alpha", "must lie in (0, 1]")
        check(self.min_max_queue_length >= 1, "min_max_queue_length", "must be >= 1")
        check(self.max_loss_value > 0, "max_loss_value", "must be positive")
        check(self.min_observations >= 1, "min_observations", "must be >= 1")
        check(self.condition in CONDITIONS, "condition", f"must be one of {CONDITIONS}")


@dataclass
class ExperimentConfig:
    """The three parts of an OGAS breeder config (Melissa's ExperimentConfig)."""

    breeder: BreederConfig = field(default_factory=BreederConfig)
    model: DDPMConfig = field(default_factory=DDPMConfig)
    data: DataConfig = field(default_factory=DataConfig)
