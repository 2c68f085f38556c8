"""`<home>/auto/cycles.jsonl`: one JSON record per finished auto cycle, append-only.

Record: {"cycle", "start", "end", "outcome": "ok"|"skipped"|"failed"|"stopped", "reason",
         "groups": {level: n}, "trained": {level: {"from_step", "to_step"}}, ...}.
A torn last line (crash mid-append) is ignored by the reader.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import orjson

from miner.atomic import open_nofollow

CYCLES_FILE = Path("auto") / "cycles.jsonl"


def cycles_path(home: Path) -> Path:
    return Path(home) / CYCLES_FILE


def append_cycle(home: Path, record: dict[str, Any]) -> None:
    """Append one record as a single write of one line, then fsync."""
    path = cycles_path(home)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open_nofollow(path, append=True) as handle:
        handle.write(orjson.dumps(record) + b"\n")
        handle.flush()
        os.fsync(handle.fileno())


def read_cycles(home: Path, limit: int | None = None) -> list[dict[str, Any]]:
    """The last `limit` records (all when None), oldest first."""
    path = cycles_path(home)
    if not path.exists():
        return []
    records = []
    for line in path.read_bytes().splitlines():
        try:
            records.append(orjson.loads(line))
        except orjson.JSONDecodeError:
            continue  # a torn line from a crash mid-append: the rest of the file is still good
    return records if limit is None else records[-limit:]


def next_cycle_number(home: Path) -> int:
    records = read_cycles(home)
    return (max((int(r.get("cycle", 0)) for r in records), default=0) + 1) if records else 1
