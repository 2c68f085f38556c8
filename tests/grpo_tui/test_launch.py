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
