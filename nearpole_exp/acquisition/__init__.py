"""Acquisition: which points get labelled next. The ask/tell breeders (static designs, Breed, and
OGAS in :mod:`nearpole_exp.acquisition.ogas`) and the feed that keeps an asynchronous executor busy."""

from nearpole_exp.acquisition.base import Breeder
from nearpole_exp.acquisition.breed import BreedBreeder
from nearpole_exp.acquisition.config import BreedConfig
from nearpole_exp.acquisition.static import StaticBreeder

__all__ = ["BreedBreeder", "BreedConfig", "Breeder", "StaticBreeder"]
