"""Errors the framework raises on purpose, so callers can tell bad input from bugs."""

from __future__ import annotations


class ConfigError(ValueError):
    """An invalid configuration value; ``key`` is the dotted path of the offending field."""

    def __init__(self, key: str, message: str) -> None:
        self.key = key
        self.message = message
        super().__init__(f"{key}: {message}")

    def under(self, prefix: str) -> ConfigError:
        """The same error with its key placed under ``prefix`` (e.g. ``trainer``)."""
        return ConfigError(f"{prefix}.{self.key}" if prefix else self.key, self.message)


class DirectoryInUse(RuntimeError):
    """Another live run holds the job directory (see :mod:`nearpole_exp.joblock`)."""


class OutputError(OSError):
    """A file of the run could not be written (disk full, read-only or missing directory); the
    file it would have replaced is untouched."""


class ProblemError(ValueError):
    """A (user's) problem returned something other than its contract says (shape, type)."""


class CheckpointError(ValueError):
    """A checkpoint exists but cannot be resumed from (corrupt, truncated, other format)."""


class Terminated(KeyboardInterrupt):
    """The job was asked to stop by a signal (SIGTERM from Slurm or ``timeout``): handled like
    Ctrl-C, so the run is recorded as ``interrupted`` and resumes from its last checkpoint."""


class BackgroundThreadError(RuntimeError):
    """An exception raised inside a background worker, re-raised in the caller's thread."""


def check(condition: bool, key: str, message: str) -> None:
    """Raise ``ConfigError(key, message)`` unless ``condition`` holds."""
    if not condition:
        raise ConfigError(key, message)
