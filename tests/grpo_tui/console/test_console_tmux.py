"""End to end in a real terminal: `grpo-tui` in tmux on `grpo demo seed` data starts the home's daemon,
`a` + enter starts auto mode from the form (a short config file fills it), a cycle completes on screen,
`q` quits saying training continues, and the daemon is still running afterwards.
"""

from __future__ import annotations

import shutil

import pytest
from tmux_home import console_on_demo_home

from bench.tui import shutdown
from grpo_tui.cli import main as grpo
from grpo_tui.control import ControlClient, socket_path
from grpo_tui.daemon import read_state

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed (apt-get install tmux)")


def test_tmux_console_starts_auto_mode_and_quits_leaving_the_daemon(tmp_path_factory: pytest.TempPathFactory) -> None:
    home, console = console_on_demo_home(tmp_path_factory, "tmx")
    try:
        console.wait_for("scheduler pid", timeout=120)  # the console started the daemon and attached to it
        pid = read_state(home)["pid"]
        console.send("a")
        console.wait_for("start auto mode", timeout=20)
        console.send("Enter")
        console.wait_for("start auto mode", timeout=20, absent=True)
        screen = console.wait_for("✓ ok #1 cycle", timeout=240)  # the cycle's outcome, read off the screen
        assert "steps · bow" in screen and "waiting" in screen
        console.send("q")
        screen = console.wait_for("training continues", timeout=30)
        assert f"pid {pid}" in " ".join(screen.split())
        status = ControlClient(home).request("status")
        assert status["ok"] and status["pid"] == pid and status["state"] == "waiting"
        assert status["cycles"][-1]["outcome"] == "ok"
        assert grpo(["--home", str(home), "auto", "shutdown"]) == 0
        assert not socket_path(home).exists()
    finally:
        console.close(shutdown_daemon=False)
        shutdown(home)  # only acts if the daemon is still up (a failed assertion above)
        grpo(["--home", str(home), "store", "stop"])
