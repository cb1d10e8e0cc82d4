"""``python -m nearpole_exp``: the Hydra entry point (config shipped in ``nearpole_exp.conf``)."""

from __future__ import annotations

import os
import sys

# Before torch is imported: idle OpenMP threads sleep instead of spinning. On a shared or small
# CPU, spinning made a default run 5x slower (benchmarks/scaling.md, section c).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import hydra
from omegaconf import DictConfig

from nearpole_exp.overrides import override_error

HELP_FLAGS = ("--help", "-h")
COMPLETION_FLAGS = ("--shell-completion", "-sc")

if any(a in COMPLETION_FLAGS for a in sys.argv[1:]):
    # completing a word composes names and values only: placeholder schemas, no torch import
    from nearpole_exp.config import register_configs

    register_configs(placeholders=True)
elif not any(a in HELP_FLAGS for a in sys.argv[1:]):
    # the schemas and resolvers Hydra composes with (this imports torch); also in launcher workers
    from nearpole_exp import app  # noqa: F401


@hydra.main(version_base="1.3", config_path="pkg://nearpole_exp.conf", config_name="config")
def _main(cfg: DictConfig) -> float | None:
    from nearpole_exp.app import task

    return task(cfg)


def main() -> None:
    """Console-script entry point (``nearpole-exp``). ``--help`` prints without importing torch;
    a configuration error exits 2 with one line on stderr, whether we find it (an unknown option)
    or Hydra does (before any job starts)."""
    if any(a in HELP_FLAGS for a in sys.argv[1:]):
        from nearpole_exp.help import help_text

        print(help_text())
        return
    problem = override_error(sys.argv[1:])
    if problem is not None:
        print(f"Invalid config: {problem}", file=sys.stderr)
        raise SystemExit(2)
    if any(a in COMPLETION_FLAGS for a in sys.argv[1:]):
        _main()
        return
    from nearpole_exp import app

    try:
        _main()
    except SystemExit as stop:
        if stop.code == 1 and not app.JOBS_STARTED:
            raise SystemExit(2) from None
        raise


if __name__ == "__main__":
    main()
