"""One writer per run folder: an exclusive `fcntl.flock` on `<out>/.lock`, held for the whole run.

`RunLock(out)` (a context manager) takes the lock without waiting and writes the holder's pid into the
file; a second trainer on the same out dir gets `RunLocked` naming that pid (exit 1 through
grpo_tui.cli). The kernel drops the lock when the holder dies, however it dies, so a stale pid in the
file never blocks anyone: `lock_holder(out)` probes the lock itself and answers the pid only while the
lock is really held. The descriptor is not inherited by child processes (O_CLOEXEC).
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from types import TracebackType

from policy.errors import RunLocked

LOCK_NAME = ".lock"


def lock_path(out: Path) -> Path:
    return Path(out) / LOCK_NAME


def _read_pid(fd: int) -> int | None:
    os.lseek(fd, 0, os.SEEK_SET)
    text = os.read(fd, 64).decode(errors="replace").strip()
    return int(text) if text.isdigit() else None


class RunLock:
    """Exclusive lock of one run folder; `acquire` raises RunLocked when another process holds it."""

    def __init__(self, out: Path) -> None:
        self.path = lock_path(out)
        self.fd: int | None = None

    def acquire(self) -> RunLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_pid(fd)
            os.close(fd)
            who = f"pid {holder}" if holder is not None else "another process"
            raise RunLocked(f"{self.path.parent} is being trained by {who} (lock {self.path}); "
                            "one trainer per run folder: stop it first, or use --out DIR for a new run") from None
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, f"{os.getpid()}\n".encode())
        self.fd = fd
        return self

    def release(self) -> None:
        if self.fd is not None:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.release()


def lock_holder(out: Path) -> int | None:
    """The pid holding `<out>/.lock` right now (None when nobody holds it; 0 when the holder wrote no pid)."""
    path = lock_path(out)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _read_pid(fd) or 0
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)
