"""Demo data: deterministic, learnable reward signal, enough groups for the auto mode (miner.demo)."""

from __future__ import annotations

from collections import defaultdict
from statistics import mean

from miner.demo import demo_actions, seed_store, stream_ids
from miner.groups import LEVELS
from miner.mine import MineParams, collect
from miner.schema import ActionRecord, RetrievalEvent, validate_record

NOW = 1_900_000_000.0


def test_deterministic_and_valid():
    a1, e1 = demo_actions(300, seed=3, now=NOW)
    a2, e2 = demo_actions(300, seed=3, now=NOW)
    assert (a1, e1) == (a2, e2)
    assert demo_actions(300, seed=4, now=NOW)[0] != a1
    for rec in a1:
        validate_record(ActionRecord, rec)
        assert NOW - 3 * 86400 <= rec["timestamp"] <= NOW
    for ev in e1:
        validate_record(RetrievalEvent, ev)
    assert len({r["parameters"].get("query") or r["parameters"].get("task") or r["state_before"].get("current_task") for r in a1}) >= 36


def test_rewards_carry_signal_a_learner_can_pick_up():
    actions, _ = demo_actions(3000, seed=0, now=NOW)
    by = defaultdict(list)
    for rec in actions:
        prompt = rec["parameters"].get("query") or rec["parameters"].get("task") or rec["state_before"]["current_task"]
        text = next(iter(v for k, v in rec["result"].items() if k != "exit_code"))
        style = "diff+tests" if "```diff" in text and "Ran the tests" in text else "prose" if "first validates" in text else "other"
        kind = "fix" if prompt.startswith("Fix") else "explain" if prompt.startswith("Explain") else "other"
        by[kind, style].append(rec["reward"])
        by["tool", rec["parameters"]["tool"]].append(rec["reward"])
    assert mean(by["fix", "diff+tests"]) > mean(by["fix", "prose"]) + 0.4
    assert mean(by["explain", "prose"]) > mean(by["explain", "diff+tests"]) + 0.3
    assert mean(by["tool", "shell_exec"]) <= 0.05


def test_default_seed_gives_enough_groups_per_level(store, home):
    assert seed_store(store, now=NOW) == (1200, 39)
    for hours, floor in ((48, 30), (24, 20)):
        result = collect(store, MineParams(hours=hours, levels=LEVELS), home, now=NOW + 1)
        assert result.skipped == dict.fromkeys(result.skipped, 0)
        assert all(len(result.groups[level]) >= floor for level in LEVELS), (hours, result.summary()["groups"])
        assert any(g["meta"]["imesh_hits"] for g in result.groups["global"])


def test_stream_ids_increase_after_existing_entries():
    assert stream_ids([1.0, 1.0, 2.5], None) == ["1000-0", "1000-1", "2500-0"]
    assert stream_ids([1.0, 3.0], "2000-4") == ["2000-5", "3000-0"]
