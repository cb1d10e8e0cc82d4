"""OGAS: a loss-conditioned DDPM, trained on a background thread, proposes the bred share of each
generation (the DDPM, its conditioning, reservoir, density-ratio classifier and trainer thread)."""

from nearpole_exp.acquisition.ogas.breeder import OGASBreeder
from nearpole_exp.acquisition.ogas.config import (
    BreederConfig,
    DataConfig,
    DDPMConfig,
    ExperimentConfig,
)

__all__ = ["BreederConfig", "DDPMConfig", "DataConfig", "ExperimentConfig", "OGASBreeder"]
