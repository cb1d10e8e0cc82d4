"""nearpole_exp: active sampling where the hard part of a learning problem lives in small regions."""

__version__ = "0.1.0"
