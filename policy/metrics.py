"""metrics.jsonl: one JSON object per logged step, appended and flushed line by line.

Every record carries KEYS (DESIGN section 3; missing values are null) plus any extras the trainer adds
(val_pairwise_acc, axis_<name>_mean, tokens...). Non-finite floats are written as null, never NaN.
`truncate_after(path, step)` keeps the records with step <= `step` (dropping a torn last line), so a
run resumed from a checkpoint continues a log that matches it.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import orjson

from policy.atomic import open_nofollow, write_bytes_atomic

KEYS = (
    "step", "loss", "kl", "adv_mean", "adv_std", "lr", "timestamp", "reward_mean", "reward_std",
    "clip_frac_low", "clip_frac_high", "grad_norm", "kl_coef", "entropy", "tokens_per_s",
    "groups_filtered", "nan_skips",
)  # fmt: skip


# Wall-clock keys: they differ between two runs of the same computation (compare records without them).
TIMING_KEYS = frozenset({"timestamp", "tokens_per_s", "train_s", "train_tokens_per_s", "rollout_s", "gen_tokens_per_s"})


def clean(value: Any) -> Any:
    """JSON-safe value: non-finite floats become None, containers are cleaned recursively."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean(v) for v in value]
    return value


def record(values: dict[str, Any]) -> dict[str, Any]:
    """A metrics record: KEYS first (None when absent), then the extras, all cleaned."""
    out = {key: values.get(key) for key in KEYS}
    out.update({k: v for k, v in values.items() if k not in out})
    return clean(out)


class MetricsWriter:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def write(self, values: dict[str, Any]) -> dict[str, Any]:
        rec = record(values)
        with open_nofollow(self.path, append=True) as handle:  # never through a planted symlink
            handle.write(orjson.dumps(rec) + b"\n")
            handle.flush()
        return rec


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """All complete records of a metrics file (a torn or invalid line is skipped)."""
    path = Path(path)
    if not path.exists():
        return []
    out = []
    for line in path.read_bytes().splitlines():
        try:
            rec = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        if isinstance(rec, dict):
            out.append(rec)
    return out


def truncate_after(path: Path, step: int) -> int:
    """Rewrite `path` atomically keeping records with step <= `step`; returns how many were dropped."""
    path = Path(path)
    if not path.exists():
        return 0
    lines = path.read_bytes().splitlines()
    kept = [line for line in lines if _step_of(line) is not None and _step_of(line) <= step]
    write_bytes_atomic(path, b"".join(line + b"\n" for line in kept))  # kept lines byte for byte
    return len(lines) - len(kept)


def _step_of(line: bytes) -> int | None:
    try:
        rec = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    step = rec.get("step") if isinstance(rec, dict) else None
    return step if isinstance(step, int) else None
