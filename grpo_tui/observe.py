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
    runs(home)                -> {level: {"start_step", "target_step", "started"}} from each auto level's
                                 manifest.json (written by the trainer right before its first step)
    job_progress(status, metrics, runs, now) -> the running job (which, elapsed, step x of y, time left) or None;
                                 job_line(progress) says it on one line (`grpo auto status`, the console)
    collect(home, ...)        -> all of the above as one JSON-ready dict (what a remote console
                                 would ask the scheduler host for)
"""

from __future__ import annotations

import json
import os
import re
import time
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
        "runs": runs(home),
    }


def runs(home: Path) -> dict[str, dict[str, Any]]:
    """Each auto level's current (or last) trainer run from its manifest.json: the step it started from,
    the step it trains to (start + the config's `steps`) and when its first step began."""
    out: dict[str, dict[str, Any]] = {}
    auto = Path(home) / AUTO
    for folder in sorted(auto.glob("ckpts_*")) if auto.is_dir() else []:
        manifest = _meta(folder / "manifest.json")
        start, steps = manifest.get("start_step"), (manifest.get("config") or {}).get("steps")
        if isinstance(start, int) and isinstance(steps, int):
            out[folder.name[len("ckpts_"):]] = {"start_step": start, "target_step": start + steps,
                                                "started": manifest.get("created")}
    return out


def job_progress(status: dict[str, Any] | None, metrics: dict[str, list[dict[str, Any]]],
                 runs: dict[str, dict[str, Any]], now: float | None = None) -> dict[str, Any] | None:
    """The scheduler's running job, or None: {"job", "phase" ("mine", "train global", ...), "elapsed" (s),
    and while a level trains "level", "step", "start_step", "target_step", "left" (s, from the step rate;
    None before the second logged step)}. Step numbers come from the level's manifest and metrics only when
    that run began after the job did (an older run's manifest is not this job's)."""
    if not status or not status.get("job"):
        return None
    elapsed = status.get("job_running_for")
    if elapsed is None:
        elapsed = status.get("cycle_running_for")
    phase = status.get("phase") or status["job"]
    out: dict[str, Any] = {"job": status["job"], "phase": phase, "elapsed": elapsed}
    level = phase[len("train "):] if phase.startswith("train ") else None
    run = runs.get(level or "")
    if level is None or run is None:
        return out
    out["level"] = level
    began = (time.time() if now is None else now) - (elapsed or 0.0)
    started = run.get("started")
    if not isinstance(started, (int, float)) or started < began - 1.0:
        return out  # this job's trainer is still loading: no step yet
    start, target = run["start_step"], run["target_step"]
    logged = [r for r in metrics.get(level, []) if isinstance(r.get("step"), int) and start < r["step"] <= target
              and isinstance(r.get("timestamp"), (int, float)) and r["timestamp"] >= started]
    step = logged[-1]["step"] if logged else start
    out.update(step=step, start_step=start, target_step=target, left=None)
    if len(logged) >= 2:
        first, last = logged[0], logged[-1]
        span = last["timestamp"] - first["timestamp"]
        if span > 0 and last["step"] > first["step"]:
            out["left"] = (target - step) * span / (last["step"] - first["step"])
    return out


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = max(0, int(round(seconds)))
    return f"{s}s" if s < 60 else f"{s // 60}m{s % 60:02d}s" if s < 3600 else f"{s // 3600}h{(s % 3600) // 60:02d}m"


def job_line(progress: dict[str, Any]) -> str:
    """`train global · step 120/400 · 1m05s · ~2m30s left`: the running job on one line."""
    parts = [progress["phase"] if progress["phase"] == progress["job"] or progress["job"] != "cycle"
             else f"cycle: {progress['phase']}"]
    if "step" in progress:
        parts.append(f"step {progress['step']}/{progress['target_step']}")
    elif progress["phase"].startswith("train "):
        parts.append("loading")
    parts.append(f"for {_duration(progress.get('elapsed'))}")
    if progress.get("left") is not None:
        parts.append(f"~{_duration(progress['left'])} left")
    return " · ".join(parts)
