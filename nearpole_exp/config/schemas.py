"""The schemas of the loop's own config groups (trainer, logger, the top level), the keys that do
not define an experiment, and the memory check that refuses sizes a machine cannot hold."""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, field
from typing import Any

from omegaconf import MISSING

from nearpole_exp.errors import check

LOSSES = ("auto", "mse", "relative", "nrmse", "residual")
# Keys that do not define an experiment: changing them neither invalidates a checkpoint nor makes
# another sweep point (nor another W&B group). A key matches itself and everything below it.
NON_DEFINING_KEYS = ("resume", "logger", "hydra", "paths", "output_dir", "tags", "trainer.progress",
                     "trainer.plots", "trainer.device", "trainer.num_threads",
                     "ogas.breeder.trainer_process")
# replicates of one sweep point differ only in this key
REPLICATE_KEY = "seed"
SEED_LIMIT = 2**63  # torch's seeds are 64-bit
#: What one batch sample costs at the very least (its index and its weight, 8 bytes each).
MIN_BATCH_BYTES_PER_SAMPLE = 16


def check_fits_memory(key: str, count: int, bytes_each: int, what: str) -> None:
    """ConfigError naming ``key`` when ``count`` items of at least ``bytes_each`` bytes cannot fit
    in this machine's memory (a typo like 10**12 stops here, not in the allocator minutes later)."""
    need = count * bytes_each
    check(need <= physical_memory(), key,
          f"{count} {what} need at least {need / 2**30:.3g} GiB, more than this machine's "
          f"{physical_memory() / 2**30:.3g} GiB of memory")


def physical_memory() -> int:
    """This machine's RAM in bytes (a large stand-in where the OS does not say)."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 1 << 50


@dataclass
class TrainerConfig:
    """The loop's budget and cadences (see docs/architecture.md, "The loop"). The defaults are
    ``trainer=default`` (pole problems); ``trainer=online`` holds what differs for simulators."""

    rounds: int = 10
    steps_per_round: int = 200
    batch_size: int = 256
    initial_points: int = 4096
    points_per_round: int = 0
    lr: float = 1e-2
    grad_clip: float = 10.0
    max_skipped_fraction: float = 0.05
    loss: str = "auto"
    q_source: str = "problem"
    q_refresh_every: int = 50
    pool_capacity: int = 0
    max_in_flight: int = 0
    regenerate_after: int = 0
    # batches drawn ∝ (p_design/p_pool)^α of each sample's simulation (OGAS's ratio classifier; a
    # no-op for static designs and Breed). α = 0: uniform over the breeder-biased pool (bred hard
    # cases get more steps, the bulk fewer); α = 1: as if the pool were the design. Problem
    # dependent: 0.5 keeps uniform's mean on Burgers (experiment=burgers sets it), but on the
    # landscape it costs the tail gains (max ratio 1.26 → 0.94; docs/design_notes.md)
    design_weighting: float = 0.0
    eval_every: int = 2
    checkpoint_every: int = 1
    device: str = "auto"
    precision: str = "float64"
    num_threads: int = 0
    progress: bool = True
    plots: bool = True

    def __post_init__(self) -> None:
        for name in ("rounds", "steps_per_round", "eval_every", "checkpoint_every", "q_refresh_every"):
            check(getattr(self, name) > 0, name, f"must be a positive integer, got {getattr(self, name)}")
        check(self.batch_size >= 0, "batch_size",
              f"must be a positive integer, or 0 for the whole pool, got {self.batch_size}")
        for name in ("initial_points", "points_per_round", "pool_capacity"):
            check(getattr(self, name) >= 0, name, f"must be >= 0, got {getattr(self, name)}")
        check(0 < self.lr < math.inf, "lr", f"must be a finite number > 0, got {self.lr}")
        check(0 <= self.grad_clip < math.inf, "grad_clip",
              f"must be a finite number >= 0 (0 disables), got {self.grad_clip}")
        check(0 <= self.max_skipped_fraction <= 1, "max_skipped_fraction",
              f"must lie in [0, 1], got {self.max_skipped_fraction}")
        check(self.loss in LOSSES, "loss", f"must be one of {', '.join(LOSSES)}, got {self.loss!r}")
        check(self.q_source in ("problem", "model"), "q_source",
              f"must be 'problem' or 'model', got {self.q_source!r}")
        check(self.device == "auto" or self.device.split(":")[0] in ("cpu", "cuda", "mps"),
              "device", f"must be auto, cpu, cuda[:i] or mps, got {self.device!r}")
        check(self.precision in ("float32", "float64"), "precision",
              f"must be float32 or float64, got {self.precision!r}")
        check(self.max_in_flight >= 0, "max_in_flight", "must be >= 0 (0: twice the executor's capacity)")
        check(0.0 <= self.design_weighting <= 1.0, "design_weighting",
              f"must lie in [0, 1] (0: batches uniform over the pool), got {self.design_weighting}")
        check(self.regenerate_after >= 0, "regenerate_after", "must be >= 0 (0: points_per_round)")
        check(self.num_threads >= 0, "num_threads", "must be >= 0 (0 keeps torch's default)")
        check_fits_memory("batch_size", self.batch_size, MIN_BATCH_BYTES_PER_SAMPLE,
                          "samples per batch")
        check_fits_memory("initial_points", self.initial_points + self.points_per_round
                          * max(self.rounds - 1, 0), MIN_BATCH_BYTES_PER_SAMPLE,
                          "labelled points (initial_points + (rounds − 1)·points_per_round)")
        check(self.pool_capacity == 0 or self.pool_capacity >= self.batch_size, "pool_capacity",
              "must be 0 (unbounded) or at least batch_size")


WANDB_TAG_LIMIT = 64  # W&B refuses a run whose tags are longer (and drops the run to no W&B)


def check_tags(tags: list[str], key: str) -> None:
    """W&B's rule for tags, checked before a run starts: 1 to 64 characters each."""
    for tag in tags:
        check(0 < len(str(tag)) <= WANDB_TAG_LIMIT, key,
              f"each tag must have 1 to {WANDB_TAG_LIMIT} characters (W&B's limit), got "
              f"{len(str(tag))}: {str(tag)[:80]!r}")


@dataclass
class LoggerConfig:
    """Weights & Biases settings; ``mode: null`` lets WANDB_MODE (or the API key) decide."""

    enabled: bool = True
    project: str = "nearpole_exp"
    entity: str | None = None
    mode: str | None = None
    group: str | None = None
    job_type: str | None = None
    name: str | None = None
    tags: list[str] = field(default_factory=list)
    log_histograms: bool = True
    log_plots: bool = True
    init_timeout: float = 30.0
    checkpoint_artifact_mb: float = 100.0

    def __post_init__(self) -> None:
        check(self.mode in (None, "online", "offline", "disabled"), "mode",
              f"must be null, online, offline or disabled, got {self.mode!r}")
        check(self.init_timeout > 0, "init_timeout", "must be > 0")
        check(self.checkpoint_artifact_mb >= 0, "checkpoint_artifact_mb",
              "must be >= 0 (0: never upload the checkpoint)")
        check_tags(self.tags, "tags")


@dataclass
class PathsConfig:
    """Where files go (the ``paths`` group): ``root``, the launch directory (relative paths are
    taken from there: jobs do not change directory); ``output``, under which run and sweep
    directories are made; ``scratch``, the work directories of command-line solvers (empty: the
    system's temporary folder); ``cache``, files reused across runs (point a user solver's
    ``problem.eval_cache`` there). Set them once per machine in ``local/``.

    ``root`` is not ``${hydra:runtime.cwd}``: a sweep's directory is resolved by the launcher
    before Hydra's runtime exists, and that interpolation failed there."""

    root: str = "."
    output: str = "${paths.root}/outputs"
    scratch: str = ""
    cache: str = "${paths.root}/.cache/nearpole_exp"


@dataclass
class RunConfig:
    """The top-level config; groups are filled in by the defaults list of ``config.yaml``."""

    problem: Any = MISSING
    model: Any = MISSING
    sampler: Any = MISSING
    curriculum: Any = field(default_factory=dict)
    gradient: Any = field(default_factory=dict)
    optimizer: Any = MISSING
    scheduler: Any = MISSING
    polish: Any = MISSING
    diagnostics: Any = field(default_factory=dict)
    executor: Any = field(default_factory=dict)
    ogas: Any = MISSING
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    paths: PathsConfig = field(default_factory=PathsConfig)
    callbacks: Any = field(default_factory=dict)
    seed: int = 0
    resume: str = "auto"
    task_name: str = "nearpole"
    objective: str = "auto"
    tags: list[str] = field(default_factory=list)
    output_dir: str | None = "${hydra:runtime.output_dir}"  # None under --cfg (no job yet)

    def __post_init__(self) -> None:
        check(0 <= self.seed < SEED_LIMIT, "seed", f"must lie in [0, 2**63), got {self.seed}")
        check_tags(self.tags, "tags")


def is_non_defining(key: str, extra: tuple[str, ...] = ()) -> bool:
    """Whether a config or override key (``a.b``, ``group/option``) is, or lies under, a key of
    :data:`NON_DEFINING_KEYS` or ``extra``."""
    return any(key == k or key.startswith((f"{k}.", f"{k}/")) for k in (*NON_DEFINING_KEYS, *extra))


def override_exclude_keys() -> list[str]:
    """Hydra's ``override_dirname.exclude_keys`` (exact override keys) for the non-defining keys
    and the seed: each key, plus the sub-keys a command line sets (logger fields, Hydra's dirs)."""
    keys = [REPLICATE_KEY, *NON_DEFINING_KEYS]
    keys += [f"logger.{f.name}" for f in dataclasses.fields(LoggerConfig)]
    keys += [f"paths.{f.name}" for f in dataclasses.fields(PathsConfig)]
    keys += ["hydra.run.dir", "hydra.sweep.dir", "hydra.sweep.subdir", "hydra/launcher",
             "hydra.launcher.n_jobs", "hydra.verbose"]
    return keys
