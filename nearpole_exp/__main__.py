"""``python -m nearpole_exp``: the Hydra entry point (config shipped in ``nearpole_exp.conf``)."""

from __future__ import annotations

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
