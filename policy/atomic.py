"""Atomic writes for the policy package: a temp file in the same folder, fsync, then os.replace.

(`miner.atomic` does the same for the miner and the operations side; `open_nofollow` is its own,
re-exported here for the policy's append-only logs.)
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

from miner.atomic import open_nofollow  # noqa: F401 - re-exported: metrics.jsonl, samples.jsonl


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


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
