"""Atomic file writes for the miner: a temp file in the same folder, fsync, then os.replace.

`stage()` writes the temp file and returns it without replacing, so a caller with several outputs
(the hierarchical datasets, then the cursor) can write every temp first and replace them only once
all of them are safely on disk; `discard()` removes staged temps after a failure.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


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
