"""Checkpoints: `<root>/step_000200/`, written to `step_000200.tmp/` then renamed, the newest N kept.

A checkpoint holds the policy's weights (`model.safetensors` [+ config/tokenizer files] or a PEFT
`adapter/` dir), `trainer_state.pt` (optimizer, schedules, KL controller, RNG states, data position,
step; read back with torch.load(weights_only=True)) and `meta.json` (step, config, dataset fingerprint,
metrics at save, policy description, and `files`: the sha256 of every other file). Loading verifies
every hash; `latest_valid` walks from the newest checkpoint back, warning about each corrupt one it
skips, and raises CheckpointError when checkpoints exist but none is intact.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from pathlib import Path
from typing import Any, Callable

import torch

from policy.atomic import sha256_file
from policy.errors import CheckpointError

log = logging.getLogger("policy")
STEP_DIR = re.compile(r"^step_(\d{6,})$")
META, STATE = "meta.json", "trainer_state.pt"


def step_name(step: int) -> str:
    return f"step_{step:06d}"


def _files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.rglob("*") if p.is_file() and p.name != META)


def save_checkpoint(root: Path, step: int, *, save_weights: Callable[[Path], None], state: dict[str, Any], meta: dict[str, Any], keep: int) -> Path:
    """Write checkpoint `step` under `root` atomically, then delete all but the newest `keep`."""
    root = Path(root)
    final, tmp = root / step_name(step), root / (step_name(step) + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_weights(tmp)
    torch.save(state, tmp / STATE)
    hashes = {p.relative_to(tmp).as_posix(): sha256_file(p) for p in _files(tmp)}
    (tmp / META).write_text(json.dumps({**meta, "step": step, "files": hashes}, indent=1, allow_nan=False), encoding="utf-8")
    for path in _files(tmp) + [tmp / META]:
        with open(path, "rb") as handle:
            os.fsync(handle.fileno())
    if final.exists():
        shutil.rmtree(final)
    os.rename(tmp, final)
    prune(root, keep)
    return final


def list_checkpoints(root: Path) -> list[tuple[int, Path]]:
    """(step, dir) of every finished checkpoint under `root`, newest first."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if p.is_dir() and (m := STEP_DIR.match(p.name))]
    return sorted(found, reverse=True)


def prune(root: Path, keep: int) -> None:
    """Delete all but the newest `keep` checkpoints, and leftover `.tmp` dirs."""
    for _, path in list_checkpoints(root)[keep:]:
        shutil.rmtree(path)
    for path in Path(root).glob("step_*.tmp"):
        shutil.rmtree(path, ignore_errors=True)


def verify(directory: Path) -> dict[str, Any]:
    """meta.json of a checkpoint whose files all match their sha256; CheckpointError saying what is wrong."""
    directory = Path(directory)
    try:
        meta = json.loads((directory / META).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{directory}: unreadable {META} ({exc})") from exc
    files = meta.get("files")
    if not isinstance(files, dict) or STATE not in files:
        raise CheckpointError(f"{directory}: {META} lists no files")
    for rel, digest in files.items():
        path = directory / rel
        if not path.is_file():
            raise CheckpointError(f"{directory}: {rel} is missing")
        if sha256_file(path) != digest:
            raise CheckpointError(f"{directory}: {rel} does not match its sha256 (truncated or modified)")
    return meta


def latest_valid(root: Path) -> tuple[Path, dict[str, Any]] | None:
    """The newest intact checkpoint under `root` and its meta; None when there are none at all."""
    found = list_checkpoints(root)
    problems = []
    for _, path in found:
        try:
            meta = verify(path)
        except CheckpointError as exc:
            problems.append(str(exc))
            log.warning("checkpoint %s is corrupt (%s); falling back to the previous one", path.name, exc)
            continue
        return path, meta
    if found:
        raise CheckpointError(f"no intact checkpoint under {root}: {'; '.join(problems)}")
    return None


def resolve(path: Path) -> tuple[Path, dict[str, Any]]:
    """A checkpoint dir itself, or the newest intact one under a run dir or its `checkpoints/` folder."""
    path = Path(path)
    if (path / META).exists():
        return path, verify(path)
    for root in (path, path / "checkpoints"):
        found = latest_valid(root)
        if found is not None:
            return found
    raise CheckpointError(f"{path}: no checkpoint here (expected step_NNNNNN dirs or a checkpoints/ folder)")


def load_state(directory: Path) -> dict[str, Any]:
    """trainer_state.pt of a verified checkpoint, loaded with weights_only=True."""
    return torch.load(Path(directory) / STATE, map_location="cpu", weights_only=True)
