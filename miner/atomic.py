"""Atomic file writes for the miner: a temp file in the same folder, fsync, then os.replace.

`stage()` writes the temp file and returns it without replacing, so a caller with several outputs
(the hierarchical datasets, then the cursor) can write every temp first and replace them only once
all of them are safely on disk; `discard()` removes staged temps after a failure.
"""

from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path
from typing import BinaryIO


def stage(path: Path, data: bytes) -> Path:
    """Write `data` to a fsynced temp file beside `path` (parents created); returns the temp path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return Path(tmp)


def commit(tmp: Path, path: Path) -> None:
    """Move a staged temp file onto `path` in one step."""
    os.replace(tmp, path)


def discard(tmps: list[Path]) -> None:
    """Remove staged temp files that will not be committed."""
    for tmp in tmps:
        Path(tmp).unlink(missing_ok=True)


def write_atomic(path: Path, data: bytes) -> None:
    """Replace `path` with `data` in one step: readers see the old file or the new one, never half."""
    tmp = stage(path, data)
    try:
        commit(tmp, path)
    except BaseException:
        discard([tmp])
        raise


def open_nofollow(path: Path, append: bool = False) -> BinaryIO:
    """Open `path` for writing (truncated, or appended to with `append`), never through a symbolic link.

    A symlink planted at `path` (e.g. a log inside the home pointing at a victim file) raises OSError
    (ELOOP) naming the path, before anything is truncated or written. (The atomic writers above need
    no such care: os.replace swaps a symlink at the target for the new file, it never follows it.)
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC | (os.O_APPEND if append else os.O_TRUNC)
    try:
        fd = os.open(path, flags, 0o600)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise OSError(errno.ELOOP, "refusing to write through a symbolic link (remove it)", str(path)) from exc
        raise
    return os.fdopen(fd, "ab" if append else "wb")
