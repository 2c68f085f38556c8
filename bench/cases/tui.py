"""Case `tui`: the operator console in a real terminal (tmux), idle CPU and key-press latency.

`build` writes a realistic home (`bench.tui.populate`), launches `grpo-tui` on it in tmux at the
default refresh (2 s; it starts the home's scheduler daemon, as a person's launch does), waits for it
to attach, lets it settle, then measures its idle CPU over `--tokens` seconds (default 20):
`extra.idle_cpu_percent` is the CPU time of the console process (psutil, user + system) over that
window as a percent of one core (goal <= 3). Each timed `run` presses `p` and waits until the
header's PAUSED marker flips in `capture-pane`: p20/p50/p80 ms are key-press-to-screen latencies
including the tmux round trip (goal <= 100 ms). Not part of a bare `grpo bench`; skipped without tmux.

Case `tui-inspect`: the same with the inspect screen open (`i` pressed after attach, on the populated
home's mined groups); each timed `run` presses `j` / `k` and waits until the head line's `group n/N`
changes (`bench.tui.inspect_keypress_ms`).
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.registry import Case, Size, register


def build(size: Size, provider: str, screen: str = "main") -> dict[str, Any]:
    from bench.tui import TmuxConsole, idle_cpu, open_inspect, populate

    tmp = Path(tempfile.mkdtemp(prefix="gtb-"))  # short: the control socket path must stay under ~100 bytes
    home = tmp / "h"
    populate(home)
    console = TmuxConsole(home, keep_pane=False)

    def cleanup() -> None:
        console.close()
        shutil.rmtree(tmp, ignore_errors=True)

    atexit.register(cleanup)
    console.wait_for("scheduler pid", timeout=120)
    if screen == "inspect":
        open_inspect(console)
    time.sleep(4.0)  # two refreshes: start-up work settles
    return {"console": console, "idle": idle_cpu(console, float(size.tokens))}


def run(provider: str, inputs: dict[str, Any]) -> dict[str, Any]:
    from bench.tui import keypress_ms

    return {"ms": keypress_ms(inputs["console"])}


def skip_reason(provider: str, device: str) -> str | None:
    return None if shutil.which("tmux") else "tmux is not installed (apt-get install tmux)"


def _register(name: str, summary: str, build_fn: Any, run_fn: Any, order: int) -> None:
    """One tmux console case: idle CPU in `extra`, a key press to screen as the timed op."""
    register(
        Case(
            name=name, summary=summary, providers=("ours",), tokens=(20,), vocabs=(None,), hidden=None,
            build=build_fn, run=run_fn, skip_reason=skip_reason,
            extra=lambda inputs: {k: v for k, v in inputs["idle"].items() if k != "console_pid"},
            default=False, order=order,
        )
    )


_register("tui", "grpo-tui in tmux: idle CPU % of one core over N s (extra), key press to screen (time)", build, run, 60)


def build_inspect(size: Size, provider: str) -> dict[str, Any]:
    return build(size, provider, screen="inspect")


def run_inspect(provider: str, inputs: dict[str, Any]) -> dict[str, Any]:
    from bench.tui import inspect_keypress_ms

    return {"ms": inspect_keypress_ms(inputs["console"])}


_register("tui-inspect", "grpo-tui in tmux with the inspect screen open: idle CPU % over N s (extra), j/k to screen (time)",
          build_inspect, run_inspect, 61)
