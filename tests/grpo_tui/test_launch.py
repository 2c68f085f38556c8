"""grpo_tui.launch helpers that run inside a torchrun worker (the launcher itself is driven end to end by
tests/policy/test_distributed.py)."""

from __future__ import annotations

import subprocess
import sys

from grpo_tui import launch

WORKER = """
import logging, sys
from grpo_tui import launch
logging.basicConfig(stream=sys.stderr, level=logging.INFO)
print("summary line", end="")  # no newline: still in the buffer
logging.getLogger("grpo").info("last log line")
sys.stderr.write("error line")
print(launch.in_worker(), end="")
launch.exit_worker(3)
print("never")
"""


def test_exit_worker_flushes_then_ends_with_the_code() -> None:
    """A worker's buffered stdout, stderr and log lines come out before it ends with its own exit code,
    without running the interpreter's teardown (atexit handlers do not run)."""
    code = WORKER.replace("launch.exit_worker(3)", "import atexit; atexit.register(print, 'atexit ran'); launch.exit_worker(3)")
    env = {"WORLD_SIZE": "2", "PATH": "/usr/bin:/bin"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120, check=False)
    assert proc.returncode == 3
    assert proc.stdout == "summary lineTrue"
    assert "last log line" in proc.stderr and proc.stderr.endswith("error line")


def test_in_worker_reads_the_world_size(monkeypatch) -> None:
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert not launch.in_worker()
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert not launch.in_worker()
    monkeypatch.setenv("WORLD_SIZE", "4")
    assert launch.in_worker()


REPORT = """\
============================================================
grpo_tui.cli FAILED
------------------------------------------------------------
Failures:
[1]:
  time      : 2026-12-02_12:50:01
  host      : box
  rank      : 1 (local_rank: 1)
  exitcode  : -9 (pid: 4242)
  error_file: <N/A>
  traceback : Signal 9 (SIGKILL) received by PID 4242
------------------------------------------------------------
Root Cause (first observed failure):
[0]:
  time      : 2026-12-02_12:50:01
  host      : box
  rank      : 0 (local_rank: 0)
  exitcode  : 1 (pid: 4241)
  error_file: <N/A>
  traceback : To enable traceback see: https://pytorch.org/docs/stable/elastic/errors.html
============================================================
"""


def test_a_killed_rank_is_named_before_the_peer_that_lost_it() -> None:
    """Rank 1 SIGKILLed, rank 0 then fails on the closed connection and torchrun may observe it first: the
    launcher names the killed rank. Without a signal death it names torchrun's root cause."""
    failures = launch.failures_in(REPORT.splitlines(keepends=True))
    assert failures == [{"rank": 1, "local": 1, "root": 0, "exitcode": -9}, {"rank": 0, "local": 0, "root": 1, "exitcode": 1}]
    assert launch.cause(failures)["rank"] == 1
    only_root = launch.failures_in(REPORT.replace("exitcode  : -9", "exitcode  : 1").splitlines(keepends=True))
    assert launch.cause(only_root)["rank"] == 0
    alone = launch.failures_in(REPORT.split("Root Cause")[0].replace("[1]:", "<NO_OTHER_FAILURES>").splitlines(keepends=True)[:4])
    assert alone == []
