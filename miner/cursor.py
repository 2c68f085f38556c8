"""Named cursors: the last mined stream id per stream, e.g. `{"rl_actions": "1759700000000-3"}`.

Each cursor name has its own file: `auto` (auto mode's cycles) is `<home>/cursor.json`, the file
every earlier version wrote, so an existing cursor.json simply is the `auto` cursor (no migration);
any other name (`manual`, the default of `grpo mine --cursor`) is `<home>/cursor.<name>.json` in the
same format. Different names never take each other's entries.

`--since-cursor` mines only entries strictly after the recorded id. The miner stages the new cursor
and moves it into place only after every dataset file has been atomically written, so a failure
anywhere leaves the old cursor. Reading the cursor, mining, writing the datasets and moving the
cursor all happen under an exclusive flock on `<home>/cursor.lock` (`cursor_lock`), so concurrent
miners of one home are serialised and every action is mined exactly once per cursor name.
"""

from __future__ import annotations

import fcntl
import re
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import orjson

from miner.errors import CursorError

STREAM_ID = re.compile(r"^\d+-\d+$")
CURSOR_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
AUTO_CURSOR, MANUAL_CURSOR = "auto", "manual"
LOCK_FILE = "cursor.lock"


def check_cursor_name(name: str) -> str:
    """`name` when it is a valid cursor name (letters, digits, `_`, `-`; at most 64), else ValueError."""
    if not CURSOR_NAME.match(name):
        raise ValueError(f"cursor name {name!r} must be 1-64 letters, digits, '_' or '-', starting with a letter or digit")
    return name


def cursor_path(home: Path, name: str = AUTO_CURSOR) -> Path:
    """`<home>/cursor.json` for the `auto` cursor (the historical file), `<home>/cursor.<name>.json` otherwise."""
    check_cursor_name(name)
    return Path(home) / ("cursor.json" if name == AUTO_CURSOR else f"cursor.{name}.json")


@contextmanager
def cursor_lock(home: Path) -> Iterator[None]:
    """Hold the exclusive flock on `<home>/cursor.lock` (blocking until free) for the block.

    One lock for all names: it also serialises the read-modify-write of the cursor files. The kernel
    releases it when the holder exits or is killed, so a crashed miner never leaves it stuck.
    """
    home = Path(home)
    home.mkdir(parents=True, exist_ok=True)
    try:
        handle = open(home / LOCK_FILE, "a+b")
    except OSError as exc:
        raise CursorError(f"{home / LOCK_FILE}: cannot open the cursor lock ({exc.strerror}); check the home's permissions") from exc
    with handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


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
