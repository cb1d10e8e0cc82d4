"""nearpole_exp: active sampling where the hard part of a learning problem lives in small regions."""

__version__ = "0.5.0"


def __getattr__(name: str) -> object:
    """``nearpole_exp.load_run`` imported on first use (the package itself stays light to import)."""
    if name in ("load_run", "FinishedRun"):
        from nearpole_exp import finished

        return getattr(finished, name)
    raise AttributeError(f"module 'nearpole_exp' has no attribute {name!r}")
