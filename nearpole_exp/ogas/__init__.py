"""Breeders (ask/tell acquisition of simulation parameters): static designs, Breed and OGAS."""

from nearpole_exp.ogas.base import Breeder
from nearpole_exp.ogas.breed import BreedBreeder
from nearpole_exp.ogas.breeder import OGASBreeder
from nearpole_exp.ogas.config import (
    BreedConfig,
    BreederConfig,
    DataConfig,
    DDPMConfig,
    ExperimentConfig,
)
from nearpole_exp.ogas.static import StaticBreeder

__all__ = [
    "BreedBreeder",
    "BreedConfig",
    "Breeder",
    "BreederConfig",
    "DDPMConfig",
    "DataConfig",
    "ExperimentConfig",
    "OGASBreeder",
    "StaticBreeder",
]
