"""Atomic file writes: a reader (or a kill -9) never sees a half-written file."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import torch

from nearpole_exp.errors import OutputError


def _read_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


#: Files are written with the permissions ``open`` would give (mkstemp's are 0600, awkward on a
#: shared cluster filesystem): 0666 less the process umask, read once at import.
FILE_MODE = 0o666 & ~_read_umask()


def _atomic(path: str | Path, write: Callable[[BinaryIO], None]) -> None:
    """Write through a temp file in the same directory, fsync, then rename over ``path``; a
    failed write (disk full, read-only directory) raises :class:`OutputError` naming ``path``."""
    path = Path(path)
    tmp: str | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, path)
    except (OSError, RuntimeError) as err:  # torch reports a short write as a RuntimeError
        _discard(tmp)
        interrupt = _interrupt_inside(err)
        if interrupt is not None:  # Ctrl-C or SIGTERM mid-write: an interruption, not a disk error
            raise interrupt from None
        raise OutputError(f"could not write {path}: {_why(err, path.parent)}; the previous "
                          f"{path.name} (if any) is unchanged") from err
    except BaseException:
        _discard(tmp)
        raise


def _interrupt_inside(err: BaseException) -> KeyboardInterrupt | None:
    """The KeyboardInterrupt (or SIGTERM's ``Terminated``) that torch wrapped into a
    RuntimeError when it arrived inside ``torch.save``'s writes, if that is what ``err`` is."""
    seen = err.__context__
    while seen is not None:
        if isinstance(seen, KeyboardInterrupt):
            return seen
        seen = seen.__context__
    return None


def _discard(tmp: str | None) -> None:
    if tmp is not None:
        Path(tmp).unlink(missing_ok=True)


def _why(err: BaseException, folder: Path) -> str:
    """The OS's reason, or (for torch's opaque short-write error) how full the disk is."""
    if isinstance(err, OSError) and err.strerror:
        return err.strerror
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return f"{type(err).__name__} (is the disk full or the directory read-only?)"
    return f"the write stopped short with {free / 2**20:.1f} MiB free on its disk"


def save_torch(obj: Any, path: str | Path) -> None:
    """``torch.save`` that replaces ``path`` atomically."""
    _atomic(path, lambda handle: torch.save(obj, handle))


def save_json(obj: Any, path: str | Path) -> None:
    """JSON dump that replaces ``path`` atomically (non-finite floats become null)."""
    text = json.dumps(_finite(obj), indent=2, sort_keys=True)
    _atomic(path, lambda handle: handle.write(text.encode()))


def _finite(obj: Any) -> Any:
    """Replace NaN/inf floats by None so the JSON stays standard."""
    if isinstance(obj, float):
        return obj if obj == obj and abs(obj) != float("inf") else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def append_jsonl(record: dict[str, Any], path: str | Path) -> None:
    """Append one JSON object as a line (flushed, so a crash loses at most this line)."""
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(_finite(record), sort_keys=True) + "\n")
        handle.flush()
