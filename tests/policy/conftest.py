"""Fixtures of the policy tests: synthetic datasets (tests/policy/synthetic.py) and one torch thread."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from synthetic import write_byte_groups, write_topic_groups


@pytest.fixture()
def topic_data(tmp_path: Path) -> tuple[Path, Path]:
    """(train, held-out) topic datasets."""
    return write_topic_groups(tmp_path / "train.jsonl", 200, seed=1), write_topic_groups(tmp_path / "heldout.jsonl", 60, seed=2)


@pytest.fixture()
def byte_data(tmp_path: Path) -> tuple[Path, Path]:
    """(train, held-out) byte-pattern datasets for the tiny LM."""
    return write_byte_groups(tmp_path / "train.jsonl", 64, seed=1), write_byte_groups(tmp_path / "heldout.jsonl", 24, seed=2)


@pytest.fixture(autouse=True)
def _policy_tests_on_one_thread(one_thread):
    """Every policy test runs on one torch thread (tests/conftest.py `one_thread`)."""
    yield


@pytest.fixture(autouse=True)
def policy_logs_reach_caplog(monkeypatch: pytest.MonkeyPatch):
    """An in-process `grpo` run earlier in the session points our loggers at its own stderr and stops
    propagation (grpo_tui.cli._setup_logging); undo that so caplog sees the policy logger."""
    logger = logging.getLogger("policy")
    monkeypatch.setattr(logger, "propagate", True)
    monkeypatch.setattr(logger, "handlers", [])
