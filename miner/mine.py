"""Mining: stream entries inside a time window -> grouped preference datasets (DESIGN section 3).

`mine(store, params, home, out=..., out_dir=...)` is the whole job, callable without the CLI (the
scheduler uses it): `collect()` reads and groups, `write_outputs()` writes and advances the cursor.

Reading: the window is [now - hours, now] as a stream-id range (`<ms>-0` .. `<ms>-<max>`), read
newest first with XREVRANGE pages of `page_size` entries (never one unbounded read); with
`since_cursor` the range starts strictly after the id of the named cursor `params.cursor` (`miner.cursor`:
`auto` is `<home>/cursor.json`) when that is inside the window; reading, writing and moving it happen
under the home's cursor lock, so concurrent miners never mine an entry twice. Retrieval events of the same window (not cursor-limited: they are context) are joined on the
normalised query. Malformed entries are skipped and counted by reason (`miner.extract.SKIP_REASONS`).
Speed: a helper thread requests the next page while the current one is parsed, replies stay raw
(no per-entry dict), and the cyclic garbage collector is paused during the loops (they build no
cycles), so mining runs at more than half the raw XRANGE read rate (`grpo bench miner`).

Writing: every output file is staged (temp + fsync) before any is replaced, and the cursor moves to
the newest id read only after all of them are in place. A store failure while reading raises
`StoreUnavailable` before anything is written: no partial file, an unchanged cursor.
"""

from __future__ import annotations

import gc
import queue
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, NamedTuple

import orjson

from miner import atomic
from miner.cursor import AUTO_CURSOR, check_cursor_name, cursor_lock, cursor_path, encode_cursor, id_tuple, read_cursor
from miner.errors import MinerError
from miner.extract import (DEFAULT_MAX_ENTRY_BYTES, RETRIEVAL_SKIP_REASONS, SKIP_REASONS, Action, ParseCache,
                           parse_action, parse_retrieval)
from miner.groups import LEVELS, build_groups, merge_hits
from miner.store import COMMAND_TIMEOUT_S, Store

MAX_SEQ = 18446744073709551615  # the largest sequence part of a stream id


@dataclass(frozen=True)
class MineParams:
    """What to mine; mirrors `grpo_tui.config.MineConfig` (whose defaults are the reference)."""

    hours: float = 48.0
    min_k: int = 2
    max_k: int = 8
    levels: tuple[str, ...] = ("global",)
    since_cursor: bool = False
    actions_stream: str = "rl_actions"
    retrieval_stream: str = "retrieval_events"
    page_size: int = 1000
    max_entry_bytes: int = DEFAULT_MAX_ENTRY_BYTES
    cursor: str = AUTO_CURSOR  # which named cursor `since_cursor` reads and moves (the CLI passes `manual`)

    def __post_init__(self) -> None:
        check_cursor_name(self.cursor)
        if not self.hours > 0:
            raise ValueError(f"hours must be > 0, got {self.hours}")
        if self.min_k < 2 or self.max_k < self.min_k:
            raise ValueError(f"need 2 <= min_k <= max_k, got min_k={self.min_k}, max_k={self.max_k}")
        if self.page_size < 1:
            raise ValueError(f"page_size must be >= 1, got {self.page_size}")
        unknown = [lv for lv in self.levels if lv not in LEVELS]
        if unknown or not self.levels:
            raise ValueError(f"levels must be some of {', '.join(LEVELS)}, got {list(self.levels)}")

    @classmethod
    def from_config(cls, cfg: Any, **overrides: Any) -> MineParams:
        """From any object with MineConfig-like attributes (`hierarchical` picks all three levels)."""
        names = ("hours", "min_k", "max_k", "since_cursor", "actions_stream", "retrieval_stream", "page_size", "max_entry_bytes")
        kwargs = {n: getattr(cfg, n) for n in names if getattr(cfg, n, None) is not None}
        kwargs["levels"] = LEVELS if getattr(cfg, "hierarchical", False) else ("global",)
        kwargs.update(overrides)
        return cls(**kwargs)


class Page(NamedTuple):
    """Progress of a read, passed to `on_page` after every page."""

    stream: str
    entries: int  # entries read so far from this stream
    oldest_ms: int  # time of the oldest entry read so far
    newest_ms: int  # time of the newest entry (the first one read)
    start_ms: int  # the window start the read goes back to


@dataclass
class MineResult:
    """Counts, the groups per level, and (after writing) the output paths and the new cursor."""

    window: tuple[str, str]
    entries_read: int = 0
    actions_mined: int = 0
    skipped: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SKIP_REASONS, 0))
    retrieval_read: int = 0
    retrieval_skipped: dict[str, int] = field(default_factory=lambda: dict.fromkeys(RETRIEVAL_SKIP_REASONS, 0))
    groups: dict[str, list[dict]] = field(default_factory=dict)
    newest_id: str | None = None
    cursor_before: str | None = None
    cursor_after: str | None = None
    outputs: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0

    def summary(self) -> dict[str, Any]:
        """The `--json` summary: everything but the groups themselves."""
        return {
            "entries_read": self.entries_read,
            "actions_mined": self.actions_mined,
            "skipped": dict(self.skipped),
            "skipped_total": sum(self.skipped.values()),
            "groups": {level: len(groups) for level, groups in self.groups.items()},
            "retrieval_events_read": self.retrieval_read,
            "retrieval_skipped": dict(self.retrieval_skipped),
            "window": {"start": self.window[0], "end": self.window[1]},
            "cursor": {"before": self.cursor_before, "after": self.cursor_after},
            "outputs": dict(self.outputs),
            "seconds": round(self.seconds, 3),
        }


def _pages(store: Store, stream: str, start: str, end: str, page_size: int) -> Iterator[list[list[Any]]]:
    high = end
    client = store.raw_client()
    while True:
        with store.errors():
            page = client.xrevrange(stream, max=high, min=start, count=page_size)
        if not page:
            return
        yield page
        if len(page) < page_size:
            return
        high = b"(" + page[-1][0]


def _prefetched(pages: Iterator[list[list[Any]]], depth: int = 2) -> Iterator[list[list[Any]]]:
    """`pages` fetched by a helper thread up to `depth` pages ahead, so the server (or the network)
    prepares the next page while this thread parses the current one. Errors re-raise here, in order."""
    done = object()
    box: queue.Queue[Any] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: Any) -> bool:
        while not stop.is_set():
            try:
                box.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def fetch() -> None:
        try:
            for page in pages:
                if not put(page):
                    return
            put(done)
        except BaseException as exc:  # handed to the consumer, which raises it
            put(exc)

    thread = threading.Thread(target=fetch, name="miner-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            item = box.get()
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        thread.join(timeout=COMMAND_TIMEOUT_S)


def read_pages(store: Store, stream: str, start: str, end: str, page_size: int,
               on_page: Callable[[Page], None] | None = None, prefetch: bool = True) -> Iterator[list[list[Any]]]:
    """XREVRANGE pages of `stream` from `end` back to `start` (both as XREVRANGE bounds), newest first.

    Each page is the raw reply: [[id, [field, value, ...]], ...] with bytes ids, fields and values.
    With `prefetch` a helper thread requests the next page while the caller works on this one.
    `on_page` runs in the caller's thread after each page is handed over.
    """
    start_ms = id_tuple(start.lstrip("("))[0]
    pages = _pages(store, stream, start, end, page_size)
    total, newest_ms = 0, None
    for page in _prefetched(pages) if prefetch else pages:
        total += len(page)
        if newest_ms is None:
            newest_ms = id_tuple(page[0][0])[0]
        if on_page is not None:
            on_page(Page(stream, total, id_tuple(page[-1][0])[0], newest_ms, start_ms))
        yield page


def collect(store: Store, params: MineParams, home: Path | None = None, *, now: float | None = None,
            on_page: Callable[[Page], None] | None = None) -> MineResult:
    """Read the window and group it per level; nothing is written."""
    t0 = time.perf_counter()
    now_ms = int((time.time() if now is None else now) * 1000)
    start_ms = max(0, now_ms - int(params.hours * 3_600_000))
    start, end = f"{start_ms}-0", f"{now_ms}-{MAX_SEQ}"
    result = MineResult(window=(start, end))
    low = start
    if params.since_cursor:
        if home is None:
            raise MinerError("mining since the cursor needs the home folder that holds cursor.json")
        result.cursor_before = read_cursor(cursor_path(home, params.cursor)).get(params.actions_stream)
        if result.cursor_before and id_tuple(result.cursor_before) >= id_tuple(start):
            low = "(" + result.cursor_before

    actions: list[tuple[bytes, Action]] = []
    skipped: Counter[str] = Counter()
    max_bytes = params.max_entry_bytes
    cache = ParseCache()
    gc_was_on = gc.isenabled()
    gc.disable()  # the loops build no reference cycles; collections over a growing heap only cost time
    try:
        for page in read_pages(store, params.actions_stream, low, end, params.page_size, on_page):
            if result.newest_id is None:
                result.newest_id = page[0][0].decode()
            result.entries_read += len(page)
            for sid, fields in page:
                parsed = parse_action(fields, max_bytes, False, cache)
                if type(parsed) is str:
                    skipped[parsed] += 1
                else:
                    actions.append((sid, parsed))
        result.actions_mined = len(actions)
        result.skipped.update(skipped)
        joined = _retrieval_hits(store, params, start, end, result, on_page)
        for level in params.levels:
            result.groups[level] = build_groups(actions, level, min_k=params.min_k, max_k=params.max_k,
                                                hits_by_query=joined, stream=params.actions_stream)
    finally:
        if gc_was_on:
            gc.enable()
    result.seconds = time.perf_counter() - t0
    return result


def _retrieval_hits(store: Store, params: MineParams, start: str, end: str, result: MineResult,
                    on_page: Callable[[Page], None] | None) -> dict[str, list[dict]]:
    """Normalised query -> merged hits, from the retrieval events of the window."""
    hits: dict[str, list[dict]] = {}
    rskipped: Counter[str] = Counter()
    for page in read_pages(store, params.retrieval_stream, start, end, params.page_size, on_page):
        result.retrieval_read += len(page)
        for _sid, fields in page:
            event = parse_retrieval(fields, params.max_entry_bytes)
            if type(event) is str:
                rskipped[event] += 1
            else:
                hits.setdefault(event.query, []).extend(event.hits)
    result.retrieval_skipped.update(rskipped)
    return {query: merge_hits(h) for query, h in hits.items()}


def encode_groups(groups: list[dict]) -> bytes:
    """Group JSONL: one compact JSON object per line."""
    return b"".join(orjson.dumps(g) + b"\n" for g in groups)


def write_outputs(result: MineResult, paths: dict[str, Path], cursor_file: Path | None = None,
                  stream: str = "rl_actions") -> None:
    """Write each level's groups to `paths[level]`, then (if `cursor_file`) advance the cursor.

    All files are staged before any is replaced; the cursor moves last, only after all are in place.
    """
    missing = [level for level in result.groups if level not in paths]
    if missing:
        raise MinerError(f"no output path for level(s) {', '.join(missing)}")
    staged: list[tuple[Path, Path]] = []
    try:
        for level, groups in result.groups.items():
            staged.append((atomic.stage(paths[level], encode_groups(groups)), Path(paths[level])))
    except OSError as exc:
        atomic.discard([tmp for tmp, _ in staged])
        raise MinerError(f"cannot write the dataset ({exc}); check free space and permissions of the output folder") from exc
    for tmp, path in staged:
        atomic.commit(tmp, path)
    result.outputs = {level: str(Path(paths[level]).absolute()) for level in result.groups}
    result.cursor_after = result.cursor_before
    if cursor_file is not None and result.newest_id is not None:
        cursor = read_cursor(cursor_file)
        old = cursor.get(stream)
        if old is None or id_tuple(result.newest_id) > id_tuple(old):
            cursor[stream] = result.newest_id
            atomic.write_atomic(cursor_file, encode_cursor(cursor))
        result.cursor_after = cursor[stream]


def output_paths(levels: tuple[str, ...], out: Path | None, out_dir: Path | None) -> dict[str, Path]:
    """`out` for a single global level; `<out_dir>/<level>.jsonl` otherwise."""
    if levels == ("global",) and out is not None:
        return {"global": Path(out)}
    if out_dir is None:
        raise MinerError("hierarchical mining writes one file per level: give an output folder (--out-dir)")
    return {level: Path(out_dir) / f"{level}.jsonl" for level in levels}


def mine(store: Store, params: MineParams, home: Path | None, *, out: Path | None = None, out_dir: Path | None = None,
         now: float | None = None, on_page: Callable[[Page], None] | None = None) -> MineResult:
    """Collect, write the datasets atomically, then advance the cursor (with `since_cursor`).

    With `since_cursor` all of it runs under `cursor_lock(home)`: a second miner of the same home
    waits, then starts after the cursor this one moved, so concurrent runs never mine an entry twice.
    """
    paths = output_paths(params.levels, out, out_dir)
    if not params.since_cursor or home is None:
        result = collect(store, params, home, now=now, on_page=on_page)
        write_outputs(result, paths, None, params.actions_stream)
        return result
    with cursor_lock(home):
        result = collect(store, params, home, now=now, on_page=on_page)
        write_outputs(result, paths, cursor_path(home, params.cursor), params.actions_stream)
    return result
