"""The `grpo` entry point: help, version, and exit codes for each class of failure."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import click
import pytest

from grpo_tui import __version__
from grpo_tui.cli import EXIT_ERROR, EXIT_GUARD, EXIT_INTERRUPTED, EXIT_USAGE, exit_code
from grpo_tui.errors import ConfigError, GrpoError, GuardRefused
from miner.errors import StoreUnavailable


def test_help_and_version(grpo) -> None:
    code, out, _ = grpo("--help")
    assert code == 0 and "--home" in out and "config" in out
    code, out, _ = grpo("--version")
    assert code == 0 and __version__ in out


def test_console_script_is_installed() -> None:
    out = subprocess.run([Path(sys.executable).with_name("grpo"), "--version"], capture_output=True, text=True, check=True)
    assert __version__ in out.stdout


def test_misspelt_config_key_exits_2_with_one_line(grpo, tmp_path: Path) -> None:
    path = tmp_path / "train.yaml"
    path.write_text("lr: 0.001\nbeta_coef: 0.1\n")
    code, out, err = grpo("config", "show", "train", "--config-file", str(path))
    assert code == EXIT_USAGE and out == ""
    assert err.strip().count("\n") == 0
    assert "unknown key 'beta_coef'; did you mean 'beta'?" in err


def test_unknown_command_is_usage(grpo) -> None:
    code, _, err = grpo("no-such-command")
    assert code == EXIT_USAGE and "No such command" in err


def test_effective_config_is_printed(grpo, tmp_path: Path) -> None:
    path = tmp_path / "guard.yaml"
    path.write_text("min_free_gb: 0\n")
    code, out, _ = grpo("config", "show", "guard", "--config-file", str(path), "--json")
    assert code == 0 and '"min_free_gb":0.0' in out


@pytest.mark.parametrize(
    ("exc", "code"),
    [
        (GuardRefused("disk"), EXIT_GUARD),
        (ConfigError("bad"), EXIT_USAGE),
        (GrpoError("x"), EXIT_ERROR),
        (StoreUnavailable("redis"), EXIT_ERROR),
        (KeyboardInterrupt(), EXIT_INTERRUPTED),
        (click.Abort(), EXIT_INTERRUPTED),
    ],
)
def test_exit_code_mapping(exc: BaseException, code: int) -> None:
    assert exit_code(exc) == code
