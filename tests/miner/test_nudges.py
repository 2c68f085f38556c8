"""Policy nudges: tool choice, safe rule regexes, merging into .dspy_policy.yaml, path safety (miner.nudges)."""

from __future__ import annotations

import os
import re

import orjson
import pytest
import yaml

from miner.errors import PolicyPathError
from miner.nudges import NudgeParams, apply_policy, choose_tools, compute_policy, keywords, policy_path, rule_regex


def test_rule_regex_escapes_keywords_so_they_match_only_themselves():
    regex = rule_regex(["c++", "(.*)", "fix"])
    pattern = re.compile(regex)  # compiles: no keyword can break it
    assert regex.startswith(r"(?i)\b(") and regex.endswith(r")\b")
    assert pattern.search("please FIX the crash")
    assert not pattern.search("anything at all")  # `(.*)` did not widen it
    assert not pattern.search("c")  # nor did `c++` turn into `c` repeated
    assert not pattern.search("")
    for word in ["a|b", "x)|(.*", "[", "\\", "^$"]:
        assert re.compile(rule_regex([word])).search("totally unrelated text") is None


def test_keywords_start_and_end_with_word_characters():
    assert keywords("Fix the C++ build of node.js (.*) in parser_v2!") == {"fix", "build", "node.js", "parser_v2"}


def test_choose_tools_min_count_and_deny_bound():
    samples = [("good", 0.9)] * 5 + [("ok", 0.5)] * 5 + [("bad", 0.01)] * 6 + [("rare", 1.0)] * 4 + [("meh", 0.2)] * 5
    params = NudgeParams(top_k=2, bottom_k=1)
    assert choose_tools(samples, params) == (["good", "ok"], ["bad"])
    no_deny = [s for s in samples if s[0] != "bad"]
    assert choose_tools(no_deny, params) == (["good", "ok"], [])  # the worst (meh) has mean 0.2 > 0.05
    two = [("good", 0.9)] * 5 + [("bad", 0.0)] * 5
    assert choose_tools(two, NudgeParams(top_k=3, bottom_k=1)) == (["good"], ["bad"])  # denied is never preferred


def test_compute_policy_rules_follow_keyword_specific_best_tools():
    samples = []
    for i in range(10):
        samples += [(f"Fix the crash in module {i}", "run_tests", 0.9), (f"Fix the crash in module {i}", "grep", 0.2),
                    (f"Find where config {i} loads", "grep", 0.9), (f"Find where config {i} loads", "run_tests", 0.3)]
    policy = compute_policy(samples, NudgeParams(top_k=1, bottom_k=0))
    assert policy["prefer_tools"] in (["run_tests"], ["grep"])
    (rule,) = policy["rules"]
    other = "grep" if policy["prefer_tools"] == ["run_tests"] else "run_tests"
    assert rule["prefer_tools"] == [other]
    words = rule["regex"][len(r"(?i)\b(") : -len(r")\b")].split("|")
    assert 1 <= len(words) <= 3


def seed_actions(store, rows):
    pipe = store.client.pipeline(transaction=False)
    for prompt, tool, reward in rows:
        rec = {"action_type": "code_edit", "reward": reward, "parameters": {"query": prompt, "tool": tool}, "result": {"output": f"{tool} {reward}"}}
        pipe.xadd("rl_actions", {"data": orjson.dumps(rec)})
    pipe.execute()


ROWS = ([("Port the C++ (.*) matcher to rust", "edit_file", 0.9)] * 6 + [("Port the C++ (.*) matcher to rust", "shell_exec", 0.0)] * 6
        + [("Find every caller of parse()", "grep_search", 0.95)] * 6 + [("Find every caller of parse()", "edit_file", 0.3)] * 6)


def test_apply_policy_writes_merges_and_is_idempotent(store, tmp_path):
    ws = tmp_path / "project"
    ws.mkdir()
    policy_file = ws / ".dspy_policy.yaml"
    policy_file.write_text(yaml.safe_dump({
        "version": 3, "owner": {"team": "agents"},
        "policy": {"max_steps": 12, "rules": [{"regex": "(?i)\\bdeploy\\b", "prefer_tools": ["ci"], "deny_tools": []},
                                              {"regex": "(?i)\\bdeploy\\b", "prefer_tools": ["ci"], "deny_tools": []}]}}))
    seed_actions(store, ROWS)
    change = apply_policy(store, NudgeParams(top_k=2, bottom_k=1), ws, [tmp_path])
    assert change.changed and change.path == policy_file.resolve()
    data = yaml.safe_load(policy_file.read_text())
    assert data["version"] == 3 and data["owner"] == {"team": "agents"} and data["policy"]["max_steps"] == 12
    policy = data["policy"]
    assert policy["prefer_tools"] == ["grep_search", "edit_file"] and policy["deny_tools"] == ["shell_exec"]
    regexes = [r["regex"] for r in policy["rules"]]
    assert regexes[0] == "(?i)\\bdeploy\\b" and len(regexes) == len(set(regexes))  # hand-written rule kept once
    for regex in regexes:
        assert re.compile(regex).search("zzz qqq") is None
    assert any(line.startswith("prefer_tools:") for line in change.lines)

    before = policy_file.read_bytes()
    mtime = os.stat(policy_file).st_mtime_ns
    again = apply_policy(store, NudgeParams(top_k=2, bottom_k=1), ws, [tmp_path])
    assert not again.changed and again.lines == []
    assert policy_file.read_bytes() == before and os.stat(policy_file).st_mtime_ns == mtime


def test_not_enough_data_leaves_the_file_alone(store, tmp_path):
    seed_actions(store, ROWS[:3])
    change = apply_policy(store, NudgeParams(), tmp_path, [tmp_path])
    assert not change.changed and "not enough data" in change.lines[0]
    assert not (tmp_path / ".dspy_policy.yaml").exists()


def test_paths_outside_the_workspace_are_refused(tmp_path):
    root = tmp_path / "proj"
    (root / "sub").mkdir(parents=True)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    assert policy_path(root / "sub", [root]) == (root / "sub" / ".dspy_policy.yaml").resolve()
    with pytest.raises(PolicyPathError, match="outside"):
        policy_path(root / "sub" / ".." / "..", [root])
    (root / "link").symlink_to(outside)
    with pytest.raises(PolicyPathError, match="outside"):
        policy_path(root / "link", [root])
    (root / ".dspy_policy.yaml").symlink_to(outside / "policy.yaml")
    with pytest.raises(PolicyPathError, match="remove the link"):
        policy_path(root, [root])
    with pytest.raises(PolicyPathError, match="does not exist"):
        policy_path(root / "missing", [root])
