"""`<run>/samples.jsonl`: what the policy wrote, for people to read (online training, `--log-samples N`).

One line per sample of a logged step (DESIGN section 3): {"step", "prompt", "completion", "rewards":
{fn: float | null}, "reward", "advantage", "truncated", "logged"}. Bounded: when the file would pass
`max_bytes` it is rotated to `samples.jsonl.1` (the previous `.1` is dropped), so at most about
2 x max_bytes stay on disk. Lines are appended whole; non-finite numbers are written as null.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import orjson

from policy.atomic import open_nofollow
from policy.metrics import clean

MAX_BYTES = 16 << 20


class SamplesWriter:
    def __init__(self, path: Path, max_bytes: int = MAX_BYTES) -> None:
        self.path, self.max_bytes = Path(path), max_bytes

    def write(self, step: int, groups: list[tuple[list[dict[str, Any]], list[float]]]) -> None:
        """Append the samples of one step's groups: per group (StepGroup.samples, its advantages)."""
        lines = b"".join(
            orjson.dumps(clean({"step": step, **sample, "advantage": float(adv[i])})) + b"\n"
            for samples, adv in groups
            for i, sample in enumerate(samples)
        )  # fmt: skip
        if self.path.exists() and self.path.stat().st_size + len(lines) > self.max_bytes:
            os.replace(self.path, self.path.with_name(self.path.name + ".1"))
        with open_nofollow(self.path, append=True) as f:  # never through a planted symlink
            f.write(lines)
