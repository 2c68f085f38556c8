"""Entry shapes, prompt / candidate inference order and skip reasons (miner.extract), no Redis needed."""

from __future__ import annotations

import json

import orjson
import pytest

from miner.extract import SKIP_REASONS, Action, decode_entry, parse_action, parse_retrieval, tool_name


def entry(rec) -> dict[bytes, bytes]:
    return {b"data": orjson.dumps(rec)}


def good(**over) -> dict:
    rec = {"action_type": "code_edit", "reward": 0.5, "parameters": {"query": "Fix the pagination bug"},
           "result": {"output": "a diff"}}
    rec.update(over)
    return rec


def test_documented_record_parses_to_action():
    act = parse_action(entry(good(environment="testing", context_hash="abc",
                                  parameters={"query": "Fix  the\n pagination bug", "signature_name": "FixBug"})))
    assert isinstance(act, Action)
    assert act.prompt == "Fix the pagination bug"  # whitespace-normalised
    assert (act.text, act.reward, act.action_type, act.environment) == ("a diff", 0.5, "code_edit", "testing")
    assert (act.signature_name, act.context_hash, act.tool) == ("FixBug", "abc", None)


@pytest.mark.parametrize(
    ("rec", "expected"),
    [
        # containers in order parameters, result, state_before, state_after; keys in order inside each
        ({"parameters": {"task": "task in parameters"}, "result": {"query": "query in result", "output": "x"}}, "task in parameters"),
        ({"parameters": {"prompt": "the prompt key", "query": "the query key"}}, "the query key"),
        ({"parameters": {"input": "the input key", "instruction": "the instruction"}}, "the instruction"),
        ({"parameters": {"query": "   ", "user": "the user key!"}}, "the user key!"),  # blank skipped
        ({"parameters": {"query": 42, "task": "non-strings skipped"}}, "non-strings skipped"),
        ({"result": {"output": "x", "query": "from the result"}}, "from the result"),
        ({"state_before": {"task": "from state before"}, "state_after": {"query": "from state after"}}, "from state before"),
        ({"state_after": {"query": "from state after"}}, "from state after"),
        ({"state_before": {"current_task": "current task string"}}, "current task string"),
        ({"state_before": {"current_task": {"prompt": "current task object"}}}, "current task object"),
        ({"state_before": {"current_task": "the current task", "prompt": "wins over current"}}, "wins over current"),
    ],
)
def test_prompt_inference_order(rec, expected):
    rec = {"action_type": "code_edit", "reward": 1.0, **rec}
    rec.setdefault("result", {"output": "x"})
    assert parse_action(entry(rec)).prompt == expected


@pytest.mark.parametrize(
    ("result", "parameters", "expected"),
    [
        ({"output": "out", "message": "msg"}, {}, "out"),
        ({"message": "msg", "text": "txt"}, {}, "msg"),
        ({"stdout": "so", "patch_content": "pc", "diff": "d"}, {}, "so"),
        ({"patch_content": "pc", "diff": "d", "result": "r"}, {}, "pc"),
        ({"diff": "d", "result": "r"}, {}, "d"),
        ({"result": "r"}, {"output": "from parameters"}, "r"),  # result container first
        ({"output": " "}, {"output": "from parameters"}, "from parameters"),
        ({"exit_code": 0, "ok": True, "files": ["a"], "note": None, "score": 1.5}, {}, '{"exit_code":0,"ok":true,"note":null,"score":1.5}'),
    ],
)
def test_candidate_text_rules(result, parameters, expected):
    rec = good(result=result, parameters={"query": "a long enough prompt", **parameters})
    assert parse_action(entry(rec)).text == expected


def test_candidate_fallback_is_cut_at_2000_chars():
    act = parse_action(entry(good(result={"log": "x" * 5000})))
    assert len(act.text) == 2000 and act.text.startswith('{"log":"xxx')


def test_payload_field_precedence_and_flat_entries():
    rec = good()
    assert parse_action({b"value": orjson.dumps(rec)}).text == "a diff"
    assert parse_action({b"payload": orjson.dumps(rec)}).text == "a diff"
    assert parse_action({b"data": orjson.dumps(rec), b"value": b"not json"}).text == "a diff"
    flat = {b"action_type": b"patch_generation", b"reward": b"0.25", b"environment": b"local",
            b"parameters": orjson.dumps({"query": "Flat entries carry JSON strings"}),
            b"result": orjson.dumps({"patch_content": "--- a\n+++ b"})}
    act = parse_action(flat)
    assert (act.prompt, act.text, act.reward, act.action_type) == ("Flat entries carry JSON strings", "--- a\n+++ b", 0.25, "patch_generation")
    assert parse_action([k for kv in flat.items() for k in kv]) == act  # the raw reply's flat list


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({b"data": b"x" * 5000}, "too_large"),
        ({b"data": b"\xff\xfe\x00garbage"}, "not_utf8"),
        ({b"blob": b"\x80\x81"}, "not_utf8"),
        ({b"data": b'{"action_type": "code_edit", "reward": 1'}, "bad_json"),
        ({b"reward": b"1", b"parameters": b"{not json"}, "bad_json"),
        ({b"data": b"[1, 2]"}, "wrong_type"),
        ({b"data": orjson.dumps(good(parameters="a string"))}, "wrong_type"),
        ({b"data": orjson.dumps(good(result=[1]))}, "wrong_type"),
        ({b"data": orjson.dumps({k: v for k, v in good().items() if k != "reward"})}, "missing_reward"),
        ({b"data": orjson.dumps(good(reward=None))}, "missing_reward"),
        ({b"data": orjson.dumps(good(reward="0.5"))}, "non_numeric_reward"),
        ({b"data": orjson.dumps(good(reward=True))}, "non_numeric_reward"),
        ({b"data": orjson.dumps(good(reward=[1]))}, "non_numeric_reward"),
        ({b"reward": b"high", b"action_type": b"code_edit"}, "non_numeric_reward"),
        ({b"data": json.dumps(good(reward=float("nan"))).encode()}, "non_finite_reward"),
        ({b"data": json.dumps(good(reward=float("inf"))).encode()}, "non_finite_reward"),
        ({b"data": orjson.dumps(good()).replace(b'"reward":0.5', b'"reward":1e999')}, "non_finite_reward"),
        ({b"data": orjson.dumps(good()).replace(b'"reward":0.5', b'"reward":' + b"9" * 400)}, "non_finite_reward"),
        ({b"reward": b"-inf", b"action_type": b"code_edit"}, "non_finite_reward"),
        ({b"data": orjson.dumps(good(action_type="deploy_rocket"))}, "unknown_action_type"),
        ({b"data": orjson.dumps(good(action_type=None))}, "unknown_action_type"),
        ({b"data": orjson.dumps(good(action_type=["code_edit"]))}, "unknown_action_type"),
        ({b"data": orjson.dumps(good(environment="moon"))}, "unknown_environment"),
        ({b"data": orjson.dumps(good(parameters={"tool": "x"}))}, "no_prompt"),
        ({b"data": orjson.dumps(good(parameters={"query": " \n "}))}, "no_prompt"),
        ({b"data": orjson.dumps(good(parameters={"query": " fix   it "}))}, "short_prompt"),
        ({b"data": orjson.dumps(good(result={"nested": {"a": 1}}))}, "no_candidate"),
        ({b"data": orjson.dumps(good(result={}))}, "no_candidate"),
    ],
)
def test_skip_reasons(fields, reason):
    assert reason in SKIP_REASONS
    assert parse_action(fields, max_bytes=4096) == reason


def test_missing_environment_is_accepted():
    assert parse_action(entry(good())).environment is None


def test_tool_name_inference():
    assert tool_name(good(parameters={"query": "q", "action": "grep", "tool": "run_tests"})) == "run_tests"
    assert tool_name(good(parameters={"query": "q"}, result={"tool_name": "apply_patch"})) == "apply_patch"
    assert tool_name(good(parameters={"query": "q", "signature_name": "FixBug"})) == "FixBug"
    assert tool_name(good()) == "code_edit"
    assert parse_action(entry(good()), with_tool=True).tool == "code_edit"


def test_retrieval_events_keep_valid_hits_only():
    event = {"query": "  Fix the   pagination bug ", "hits": [
        {"path": "a.py", "score": 0.9, "source": "imesh"}, {"path": "b.py", "score": "high"},
        {"score": 1.0}, "junk", {"path": "c.py", "score": 2}]}
    parsed = parse_retrieval(entry(event))
    assert parsed.query == "Fix the pagination bug"
    assert parsed.hits == [{"path": "a.py", "score": 0.9, "source": "imesh"}, {"path": "c.py", "score": 2.0, "source": None}]
    assert parse_retrieval(entry({"hits": []})) == "no_query"
    assert parse_retrieval(entry({"query": "q", "hits": {"a": 1}})) == "wrong_type"
    assert decode_entry({b"data": b"{}"}) == {}


def test_behavior_logprobs_are_carried_and_a_bad_shape_is_dropped():
    """result.behavior_logprobs goes with the action when well formed; a bad one is dropped (the entry is still mined)."""
    behavior = {"token_ids": [5, 7], "logprobs": [-0.5, -1]}
    rec = good()
    rec["result"] = {**rec.get("result", {}), "behavior_logprobs": behavior}
    act = parse_action(entry(rec))
    assert isinstance(act, Action) and act.behavior == {"token_ids": [5, 7], "logprobs": [-0.5, -1.0]}
    rec["result"]["behavior_logprobs"] = {"token_ids": [5], "logprobs": [-0.5, -1]}
    act = parse_action(entry(rec))
    assert isinstance(act, Action) and act.behavior is None
    assert parse_action(entry(good())).behavior is None
