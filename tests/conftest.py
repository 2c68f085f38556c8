"""Shared fixtures: an isolated GRPO home per test and a runner for the `grpo` CLI in-process."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture()
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh `.grpo` home, also exported as GRPO_HOME for subprocesses."""
    path = tmp_path / ".grpo"
    monkeypatch.setenv("GRPO_HOME", str(path))
    return path


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


