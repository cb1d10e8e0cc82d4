"""Reading a sweep: job directories, their overrides (sweep point and seed) and outcomes."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from nearpole_exp.config.discovery import register_resolvers
from nearpole_exp.config.schemas import NON_DEFINING_KEYS, REPLICATE_KEY

DEFAULT_EXCLUDE = (REPLICATE_KEY, *NON_DEFINING_KEYS)


SKIP_DIRS = {"wandb", "checkpoints", "__pycache__"}


class SweepEmptyError(FileNotFoundError):
    """The sweep directory holds no job directory (no ``.hydra/overrides.yaml`` below it)."""


@dataclass(frozen=True)
class Job:
    """One job directory: its sweep point, seed, outcome and (when completed) its summary."""

    path: Path
    rel: str
    kept: tuple[str, ...]
    point: tuple[str, ...]
    label: str
    seed: str | None
    status: str
    error: str | None
    summary: dict[str, Any]


def natural_key(text: str) -> list[Any]:
    """Sort key that orders ``job/10`` after ``job/9`` and ``B10`` after ``B9``."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text)]


def find_job_dirs(sweep_dir: Path) -> list[Path]:
    """Directories at or below ``sweep_dir`` with ``.hydra/overrides.yaml``, sorted naturally."""
    found = []
    for root, dirs, _files in os.walk(sweep_dir):
        if (Path(root) / ".hydra" / "overrides.yaml").is_file():
            found.append(Path(root))
        dirs[:] = [d for d in dirs if d not in SKIP_DIRS and not d.startswith(".")]
    return sorted(found, key=lambda p: natural_key(p.relative_to(sweep_dir).as_posix()))


def override_key(override: str) -> str:
    """The key of an override: ``+a.b=1`` → ``a.b``, ``hydra/launcher=x`` → ``hydra/launcher``."""
    return override.lstrip("+~").split("=", 1)[0]


def normalise(override: str) -> str:
    """An override without its ``+``/``++`` prefix, so ``+x=1`` and ``x=1`` name the same point."""
    return override.lstrip("+")


def is_excluded(key: str, exclude: Iterable[str]) -> bool:
    """Whether an override key is left out of the sweep point (seed, hydra.*, logger.*, ...)."""
    return any(key == ex or key.startswith((f"{ex}.", f"{ex}/")) for ex in exclude)


def _load_yaml(path: Path) -> Any:
    return OmegaConf.to_container(OmegaConf.load(path), resolve=False)


def sweep_excludes(sweep_dir: Path, first_job: Path) -> list[str]:
    """Hydra's ``override_dirname.exclude_keys`` of this sweep, so points match the W&B groups.

    Read once, from the sweep's ``multirun.yaml`` or else the first job's ``.hydra/hydra.yaml``.
    """
    register_resolvers()
    for path in (sweep_dir / "multirun.yaml", first_job / ".hydra" / "hydra.yaml"):
        if not path.is_file():
            continue
        try:
            cfg = OmegaConf.load(path)
            keys = OmegaConf.select(cfg, "hydra.job.config.override_dirname.exclude_keys",
                                    default=None)
        except Exception:
            continue
        if keys is not None:
            return [str(k) for k in keys]
    return []


def _seed(job_dir: Path, overrides: list[str]) -> str | None:
    for o in overrides:
        if override_key(o) == "seed" and "=" in o:
            return o.split("=", 1)[1]
    path = job_dir / ".hydra" / "config.yaml"
    if path.is_file():
        try:
            value = OmegaConf.load(path).get("seed")
            return None if value is None else str(value)
        except Exception:
            return None
    return None


def _last_step(job_dir: Path) -> int | None:
    """The ``step`` of the last line of ``metrics.jsonl`` (read from its tail only)."""
    path = job_dir / "metrics.jsonl"
    if not path.is_file():
        return None
    with open(path, "rb") as handle:
        handle.seek(0, os.SEEK_END)
        handle.seek(max(0, handle.tell() - 65536))
        lines = handle.read().decode("utf-8", "replace").splitlines()
    for line in reversed(lines):
        try:
            return int(json.loads(line)["step"])
        except (ValueError, KeyError, TypeError):
            continue
    return None


def _outcome(job_dir: Path) -> tuple[str, str | None, dict[str, Any]]:
    """(status, error line, summary) of a job: completed, failed (an ``unstable`` run too: too
    many skipped steps), or missing (incomplete)."""
    path = job_dir / "summary.json"
    if not path.is_file():
        step = _last_step(job_dir)
        where = "no metrics logged" if step is None else f"last logged step {step}"
        return "missing", f"no summary.json ({where})", {}
    try:
        summary = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        return "failed", f"unreadable summary.json: {err}", {}
    if not isinstance(summary, dict):
        return "failed", "summary.json is not a JSON object", {}
    status = summary.get("status")
    if status == "completed":
        return "completed", None, summary
    if status in ("failed", "unstable"):
        error = str(summary.get("error") or summary.get("warning")
                    or f"status {status}, no error recorded")
        return "failed", (error.strip().splitlines() or [""])[0], summary
    return "missing", f"summary.json has status {status!r}", summary


def read_job(job_dir: Path, sweep_dir: Path, exclude: Iterable[str] = DEFAULT_EXCLUDE) -> Job:
    """Read one job directory: overrides → sweep point and seed, summary.json → outcome. A job
    whose overrides cannot be read is reported as missing, with the reason."""
    status, error, summary = _outcome(job_dir)
    try:
        raw = _load_yaml(job_dir / ".hydra" / "overrides.yaml") or []
        if not isinstance(raw, list):
            raise ValueError("not a list of overrides")
    except Exception as err:  # any parse error: the job is listed, never silently dropped
        raw = []
        status, error = "missing", f"unreadable .hydra/overrides.yaml ({err}); its sweep point is unknown"
    overrides = [str(o) for o in raw]
    kept = [normalise(o) for o in overrides if not is_excluded(override_key(o), exclude)]
    rel = job_dir.relative_to(sweep_dir).as_posix()
    return Job(path=job_dir, rel=rel or ".", kept=tuple(kept), point=tuple(sorted(kept)),
               label=",".join(kept) or "(defaults)", seed=_seed(job_dir, overrides),
               status=status, error=error, summary=summary)


def drop_common(jobs: Sequence[Job]) -> tuple[list[Job], tuple[str, ...]]:
    """Labels without the overrides every sweep point shares (e.g. ``debug=default``)."""
    if len({j.point for j in jobs}) < 2:
        return list(jobs), ()
    common = set.intersection(*(set(j.point) for j in jobs))
    relabelled = [replace(j, label=",".join(o for o in j.kept if o not in common) or "(common)")
                  for j in jobs]
    return relabelled, tuple(o for o in jobs[0].kept if o in common)
