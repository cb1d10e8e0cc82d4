"""``python -m nearpole_exp``: the Hydra entry point (config shipped in ``nearpole_exp.conf``)."""

from __future__ import annotations

import os

# Before torch is imported: idle OpenMP threads sleep instead of spinning. On a shared or small
# CPU, spinning made a default run 5x slower (benchmarks/scaling.md, section c).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import hydra
from omegaconf import DictConfig

from nearpole_exp.app import task


@hydra.main(version_base="1.3", config_path="pkg://nearpole_exp.conf", config_name="config")
def _main(cfg: DictConfig) -> float | None:
    return task(cfg)


def main() -> None:
    """Console-script entry point (``nearpole-exp``)."""
    _main()


if __name__ == "__main__":
    main()
