"""End to end in a real terminal: `grpo-tui` in tmux on `grpo demo seed` data runs one auto cycle (bow),
then `i` opens the inspect screen, which shows the newest mined prompt's words and its candidates'
rewards, scored by the cycle's checkpoint; escape goes back to the main screen.
"""

from __future__ import annotations

import shutil
import time

import orjson
import pytest
from tmux_home import console_on_demo_home

from bench.tui import shutdown
from grpo_tui.cli import main as grpo
from grpo_tui.cycles import read_cycles

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed (apt-get install tmux)")


def test_tmux_inspect_screen_after_one_auto_cycle(tmp_path_factory: pytest.TempPathFactory) -> None:
    home, console = console_on_demo_home(tmp_path_factory, "tmi")
    try:
        console.wait_for("scheduler pid", timeout=120)
        console.send("a")
        console.wait_for("start auto mode", timeout=20)
        console.send("Enter")
        deadline = time.monotonic() + 240
        while not any(c.get("outcome") == "ok" for c in read_cycles(home)):
            assert time.monotonic() < deadline, f"no ok cycle; screen:\n{console.screen()}"
            time.sleep(0.5)
        newest = orjson.loads((home / "auto" / "global.jsonl").read_bytes().splitlines()[-1])
        console.send("i")
        screen = console.wait_for("group 1/", timeout=60)
        screen = console.wait_for("bow step", timeout=120)  # scored by the cycle's checkpoint
        flat = " ".join(screen.split())
        assert " ".join(newest["prompt"].split()[:4]) in flat
        for cand in newest["candidates"][:2]:
            assert f"r {cand['reward']:+.3f}" in flat
        assert "bow policy: no tokens" in flat and "uniform reference" in flat
        console.send("Escape")
        console.wait_for("group 1/", timeout=20, absent=True)
    finally:
        console.close(shutdown_daemon=False)
        shutdown(home)
        grpo(["--home", str(home), "store", "stop"])
