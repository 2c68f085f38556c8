"""Shared fixtures: an isolated GRPO home per test and a runner for the `grpo` CLI in-process."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture()
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh `.grpo` home, also exported as GRPO_HOME for subprocesses.

    Its capacity guard is off (all thresholds 0 in guard.json): a test machine with little free disk or
    RAM must not turn training tests into guard refusals. Guard tests set the thresholds they test.
    """
    from grpo_tui.config import GuardConfig
    from grpo_tui.guard import save_thresholds

    path = tmp_path / ".grpo"
    monkeypatch.setenv("GRPO_HOME", str(path))
    path.mkdir()
    save_thresholds(path, GuardConfig(min_free_gb=0, min_ram_gb=0, min_vram_mb=0))
    return path


@pytest.fixture()
def one_thread():
    """Tiny models run far faster on one thread on a shared 2-core box (and the same every time)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture()
def grpo(home: Path, capfd: pytest.CaptureFixture[str]):
    """Run `grpo ARGS...` through its real entry point; returns (exit code, stdout, stderr)."""
    from grpo_tui.cli import main

    def run(*args: str) -> tuple[int, str, str]:
        capfd.readouterr()
        code = main(["--home", str(home), *args])
        out, err = capfd.readouterr()
        return code, out, err

    return run


@pytest.fixture()
def store(home: Path):
    """A real Redis server for this test: the embedded one under `home/store/`, on its own socket.

    Yields the connected `miner.store.Store`; at teardown whatever server the test left running in
    that store (the first one, or one a later command restarted) is killed.
    """
    from miner.store import open_store

    opened = open_store(home)
    yield opened
    opened.close()
    _kill_store(home)


@pytest.fixture()
def kill_store(home: Path):
    """`kill_store()`: SIGKILL the test's embedded Redis server (as a crash would); returns its pid."""
    return lambda: _kill_store(home)


def _kill_store(home: Path) -> int | None:
    import os
    import signal
    import time

    import psutil

    from miner.store import EmbeddedServer

    pid = EmbeddedServer(Path(home) / "store").pid()
    if pid is None:
        return None
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                break
        except psutil.NoSuchProcess:
            break
        time.sleep(0.01)
    return pid
