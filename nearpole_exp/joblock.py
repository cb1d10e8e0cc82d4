"""One run per job directory: a lock file holding the writer's pid, so that a second run started
with the same ``hydra.run.dir`` stops at once instead of interleaving its metrics and summary
with the first's. A lock left by a killed run (its pid is gone) is taken over."""

from __future__ import annotations

import os
from pathlib import Path
from types import TracebackType

from nearpole_exp.errors import DirectoryInUse, OutputError

LOCK_NAME = ".nearpole_exp.lock"


def _alive(pid: int) -> bool:
    """Whether a process with ``pid`` exists (on this machine)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class JobDirectoryLock:
    """``with JobDirectoryLock(dir):`` holds ``dir/.nearpole_exp.lock`` for the block (the task
    wrapper takes it, once per job, before anything is written into the directory)."""

    def __init__(self, directory: str | Path) -> None:
        self.path = Path(directory) / LOCK_NAME

    def __enter__(self) -> JobDirectoryLock:
        for _ in range(2):
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = self._holder()
                if holder is not None and _alive(holder):
                    raise DirectoryInUse(
                        f"another run (pid {holder}) is writing to {self.path.parent}: wait for it "
                        "to end or give this run another hydra.run.dir") from None
                self.path.unlink(missing_ok=True)  # stale: its run was killed
                continue
            except OSError as err:
                raise OutputError(f"cannot write to {self.path.parent}: {err.strerror or err}; "
                                  "give the run a writable hydra.run.dir") from err
            with os.fdopen(fd, "w") as handle:
                handle.write(str(os.getpid()))
            return self
        raise DirectoryInUse(f"could not take {self.path}: another run keeps recreating it")

    def _holder(self) -> int | None:
        try:
            return int(self.path.read_text().strip() or "0") or None
        except (OSError, ValueError):
            return None

    def __exit__(self, kind: type[BaseException] | None, err: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._holder() == os.getpid():
            self.path.unlink(missing_ok=True)
