"""One run per job directory: an exclusive ``flock`` on a lock file, so that a second run started
with the same ``hydra.run.dir`` stops at once instead of interleaving its metrics and summary
with the first's.

The kernel holds the lock, not a pid written into a file: it is released when its holder exits
or is killed, and on a shared cluster filesystem (NFS, Lustre, GPFS — where Linux carries
``flock`` to the server) a live run on another node keeps it, which a pid check on this host
could not see. The file names the holder's host and pid for the message only.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
from pathlib import Path
from types import TracebackType

from nearpole_exp.errors import DirectoryInUse, OutputError

LOCK_NAME = ".nearpole_exp.lock"


def holder_of(path: Path) -> str:
    """The ``host pid N`` a lock file names, or ``unknown`` when it cannot be read."""
    try:
        text = path.read_text().strip()
    except OSError:
        return "unknown"
    host, _, pid = text.rpartition(" ")
    return f"{host or 'this host'} pid {pid}" if pid.isdigit() else "unknown"


# descriptors of the locks this process holds: a forked child (the OGAS generator process, a
# process-pool worker) closes its copies at once, so that a child outliving a killed parent
# never keeps the job directory locked (flock is released when the last copy closes)
_HELD: set[int] = set()


def _close_inherited_locks() -> None:
    for fd in _HELD:
        with contextlib.suppress(OSError):
            os.close(fd)
    _HELD.clear()


os.register_at_fork(after_in_child=_close_inherited_locks)


class JobDirectoryLock:
    """``with JobDirectoryLock(dir):`` holds ``dir/.nearpole_exp.lock`` for the block (the task
    wrapper takes it, once per job, before anything is written into the directory)."""

    def __init__(self, directory: str | Path) -> None:
        self.path = Path(directory) / LOCK_NAME
        self._fd: int | None = None

    def __enter__(self) -> JobDirectoryLock:
        for _ in range(8):
            fd = self._open()
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise DirectoryInUse(
                    f"another run ({holder_of(self.path)}) is writing to {self.path.parent}: wait "
                    "for it to end or give this run another hydra.run.dir") from None
            except OSError as err:
                os.close(fd)
                raise OutputError(f"cannot lock {self.path}: {err.strerror or err} (the filesystem "
                                  "may not support locks); give the run another hydra.run.dir") from err
            if self._still_linked(fd):
                self._fd = fd
                _HELD.add(fd)
                os.ftruncate(fd, 0)
                os.write(fd, f"{socket.gethostname()} {os.getpid()}".encode())
                return self
            # the holder released and removed the file between our open and our lock: a newer
            # file may already be locked by a third run, so lock that one instead
            os.close(fd)
        raise DirectoryInUse(f"could not take {self.path}: other runs keep recreating it")

    def _open(self) -> int:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            return os.open(self.path, os.O_CREAT | os.O_RDWR | os.O_CLOEXEC, 0o644)
        except OSError as err:
            raise OutputError(f"cannot write to {self.path.parent}: {err.strerror or err}; "
                              "give the run a writable hydra.run.dir") from err

    def _still_linked(self, fd: int) -> bool:
        """Whether the locked descriptor is still the file at ``self.path``."""
        try:
            on_disk = os.stat(self.path)
        except FileNotFoundError:
            return False
        mine = os.fstat(fd)
        return (on_disk.st_dev, on_disk.st_ino) == (mine.st_dev, mine.st_ino)

    def __exit__(self, kind: type[BaseException] | None, err: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._fd is None:
            return
        # unlink while still holding the lock: a run waiting on the old file then sees it unlinked
        self.path.unlink(missing_ok=True)
        _HELD.discard(self._fd)
        os.close(self._fd)  # releases the lock
        self._fd = None
