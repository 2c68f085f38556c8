"""Helpers shared by test modules (importable as `testkit`: tests/ is on sys.path through its conftest)."""

from __future__ import annotations

import json
import time
from pathlib import Path

WORDS = "sorted open loads requests pytest archive".split()


def word_groups(path: Path, n: int = 24) -> Path:
    """Group JSONL whose best candidate names the word the prompt asks for (every word a candidate)."""
    lines = []
    for i in range(n):
        want = WORDS[i % len(WORDS)]
        cands = [{"text": f"use {w} here", "reward": 1.0 if w == want else 0.1 * j} for j, w in enumerate(WORDS)]
        lines.append(json.dumps({"prompt": f"task {i}: we need {want}", "candidates": cands}))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def wait_for(predicate, timeout: float = 240.0, every: float = 0.2):
    """Poll `predicate` until it returns something truthy (returned), or fail after `timeout` s (a deadline,
    not a timing assertion: generous, for a loaded machine)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError("condition not reached in time")


def trainer_of(host) -> object | None:
    """The `grpo train` child process under `host` (a psutil.Process), or None while there is none."""
    import psutil

    for child in host.children(recursive=True):
        try:
            if "train" in child.cmdline():
                return child
        except psutil.NoSuchProcess:
            continue
    return None
