"""Atomic writes for the policy package: a temp file in the same folder, fsync, then os.replace.

(`miner.atomic` does the same for the miner and the operations side; the import table lets policy
import only `miner.schema` of the miner, so this small copy stays here.)
"""

from __future__ import annotations

import errno
import hashlib
import os
import tempfile
from pathlib import Path
from typing import BinaryIO


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Replace `path` with `data` in one step (creating parent folders)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def open_nofollow(path: Path, append: bool = False) -> BinaryIO:
    """Open `path` for writing (truncated, or appended to), never through a symbolic link: a planted one
    raises OSError (ELOOP) before anything is written (a copy of `miner.atomic.open_nofollow`)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC | (os.O_APPEND if append else os.O_TRUNC)
    try:
        fd = os.open(path, flags, 0o600)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise OSError(errno.ELOOP, "refusing to write through a symbolic link (remove it)", str(path)) from exc
        raise
    return os.fdopen(fd, "ab" if append else "wb")


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
