"""Where the console's data comes from: a `Source` gives `Snapshot`s and carries control requests.

`LiveSource(home)` asks the home's scheduler for `status` through `ControlClient` (the interface a
remote console uses) and reads the home's training files through `grpo_tui.observe`. When no
scheduler answers, the snapshot says why (`status_error`), the system stats and guard are taken
on this machine instead (`stats_origin == "local"`) and the cycle history is read from
`<home>/auto/cycles.jsonl` (`history`), so the panels still show the box and what ran.
`FixedSource(snapshot, now)` replays one snapshot with a fixed clock: SVG snapshots and docs.
Both are used from a worker thread; neither imports textual.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

from grpo_tui import guard, observe
from grpo_tui.control import ControlClient, DaemonNotRunning
from grpo_tui.cycles import cycles_path
from grpo_tui.errors import GrpoError
from grpo_tui.stats import StatsSampler

HISTORY = 20  # cycle records shown, as many as the scheduler's `status` carries


@dataclass(frozen=True)
class Snapshot:
    """One refresh worth of data; every field has an 'absent' value the panels can render."""

    time: float
    status: dict[str, Any] | None = None  # the scheduler's `status` reply, None when none answered
    status_error: str | None = None  # why there is no status
    stats: dict[str, Any] = field(default_factory=dict)  # StatsSampler.sample() shape
    stats_origin: str = "scheduler"  # "scheduler" | "local" | "none"
    guard: dict[str, Any] | None = None  # GuardReport.to_dict() shape
    metrics: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    heartbeats: dict[str, float] = field(default_factory=dict)
    checkpoints: list[dict[str, Any]] = field(default_factory=list)
    log: dict[str, Any] = field(default_factory=lambda: {"name": None, "path": None, "lines": []})
    series: dict[str, list[float | None]] = field(default_factory=dict)  # "cpu", "ram", "gpu0.util", "gpu0.mem"
    runs: dict[str, dict[str, Any]] = field(default_factory=dict)  # observe.runs(): each level's start / target step
    history: list[dict[str, Any]] = field(default_factory=list)  # cycles.jsonl read from disk when no scheduler answers

    @property
    def state(self) -> str:
        return (self.status or {}).get("state", "no scheduler")

    @property
    def cycles(self) -> list[dict[str, Any]]:
        """The recent cycle records, oldest first: the scheduler's, else those read from `<home>/auto/cycles.jsonl`."""
        if self.status is not None:
            return self.status.get("cycles") or []
        return self.history

    @property
    def job(self) -> str | None:
        return (self.status or {}).get("job")


class Series:
    """Rolling history of the live stats (CPU %, RAM %, each GPU's utilisation and memory %) for sparklines."""

    def __init__(self, length: int = 60) -> None:
        self.length = length
        self._data: dict[str, deque[float | None]] = {}

    def add(self, stats: dict[str, Any]) -> dict[str, list[float | None]]:
        points: dict[str, float | None] = {
            "cpu": (stats.get("cpu") or {}).get("percent"),
            "ram": (stats.get("ram") or {}).get("percent"),
        }
        for dev in (stats.get("gpus") or {}).get("devices") or []:
            total = dev.get("mem_total_mb") or 0
            points[f"gpu{dev.get('index')}.util"] = dev.get("util")
            points[f"gpu{dev.get('index')}.mem"] = 100.0 * dev.get("mem_used_mb", 0) / total if total else None
        for key, value in points.items():
            self._data.setdefault(key, deque(maxlen=self.length)).append(value)
        return {key: list(values) for key, values in self._data.items()}


class Source(Protocol):
    home: Path
    clock: Callable[[], float]

    def poll(self) -> Snapshot: ...

    def request(self, cmd: str, **fields: Any) -> dict[str, Any]: ...


class LiveSource:
    """The real thing: status over the control socket, files from the home."""

    def __init__(self, home: Path, timeout: float = 5.0, clock: Callable[[], float] = time.time,
                 metrics_limit: int = 120, log_lines: int = 60) -> None:
        self.home = Path(home)
        self.client = ControlClient(self.home, timeout=timeout)
        self.clock = clock
        self.metrics_limit, self.log_lines = metrics_limit, log_lines
        self._local: StatsSampler | None = None
        self._series = Series()

    def request(self, cmd: str, **fields: Any) -> dict[str, Any]:
        """One control request; a scheduler that is gone becomes `{"ok": False, "error": ...}`."""
        try:
            return self.client.request(cmd, **fields)
        except DaemonNotRunning as exc:
            return {"ok": False, "error": str(exc)}

    def poll(self) -> Snapshot:
        files = observe.collect(self.home, self.metrics_limit, self.log_lines)
        try:
            status = self.client.request("status")
        except DaemonNotRunning as exc:
            status, error = None, str(exc)
        else:
            error = None if status.get("ok") else str(status.get("error", "status refused"))
            status = status if status.get("ok") else None
        if status is not None:
            stats, origin, report = status.get("stats") or {}, "scheduler", status.get("guard")
        else:
            self._local = self._local or StatsSampler(self.home)
            stats, origin = self._local.sample(), "local"
            try:
                report = guard.check(self.home, guard.load_thresholds(self.home), stats).to_dict()
            except GrpoError as exc:
                report = {"ok": False, "reason": str(exc), "checks": []}
        history = [] if status is not None else observe.read_records(cycles_path(self.home), limit=HISTORY)
        return Snapshot(time=self.clock(), status=status, status_error=error, stats=stats, stats_origin=origin,
                        guard=report, metrics=files["metrics"], heartbeats=files["heartbeats"],
                        checkpoints=files["checkpoints"], log=files["log"], series=self._series.add(stats), history=history,
                        runs=files["runs"])


class FixedSource:
    """Replays `snapshot` at a fixed clock; requests are recorded and answered `ok` (or `replies[cmd]`)."""

    def __init__(self, snapshot: Snapshot, now: float | None = None, home: Path = Path("/fixed/.grpo"),
                 replies: dict[str, dict[str, Any]] | None = None) -> None:
        self.snapshot = snapshot
        self.home = Path(home)
        fixed = snapshot.time if now is None else now
        self.clock: Callable[[], float] = lambda: fixed
        self.requests: list[tuple[str, dict[str, Any]]] = []
        self.replies = replies or {}

    def poll(self) -> Snapshot:
        return replace(self.snapshot, time=self.clock())

    def request(self, cmd: str, **fields: Any) -> dict[str, Any]:
        self.requests.append((cmd, fields))
        return self.replies.get(cmd, {"ok": True})
