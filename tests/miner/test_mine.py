"""Mining against a real Redis: round trips into groups, window edges, malformed entries, cursor, faults."""

from __future__ import annotations

import json
import random
import time
from pathlib import Path

import orjson
import pytest

from miner.cursor import cursor_path, read_cursor
from miner.errors import StoreUnavailable
from miner.extract import SKIP_REASONS
from miner.groups import LEVELS
from miner.mine import MineParams, collect, mine
from miner.store import open_store

NOW = 2_000_000_000.0  # a fixed "now" (seconds) so stream ids can be placed exactly
NOW_MS = int(NOW * 1000)


def rec(prompt: str, text: str, reward: float, action_type: str = "code_edit", **over) -> dict:
    r = {"action_type": action_type, "reward": reward, "parameters": {"query": prompt}, "result": {"output": text}}
    r.update(over)
    return r


class Flat(dict):
    """A flat field-value entry, written as its own fields."""


def add(store, items, stream: str = "rl_actions", start_ms: int = NOW_MS - 60_000) -> list[str]:
    """XADD each item with ids 1 ms apart: a record dict -> field `data` (JSON), bytes -> field `data` as
    is, `Flat` or a dict with bytes keys -> those fields."""
    pipe = store.client.pipeline(transaction=False)
    ids = []
    for i, item in enumerate(items):
        sid = f"{start_ms + i}-0"
        if isinstance(item, Flat) or (isinstance(item, dict) and any(isinstance(k, bytes) for k in item)):
            fields = item
        elif isinstance(item, bytes):
            fields = {"data": item}
        else:
            fields = {"data": orjson.dumps(item)}
        pipe.xadd(stream, fields, id=sid)
        ids.append(sid)
    pipe.execute()
    return ids


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_round_trip_into_groups_with_meta_and_retrieval_join(store, home, tmp_path):
    ids = add(store, [
        rec("Fix the pagination bug", "diff A, ran tests", 0.9, context_hash="h1", parameters={"query": "Fix the pagination bug", "signature_name": "FixBug"}),
        rec("Fix the pagination bug", "prose answer", 0.1, action_type="code_analysis", environment="testing"),
        rec("Fix  the pagination\nbug", "diff A, ran tests", 0.7),  # same prompt after normalisation, duplicate text
        rec("Explain the cache layer", "only one candidate", 0.5),
    ])
    add(store, [{"query": "Fix the   pagination bug", "hits": [{"path": "pager.py", "score": 0.8, "source": "imesh"}]},
                {"query": "Fix the pagination bug", "hits": [{"path": "pager.py", "score": 0.9, "source": "bm25"}, {"path": "util.py", "score": 0.3}]}],
        stream="retrieval_events")
    out = tmp_path / "global.jsonl"
    result = mine(store, MineParams(hours=1), home, out=out, now=NOW)
    (group,) = read_jsonl(out)
    assert group["prompt"] == "Fix the pagination bug"
    assert group["candidates"] == [{"text": "diff A, ran tests", "reward": 0.9}, {"text": "prose answer", "reward": 0.1}]
    meta = group["meta"]
    assert meta["level"] == "global" and meta["group_size"] == 2 and meta["n_entries"] == 3 and meta["counts"] == [2, 1]
    assert meta["context_hash"] == "h1" and meta["signature_name"] == "FixBug" and meta["environment"] == "testing"
    assert meta["action_types"] == ["code_analysis", "code_edit"]
    assert meta["source_ids"] == [ids[0], ids[1]] and meta["stream"] == "rl_actions"
    assert meta["imesh_hits"] == [{"path": "pager.py", "score": 0.9, "source": "bm25"}, {"path": "util.py", "score": 0.3, "source": None}]
    assert (result.entries_read, result.actions_mined, result.retrieval_read) == (4, 4, 2)
    assert result.summary()["groups"] == {"global": 1} and result.outputs == {"global": str(out)}


def test_hierarchical_files(store, home, tmp_path):
    add(store, [
        rec("Refactor the parser module", "patch 1", 0.8, action_type="patch_generation", parameters={"query": "Refactor the parser module", "signature_name": "Refactor"}),
        rec("Refactor the parser module", "patch 2", 0.4, action_type="code_edit", parameters={"query": "Refactor the parser module", "signature_name": "Refactor"}),
        rec("Refactor the parser module", "ran tests", 0.6, action_type="test_execution", parameters={"query": "Refactor the parser module", "signature_name": "Other"}),
        rec("Refactor the parser module", "no signature", 0.2, action_type="test_execution"),
    ])
    result = mine(store, MineParams(hours=1, levels=LEVELS), home, out_dir=tmp_path / "ds", now=NOW)
    files = {level: read_jsonl(tmp_path / "ds" / f"{level}.jsonl") for level in LEVELS}
    assert [len(g["candidates"]) for g in files["global"]] == [4]
    assert [(g["meta"]["signature_name"], [c["text"] for c in g["candidates"]]) for g in files["signature"]] == [("Refactor", ["patch 1", "patch 2"])]
    assert [[c["text"] for c in g["candidates"]] for g in files["patch"]] == [["patch 1", "patch 2"]]
    assert all(g["meta"]["level"] == level for level, groups in files.items() for g in groups)
    assert result.summary()["groups"] == {"global": 1, "signature": 1, "patch": 1}


def test_flat_field_value_entries_are_mined(store, home, tmp_path):
    add(store, [
        Flat({"action_type": "code_edit", "reward": "0.75", "parameters": json.dumps({"query": "Flat entries are fine too"}),
              "result": json.dumps({"output": "flat answer one"})}),
        Flat({"action_type": "code_edit", "reward": "0.25", "environment": "local",
              "parameters": json.dumps({"query": "Flat entries are fine too"}), "result": json.dumps({"stdout": "flat answer two"})}),
    ])
    result = collect(store, MineParams(hours=1), home, now=NOW)
    (group,) = result.groups["global"]
    assert group["candidates"] == [{"text": "flat answer one", "reward": 0.75}, {"text": "flat answer two", "reward": 0.25}]


def test_time_window_edges(store, home):
    start_ms = NOW_MS - 3_600_000
    pipe = store.client.pipeline(transaction=False)
    for sid, text in [(f"{start_ms - 1}-9", "before the window"), (f"{start_ms}-0", "at the window start"),
                      (f"{NOW_MS}-3", "at now"), (f"{NOW_MS + 1}-0", "after now")]:
        pipe.xadd("rl_actions", {"data": orjson.dumps(rec("Edges of the time window", text, 0.5))}, id=sid)
    pipe.execute()
    result = collect(store, MineParams(hours=1), home, now=NOW)
    assert result.entries_read == 2
    (group,) = result.groups["global"]
    assert sorted(c["text"] for c in group["candidates"]) == ["at now", "at the window start"]


def test_pagination_reads_everything_newest_first(store, home):
    add(store, [rec(f"Prompt number {i % 5} here", f"text {i}", i / 100) for i in range(53)])
    pages = []
    small = collect(store, MineParams(hours=1, page_size=7, max_k=20), home, now=NOW,
                    on_page=lambda p: pages.append((p.entries, p.oldest_ms)))
    big = collect(store, MineParams(hours=1, page_size=1000, max_k=20), home, now=NOW)
    assert small.groups == big.groups and small.entries_read == 53
    assert [n for n, _ in pages] == [7, 14, 21, 28, 35, 42, 49, 53]
    assert [ms for _, ms in pages] == sorted((ms for _, ms in pages), reverse=True)  # going back in time


def malformed(reason: str, rng: random.Random, i: int):
    """One entry that must be skipped for exactly `reason` (ASCII JSON, so truncation stays UTF-8)."""
    base = rec(f"Malformed prompt {i} here", f"text {i}", 0.5)
    if reason == "too_large":
        return rec(f"Huge prompt {i} here", "x" * rng.randint(9000, 40000), 0.5)
    if reason == "not_utf8":
        garbage = b"\xff" + bytes(rng.randrange(256) for _ in range(rng.randint(5, 200)))
        return garbage if rng.random() < 0.7 else {b"reward": garbage, b"action_type": b"code_edit"}
    if reason == "bad_json":
        text = orjson.dumps(base)
        return text[: rng.randint(1, len(text) - 1)]
    if reason == "wrong_type":
        return rng.choice([b"[1, 2, 3]", b'"a string"', b"42", b"null",
                           orjson.dumps({**base, "parameters": ["query"]}), orjson.dumps({**base, "result": "text"})])
    if reason == "missing_reward":
        return rng.choice([{k: v for k, v in base.items() if k != "reward"}, {**base, "reward": None}])
    if reason == "non_numeric_reward":
        return {**base, "reward": rng.choice(["0.5", True, [1], {"v": 1}, "high"])}
    if reason == "non_finite_reward":
        token = rng.choice([b"NaN", b"Infinity", b"-Infinity", b"1e999"])
        return orjson.dumps(base).replace(b'"reward":0.5', b'"reward":' + token)
    if reason == "unknown_action_type":
        return {**base, "action_type": rng.choice(["deploy_rocket", "", 7, None, "CODE_EDIT"])}
    if reason == "unknown_environment":
        return {**base, "environment": rng.choice(["moon", "prod", 3, ""])}
    if reason == "no_prompt":
        return {**base, "parameters": rng.choice([{}, {"query": "   "}, {"tool": "x"}, {"query": 5}])}
    if reason == "short_prompt":
        return {**base, "parameters": {"query": rng.choice(["fix it", "  a  b  ", "go now"])}}
    if reason == "no_candidate":
        return {**base, "result": rng.choice([{}, {"nested": {"a": 1}}, {"list": [1, 2]}])}
    raise AssertionError(reason)


def test_ten_thousand_entries_mixing_good_and_malformed(store, home):
    rng = random.Random(7)
    good = [rec(f"Good prompt number {p}", f"answer {p}.{t}", round(rng.random(), 3))
            for p in range(1000) for t in range(7)]
    bad = [(reason, malformed(reason, rng, i)) for i in range(250) for reason in SKIP_REASONS]
    items = good + [entry for _, entry in bad]
    rng.shuffle(items)
    assert len(items) == 10_000
    add(store, items, start_ms=NOW_MS - 1_000_000)
    result = collect(store, MineParams(hours=1, max_k=8, page_size=500, max_entry_bytes=8192), home, now=NOW)
    assert result.entries_read == 10_000
    assert result.actions_mined == len(good)
    assert result.skipped == {reason: 250 for reason in SKIP_REASONS}
    mined = {(g["prompt"], c["text"], c["reward"]) for g in result.groups["global"] for c in g["candidates"]}
    assert mined == {(r["parameters"]["query"], r["result"]["output"], r["reward"]) for r in good}


def test_since_cursor_mines_each_entry_once(store, home, tmp_path):
    out = tmp_path / "g.jsonl"
    params = MineParams(hours=1, since_cursor=True)
    first_ids = add(store, [rec("Cursor prompt number one", f"t{i}", i / 10) for i in range(6)], start_ms=NOW_MS - 50_000)
    r1 = mine(store, params, home, out=out, now=NOW)
    assert r1.entries_read == 6 and read_cursor(cursor_path(home)) == {"rl_actions": first_ids[-1]}
    new_ids = add(store, [rec("Cursor prompt number two", f"u{i}", i / 10) for i in range(3)], start_ms=NOW_MS - 40_000)
    r2 = mine(store, params, home, out=out, now=NOW)
    assert r2.entries_read == 3 and [g["prompt"] for g in read_jsonl(out)] == ["Cursor prompt number two"]
    assert (r2.cursor_before, r2.cursor_after) == (first_ids[-1], new_ids[-1])
    r3 = mine(store, params, home, out=out, now=NOW)
    assert r3.entries_read == 0 and read_jsonl(out) == [] and read_cursor(cursor_path(home)) == {"rl_actions": new_ids[-1]}
    mine(store, MineParams(hours=1), home, out=out, now=NOW)  # without --since-cursor the cursor stays
    assert read_cursor(cursor_path(home)) == {"rl_actions": new_ids[-1]}


def test_server_killed_mid_mine_leaves_no_output_and_the_cursor(store, home, tmp_path, kill_store):
    ids = add(store, [rec(f"Fault prompt number {i % 10}", f"text {i}", i / 100) for i in range(100)], start_ms=NOW_MS - 500_000)
    params = MineParams(hours=1, since_cursor=True, page_size=10, levels=LEVELS)
    cursor_file = cursor_path(home)
    cursor_file.write_text('{"rl_actions": "0-1"}')
    before = cursor_file.read_bytes()
    out_dir = tmp_path / "ds"

    def kill_after_first_page(page):
        if page.entries == 10:
            kill_store()

    with pytest.raises(StoreUnavailable, match="unavailable .*run the command again to restart it"):
        mine(store, params, home, out_dir=out_dir, now=NOW, on_page=kill_after_first_page)
    assert not out_dir.exists()  # nothing written, not even a temp file
    assert cursor_file.read_bytes() == before

    restarted = open_store(home)  # the next run starts the server again from its files
    try:
        r = mine(restarted, params, home, out_dir=out_dir, now=NOW)
        assert r.entries_read == 100 and r.actions_mined == 100
        assert sum(g["meta"]["n_entries"] for g in read_jsonl(out_dir / "global.jsonl")) == 100
        assert read_cursor(cursor_file) == {"rl_actions": ids[-1]}
        assert mine(restarted, params, home, out_dir=out_dir, now=NOW).entries_read == 0
        assert sorted(p.name for p in out_dir.iterdir()) == ["global.jsonl", "patch.jsonl", "signature.jsonl"]
    finally:
        restarted.close()


def test_mine_params_validation_and_config_mapping():
    with pytest.raises(ValueError, match="min_k <= max_k"):
        MineParams(min_k=5, max_k=3)
    with pytest.raises(ValueError, match="levels"):
        MineParams(levels=("planet",))

    class Cfg:
        hours, min_k, max_k, hierarchical, since_cursor, page_size = 12.0, 3, 5, True, True, 50

    params = MineParams.from_config(Cfg())
    assert (params.hours, params.min_k, params.max_k, params.levels, params.since_cursor, params.page_size) == (12.0, 3, 5, LEVELS, True, 50)


def test_real_clock_window(store, home):
    store.client.xadd("rl_actions", {"data": orjson.dumps(rec("Written just now by an agent", "a", 0.1))})
    store.client.xadd("rl_actions", {"data": orjson.dumps(rec("Written just now by an agent", "b", 0.2))})
    time.sleep(0.002)
    assert len(collect(store, MineParams(hours=0.01), home).groups["global"]) == 1


def test_reward_axes_are_mined_and_train_with_reward_weights(store, home, tmp_path, grpo):
    """Each candidate keeps its record's `rewards` axes (a folded duplicate keeps its best entry's axes),
    so `grpo train --reward-weights` runs on the mined file."""
    from miner.actionlog import ActionLog

    def action(prompt: str, text: str, reward: float, axes: dict | None, ts: float) -> dict:
        r = rec(prompt, text, reward, timestamp=ts)
        return r if axes is None else {**r, "rewards": axes}

    t = time.time() - 60
    add(store, [{**rec("Speed up the parser loop", "loop W", 0.4), "rewards": {"tests": True}}],  # not numbers
        start_ms=int(t * 1000) - 60_000)  # written raw: ActionLog's validation refuses such axes
    ActionLog(store).record_actions([  # oldest first, so the newest entry wins a reward tie
        action("Fix the flaky login test", "patch A", 0.2, {"tests": 0.0, "style": 1.0}, t),
        action("Fix the flaky login test", "patch B", 0.9, {"tests": 1.0, "style": 0.5}, t + 1),
        action("Fix the flaky login test", "patch A", 0.6, {"tests": 0.5, "style": 0.5}, t + 2),  # best of "patch A"
        action("Fix the flaky login test", "patch A", 0.1, {"tests": 0.0, "style": 0.0}, t + 3),
        action("Speed up the parser loop", "loop X", 0.3, {"tests": 0.0, "style": 1.0}, t + 4),
        action("Speed up the parser loop", "loop Y", 0.7, {"tests": 1.0, "style": 0.0}, t + 5),
        action("Speed up the parser loop", "loop Z", 0.5, None, t + 6),  # no axes: none in the output
    ])
    out = tmp_path / "mined.jsonl"
    result = mine(store, MineParams(hours=1), home, out=out)
    assert result.actions_mined == 8
    groups = {g["prompt"]: {c["text"]: c for c in g["candidates"]} for g in read_jsonl(out)}
    login = groups["Fix the flaky login test"]
    assert login["patch A"] == {"text": "patch A", "reward": 0.6, "rewards": {"tests": 0.5, "style": 0.5}}
    assert login["patch B"]["rewards"] == {"tests": 1.0, "style": 0.5}
    parser = groups["Speed up the parser loop"]
    assert parser["loop X"]["rewards"] == {"tests": 0.0, "style": 1.0}
    assert parser["loop Y"]["rewards"] == {"tests": 1.0, "style": 0.0}
    assert "rewards" not in parser["loop Z"] and "rewards" not in parser["loop W"]  # absent / not numbers

    only_axes = tmp_path / "axes.jsonl"  # --reward-weights needs every candidate's axes
    only_axes.write_text("".join(json.dumps({**g, "candidates": [c for c in g["candidates"] if "rewards" in c]}) + "\n"
                                 for g in read_jsonl(out)))
    code, stdout, err = grpo("train", "--dataset", str(only_axes), "--reward-weights", "tests=1,style=0.2",
                             "--steps", "2", "--out", str(tmp_path / "run"), "--json")
    assert code == 0, err
    assert json.loads(stdout.splitlines()[-1])["step"] == 2
    metrics = read_jsonl(tmp_path / "run" / "metrics.jsonl")
    assert "axis_tests_mean" in metrics[-1] and "axis_style_mean" in metrics[-1]
