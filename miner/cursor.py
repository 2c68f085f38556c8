"""`<home>/cursor.json`: the last mined stream id per stream, e.g. `{"rl_actions": "1759700000000-3"}`.

`--since-cursor` mines only entries strictly after the recorded id. The miner stages the new cursor
and moves it into place only after every dataset file has been atomically written, so a failure
anywhere leaves the old cursor and every action is mined exactly once across cycles.
"""

from __future__ import annotations

import re
from pathlib import Path

import orjson

from miner.errors import CursorError

STREAM_ID = re.compile(r"^\d+-\d+$")


def cursor_path(home: Path) -> Path:
    return Path(home) / "cursor.json"


def read_cursor(path: Path) -> dict[str, str]:
    """The stream -> last mined id mapping; empty when the file does not exist yet."""
    try:
        raw = Path(path).read_bytes()
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise CursorError(f"{path}: cannot read the cursor ({exc.strerror}); check its permissions") from exc
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise CursorError(f"{path}: not valid JSON ({exc}); fix it or delete it to mine the whole window again") from exc
    if not isinstance(data, dict) or not all(isinstance(v, str) and STREAM_ID.match(v) for v in data.values()):
        raise CursorError(f"{path}: expected an object of stream name -> stream id like \"1759700000000-0\"; fix it or delete it")
    return data


def encode_cursor(cursor: dict[str, str]) -> bytes:
    return orjson.dumps(cursor, option=orjson.OPT_SORT_KEYS | orjson.OPT_INDENT_2) + b"\n"


def id_tuple(sid: str | bytes) -> tuple[int, int]:
    """A stream id as (milliseconds, sequence), for comparisons."""
    text = sid.decode() if isinstance(sid, bytes) else sid
    ms, _, seq = text.partition("-")
    return int(ms), int(seq or 0)
