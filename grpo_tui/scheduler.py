"""The in-process auto-mode scheduler: one cycle every `period_sec`, never two at once.

States: `idle` (auto off), `waiting` (between cycles), `running` (a cycle in progress), `stopping`.
`start(cfg)` turns auto mode on (the first cycle starts at once); `stop()` returns at once, asks the
running cycle to stop (its trainer child checkpoints and exits, and is killed after a timeout) and
no further cycle starts; `join` waits (bounded) for the cycle and any one-off job, so a host that
shuts down lets the job record itself. Each finished cycle is appended to `<home>/auto/cycles.jsonl` by the cycle
runner; `status()` is a JSON-ready dict for the control socket (with `job`, `job_running_for` and the
runner's `phase`, e.g. "train global", while a cycle or one-off job runs).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from grpo_tui.config import AutoConfig
from grpo_tui.cycles import read_cycles


class CycleRunner(Protocol):
    def run(self, cfg: AutoConfig, stop: threading.Event, job: str = "cycle") -> dict[str, Any]: ...


JOBS = ("cycle", "mine", "train")


class Scheduler:
    """Runs cycles on a background thread; safe to call from the control-socket threads."""

    def __init__(self, home: Path, runner: CycleRunner, clock: Callable[[], float] = time.time) -> None:
        self.home, self.runner, self.clock = Path(home), runner, clock
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._busy = threading.Lock()  # held by whatever cycle or one-off job runs: they never overlap
        self.job: str | None = None
        self.job_started_at: float | None = None  # when the running cycle or one-off job began
        self._job_stop = threading.Event()
        self._job_thread: threading.Thread | None = None
        self.cfg: AutoConfig | None = None
        self.state = "idle"
        self.next_cycle_at: float | None = None
        self.cycle_started_at: float | None = None
        self.last_cycle: dict[str, Any] | None = None
        self.cycles_run = 0

    def start(self, cfg: AutoConfig) -> dict[str, Any]:
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                if self.state == "stopping":
                    return {"ok": False, "error": "auto mode is still stopping; try again in a few seconds"}
                return {"ok": False, "error": "auto mode is already running; stop it first to change its config"}
            self.cfg = cfg
            self._stop = threading.Event()
            self.state = "waiting"
            self.next_cycle_at = self.clock()
            self._thread = threading.Thread(target=self._loop, args=(cfg, self._stop), name="scheduler", daemon=True)
            self._thread.start()
        return {"ok": True, "state": self.state}

    def stop(self) -> dict[str, Any]:
        """Ask auto mode to stop; answers at once (the running cycle winds down in the background)."""
        with self._lock:
            self._job_stop.set()
            if self._thread is None or not self._thread.is_alive():
                self.state = "idle"
                if self.job is not None:
                    return {"ok": True, "state": "idle", "message": f"stopping the one-off {self.job} job"}
                return {"ok": True, "state": "idle", "message": "auto mode was not running"}
            self._stop.set()
            self.state = "stopping"
            self.next_cycle_at = None
        return {"ok": True, "state": "stopping"}

    def run_once(self, job: str, cfg: AutoConfig | None = None) -> dict[str, Any]:
        """Run one job now (`mine`, `train` on the latest datasets, or a whole `cycle`) if nothing runs."""
        if job not in JOBS:
            return {"ok": False, "error": f"unknown job {job!r}; use one of {', '.join(JOBS)}"}
        cfg = cfg or self.cfg or AutoConfig()
        if not self._busy.acquire(blocking=False):
            return {"ok": False, "error": f"busy: {self.job or 'a cycle'} is running; try again when it ends"}
        stop = self._job_stop = threading.Event()

        def work() -> None:
            try:
                self.last_cycle = self.runner.run(cfg, stop, job)
            finally:
                self.job = self.job_started_at = None
                self._busy.release()

        self.job, self.job_started_at = job, self.clock()
        self._job_thread = threading.Thread(target=work, name=f"job-{job}", daemon=True)
        self._job_thread.start()
        return {"ok": True, "job": job}

    def join(self, timeout: float | None = None) -> bool:
        """Wait (at most `timeout` s in all) for auto mode and any one-off job to end; whether both did."""
        deadline = None if timeout is None else time.monotonic() + timeout
        for thread in (self._thread, self._job_thread):
            if thread is not None:
                thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        return not any(t is not None and t.is_alive() for t in (self._thread, self._job_thread))

    def status(self, history: int = 20) -> dict[str, Any]:
        now = self.clock()
        with self._lock:
            return {
                "ok": True,
                "state": self.state,
                "job": self.job,
                "config": self.cfg.model_dump(mode="json") if self.cfg else None,
                "next_cycle_in": None if self.next_cycle_at is None else max(0.0, self.next_cycle_at - now),
                "cycle_running_for": None if self.cycle_started_at is None else now - self.cycle_started_at,
                "job_running_for": None if self.job is None or self.job_started_at is None else now - self.job_started_at,
                "phase": getattr(self.runner, "phase", None),  # e.g. "train global": the child running now
                "cycles_run": self.cycles_run,
                "last_cycle": self.last_cycle,
                "cycles": read_cycles(self.home, limit=history),
            }

    def _loop(self, cfg: AutoConfig, stop: threading.Event) -> None:
        while True:
            with self._lock:
                if stop.is_set():
                    break
                self.state, self.cycle_started_at, self.next_cycle_at = "running", self.clock(), None
            with self._busy:
                self.job, self.job_started_at = "cycle", self.clock()
                record = self.runner.run(cfg, stop)
                self.job = self.job_started_at = None
            with self._lock:
                self.last_cycle, self.cycle_started_at = record, None
                self.cycles_run += 1
                if stop.is_set():
                    break
                self.state, self.next_cycle_at = "waiting", self.clock() + cfg.period_sec
            stop.wait(cfg.period_sec)
        with self._lock:
            self.state, self.next_cycle_at = "idle", None
