"""Scheduler semantics with an injected cycle runner: no overlap, prompt stop, period between cycles."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from grpo_tui.config import AutoConfig
from grpo_tui.cycles import append_cycle
from grpo_tui.scheduler import Scheduler


class GatedRunner:
    """A cycle runner whose cycles last until released (or stopped), recording concurrency."""

    def __init__(self, home: Path) -> None:
        self.home, self.active, self.max_active, self.calls = home, 0, 0, 0
        self.release = threading.Event()
        self.lock = threading.Lock()

    def run(self, cfg: AutoConfig, stop: threading.Event) -> dict:
        with self.lock:
            self.active += 1
            self.calls += 1
            self.max_active = max(self.max_active, self.active)
        while not (self.release.is_set() or stop.is_set()):
            time.sleep(0.01)
        with self.lock:
            self.active -= 1
        record = {"cycle": self.calls, "outcome": "stopped" if stop.is_set() else "ok", "reason": "test"}
        append_cycle(self.home, record)
        return record


def wait_for(predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.01)


def test_cycles_never_overlap_and_run_every_period(tmp_path: Path) -> None:
    runner = GatedRunner(tmp_path)
    runner.release.set()
    sched = Scheduler(tmp_path, runner)
    assert sched.start(AutoConfig(period_sec=0.05))["ok"]
    assert not sched.start(AutoConfig(period_sec=0.05))["ok"]  # a second start is refused while running
    wait_for(lambda: runner.calls >= 3)
    sched.stop()
    assert sched.join(5)
    assert runner.max_active == 1
    status = sched.status()
    assert status["state"] == "idle" and status["cycles_run"] >= 3 and len(status["cycles"]) >= 3


def test_stop_answers_at_once_while_a_cycle_runs(tmp_path: Path) -> None:
    runner = GatedRunner(tmp_path)
    sched = Scheduler(tmp_path, runner)
    sched.start(AutoConfig(period_sec=60))
    wait_for(lambda: sched.status()["state"] == "running")
    reply = sched.stop()  # returns while the gated cycle still runs: "stopping", not "idle"
    assert reply["state"] == "stopping" and runner.calls == 1
    assert sched.join(5)
    assert sched.status()["state"] == "idle"
    assert sched.status()["last_cycle"]["outcome"] == "stopped"
    assert runner.calls == 1


def test_waiting_state_counts_down_to_the_next_cycle(tmp_path: Path) -> None:
    now = [1000.0]
    runner = GatedRunner(tmp_path)
    runner.release.set()
    sched = Scheduler(tmp_path, runner, clock=lambda: now[0])
    sched.start(AutoConfig(period_sec=300))
    wait_for(lambda: sched.status()["state"] == "waiting" and runner.calls == 1)
    now[0] += 100
    assert abs(sched.status()["next_cycle_in"] - 200) < 1e-6
    sched.stop()
    assert sched.join(5)
