"""The start of every tmux test: a short home seeded with `grpo demo seed`, a short auto config that
fills the start form, and `grpo-tui` on it in a real tmux pane (bench.tui.TmuxConsole)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.tui import TmuxConsole
from grpo_tui.cli import main as grpo

SHORT = "period_sec: 3600\nsteps: 3\nmin_groups: 1\nmode: single\nhours: 48\ndevice: cpu\n"


def console_on_demo_home(tmp_path_factory: pytest.TempPathFactory, prefix: str) -> tuple[Path, TmuxConsole]:
    """(home, console): a 120x40 console at a 1 s refresh, its start form filled from SHORT."""
    home = Path(tmp_path_factory.mktemp(prefix)) / "h"  # short: Unix socket paths are limited to ~100 bytes
    assert grpo(["--home", str(home), "demo", "seed", "--actions", "300", "--days", "1", "--json"]) == 0
    config = home.parent / "short.yaml"
    config.write_text(SHORT)
    return home, TmuxConsole(home, "--config-file", str(config), "--refresh", "1", width=120, height=40)
