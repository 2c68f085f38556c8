"""Read-only views of a home's training files for the console: metric tails, checkpoints, log tail.

Operations side (no textual). Every reader is cheap enough to call every refresh (it reads at most
the last `max_bytes` of a file) and never raises for a missing, empty or half-written file:

    metrics(home, limit)      -> {level: [record, ...]}  newest `limit` records of each metrics.jsonl,
                                 oldest first (levels: `global`, `signature`, `patch` under
                                 <home>/auto/ckpts_<level>/, and `one-off` for <home>/metrics.jsonl)
    checkpoints(home, limit)  -> [{level, step, path, mtime, size_mb, loss}], newest first
    log_tail(home, lines)     -> {"name", "path", "lines": [...]} of the newest child log under
                                 <home>/auto/logs/ (else <home>/auto/daemon.log), or name None
    heartbeats(home)          -> {level: seconds since epoch of the last metrics write}
    collect(home, ...)        -> all of the above as one JSON-ready dict (what a remote console
                                 would ask the scheduler host for)
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import orjson

AUTO = "auto"
LEVELS = ("global", "signature", "patch")
ONE_OFF = "one-off"
METRICS = "metrics.jsonl"
STEP_DIR = re.compile(r"^step_(\d+)$")


def metric_files(home: Path) -> dict[str, Path]:
    """Each level's metrics.jsonl that exists, auto levels first (in LEVELS order), then `one-off`."""
    home = Path(home)
    found: dict[str, Path] = {}
    auto = home / AUTO
    names = sorted((p.name[len("ckpts_"):] for p in auto.glob("ckpts_*") if p.is_dir()),
                   key=lambda n: (LEVELS.index(n) if n in LEVELS else len(LEVELS), n)) if auto.is_dir() else []
    for level in names:
        path = auto / f"ckpts_{level}" / METRICS
        if path.is_file():
            found[level] = path
    if (home / METRICS).is_file():
        found[ONE_OFF] = home / METRICS
    return found


def tail_lines(path: Path, max_bytes: int = 256 * 1024) -> list[bytes]:
    """The complete lines among the last `max_bytes` of `path` (a cut first line is dropped)."""
    try:
        with open(path, "rb") as handle:
            size = handle.seek(0, os.SEEK_END)
            start = max(0, size - max_bytes)
            handle.seek(start)
            data = handle.read()
    except OSError:
        return []
    lines = data.splitlines()
    if start > 0 and lines:
        lines = lines[1:]  # began mid-line
    return [line for line in lines if line.strip()]


def parse_line(line: bytes) -> dict[str, Any] | None:
    """One JSONL record; `NaN` / `Infinity` tokens (written by tools other than ours) are accepted as floats.

    None for a torn or invalid line (one being written right now, or cut by a crash)."""
    try:
        record = orjson.loads(line)
    except orjson.JSONDecodeError:
        try:
            record = json.loads(line)  # the stdlib parser reads NaN / Infinity / -Infinity; orjson refuses them
        except ValueError:
            return None
    return record if isinstance(record, dict) else None


def read_records(path: Path, limit: int = 120, max_bytes: int = 256 * 1024) -> list[dict[str, Any]]:
    """The newest `limit` JSON objects of a JSONL file, oldest first; torn or bad lines are skipped."""
    out = [rec for rec in map(parse_line, tail_lines(path, max_bytes)) if rec is not None]
    return out[-limit:]


def metrics(home: Path, limit: int = 120) -> dict[str, list[dict[str, Any]]]:
    return {level: read_records(path, limit) for level, path in metric_files(home).items()}


def heartbeats(home: Path) -> dict[str, float]:
    """Last write time of each level's metrics.jsonl (a running trainer appends every logged step)."""
    out = {}
    for level, path in metric_files(home).items():
        try:
            out[level] = path.stat().st_mtime
        except OSError:
            continue
    return out


def _checkpoint_roots(home: Path) -> list[tuple[str, Path]]:
    home = Path(home)
    roots = [(p.name[len("ckpts_"):], p / "checkpoints") for p in sorted((home / AUTO).glob("ckpts_*"))]
    return roots + [(ONE_OFF, home / "checkpoints")]


def _dir_size(path: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.stat(os.path.join(root, name)).st_size
            except OSError:
                continue
    return total


def checkpoints(home: Path, limit: int = 10) -> list[dict[str, Any]]:
    """Finished checkpoints (`step_NNNNNN` folders; `.tmp` ones are still being written), newest first."""
    rows: list[dict[str, Any]] = []
    for level, root in _checkpoint_roots(home):
        if not root.is_dir():
            continue
        for folder in root.iterdir():
            match = STEP_DIR.match(folder.name)
            if not match or not folder.is_dir():
                continue
            try:
                mtime = folder.stat().st_mtime
            except OSError:
                continue
            meta = _meta(folder / "meta.json")
            loss = (meta.get("metrics") or {}).get("loss") if isinstance(meta.get("metrics"), dict) else None
            rows.append({"level": level, "step": int(match.group(1)), "path": str(folder), "mtime": mtime,
                         "size_mb": _dir_size(folder) / 2**20, "loss": loss})
    rows.sort(key=lambda r: (r["mtime"], r["step"]), reverse=True)
    return rows[:limit]


def _meta(path: Path) -> dict[str, Any]:
    try:
        data = orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def newest_log(home: Path) -> Path | None:
    """The most recently written child log of auto mode, else the daemon's log, else None."""
    logs = Path(home) / AUTO / "logs"
    candidates = []
    if logs.is_dir():
        for path in logs.glob("*.log"):
            try:
                candidates.append((path.stat().st_mtime, path))
            except OSError:
                continue
    if candidates:
        return max(candidates)[1]
    daemon = Path(home) / AUTO / "daemon.log"
    return daemon if daemon.is_file() else None


def log_tail(home: Path, lines: int = 50) -> dict[str, Any]:
    path = newest_log(home)
    if path is None:
        return {"name": None, "path": None, "lines": []}
    text = [line.decode(errors="replace").rstrip() for line in tail_lines(path, 32 * 1024)]
    return {"name": path.name, "path": str(path), "lines": text[-lines:]}


def collect(home: Path, metrics_limit: int = 120, log_lines: int = 50, checkpoint_limit: int = 10) -> dict[str, Any]:
    """Everything the console shows from the home's files, JSON-ready."""
    return {
        "metrics": metrics(home, metrics_limit),
        "heartbeats": heartbeats(home),
        "checkpoints": checkpoints(home, checkpoint_limit),
        "log": log_tail(home, log_lines),
    }
