"""Seeded runs whose ``summary.json`` metrics must not change under a refactor.

Runs a fixed set of short jobs (static designs, Breed, the near-pole presets, a simulator) through
``python -m nearpole_exp`` and records every non-timing metric; ``--against`` compares with an
earlier record, value for value (bit-identical floats, not a tolerance)::

    python scripts/check_identical.py --out /tmp/before.json            # on the old commit
    python scripts/check_identical.py --out /tmp/after.json --against /tmp/before.json

Run the first command from a checkout of the old commit (``git worktree add``), with that
checkout first on ``PYTHONPATH``.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
from pathlib import Path

SHORT = ["trainer.rounds=3", "trainer.steps_per_round=40", "trainer.eval_every=1"]
COMMON = ["logger=none", "trainer.progress=false", "trainer.plots=false", "trainer.num_threads=1",
          "trainer.device=cpu"]
JOBS: dict[str, list[str]] = {
    "landscape_uniform": ["experiment=landscape", "ogas/breeder=uniform", *SHORT],
    "landscape_sobol": ["experiment=landscape", "ogas/breeder=sobol", *SHORT],
    "landscape_breed": ["experiment=landscape", "ogas/breeder=breed", *SHORT],
    "landscape_multi_breed": ["experiment=landscape_multi", "ogas/breeder=breed", *SHORT],
    "burgers_breed": ["experiment=burgers", "ogas/breeder=breed", "trainer.rounds=2",
                      "trainer.steps_per_round=20"],
    "pole_default": [*SHORT],
    "pole_importance": ["sampler=importance", *SHORT],
    "pole_active": ["sampler=active", *SHORT],
    "pole_hybrid": ["sampler=hybrid", *SHORT],
    "pole_showcase": ["sampler=importance", "curriculum=bands", "gradient=hybrid", *SHORT],
    "pole_model_q": ["sampler=importance", "trainer.q_source=model", *SHORT],
    "curve2d_importance": ["problem=curve2d", "sampler=importance", *SHORT],
    "rr_ik_preset": ["experiment=nearpole_rr_ik", *SHORT],
}


def metrics_of(summary: dict[str, object]) -> dict[str, object]:
    """The numbers of a summary and its status, without timings (which differ from run to run)
    and without labels (e.g. the W&B group name, which follows the non-defining keys)."""
    return {k: v for k, v in summary.items() if not k.startswith("time/")
            and (k == "status" or isinstance(v, int | float))}


def run_job(name: str, overrides: list[str], root: Path) -> dict[str, object]:
    """The job's summary metrics (see :func:`metrics_of`)."""
    out = root / name
    cmd = [sys.executable, "-m", "nearpole_exp", *overrides, *COMMON, f"hydra.run.dir={out}"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{name} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    return metrics_of(json.loads((out / "summary.json").read_text()))


def differences(before: dict[str, dict[str, object]], after: dict[str, dict[str, object]]) -> list[str]:
    """Every job and metric whose value is not identical (NaN equals NaN)."""
    diffs = []
    for job in sorted(set(before) | set(after)):
        b, a = before.get(job, {}), after.get(job, {})
        for key in sorted(set(b) | set(a)):
            x, y = b.get(key), a.get(key)
            same = x == y or (isinstance(x, float) and isinstance(y, float)
                              and math.isnan(x) and math.isnan(y))
            if not same:
                diffs.append(f"{job}: {key}: {x!r} -> {y!r}")
    return diffs


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, required=True, help="where to write this run's record")
    p.add_argument("--against", type=Path, help="an earlier record to compare with")
    p.add_argument("--jobs", nargs="*", default=list(JOBS), choices=list(JOBS))
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        record = {name: run_job(name, JOBS[name], Path(tmp)) for name in args.jobs}
    args.out.write_text(json.dumps(record, indent=1, sort_keys=True))
    print(f"wrote {args.out} ({len(record)} jobs)")
    if args.against is None:
        return 0
    before = json.loads(args.against.read_text())
    diffs = differences({k: metrics_of(v) for k, v in before.items() if k in record}, record)
    print("\n".join(diffs) if diffs else "identical: every metric of every job")
    return 1 if diffs else 0


if __name__ == "__main__":
    sys.exit(main())
