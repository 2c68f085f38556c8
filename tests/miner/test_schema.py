"""Write-side validation of action records and retrieval events (miner.schema)."""

from __future__ import annotations

import pytest

from miner.errors import InvalidRecord
from miner.schema import ActionRecord, RetrievalEvent, to_json_dict, validate_record


def test_documented_action_record_validates_and_keeps_extra_keys():
    rec = validate_record(ActionRecord, {
        "action_id": "u1", "timestamp": 1759700000.0, "action_type": "code_edit", "state_before": {}, "state_after": {},
        "parameters": {"query": "Fix it please", "signature_name": "FixBug"}, "result": {"output": "diff"},
        "reward": 0.8, "confidence": 0.9, "execution_time": 1.2, "environment": "development", "context_hash": None,
        "rewards": {"tests": 1.0}, "agent": "v2"})
    data = to_json_dict(rec)
    assert data["action_type"] == "code_edit" and data["environment"] == "development"
    assert data["agent"] == "v2" and data["rewards"] == {"tests": 1.0}


def test_defaults_fill_id_time_and_environment():
    data = to_json_dict(validate_record(ActionRecord, {"action_type": "verification", "reward": 1}))
    assert data["action_id"] and data["timestamp"] > 0 and data["environment"] == "development"
    assert data["reward"] == 1.0


@pytest.mark.parametrize(
    ("patch", "field", "reason"),
    [
        ({"action_type": "deploy"}, "action_type", "input should be 'code_analysis'"),
        ({"environment": "moon"}, "environment", "input should be 'development'"),
        ({"reward": float("nan")}, "reward", "finite number"),
        ({"reward": float("inf")}, "reward", "finite number"),
        ({"reward": "0.5"}, "reward", "valid number"),
        ({"reward": True}, "reward", "valid number"),
        ({"reward": None}, "reward", "valid number"),
        ({"parameters": "query"}, "parameters", "valid dictionary"),
        ({"confidence": float("nan")}, "confidence", "finite number"),
        ({"rewards": {"x": "high"}}, "rewards.x", "valid number"),
    ],
)
def test_invalid_records_name_field_and_reason(patch, field, reason):
    rec = {"action_type": "code_edit", "reward": 0.5, **patch}
    with pytest.raises(InvalidRecord) as err:
        validate_record(ActionRecord, rec)
    assert f"ActionRecord: {field}: " in str(err.value) and reason in str(err.value)


def test_missing_reward_and_non_object():
    with pytest.raises(InvalidRecord, match="reward: field required"):
        validate_record(ActionRecord, {"action_type": "code_edit"})
    with pytest.raises(InvalidRecord, match="expected a JSON object, got list"):
        validate_record(ActionRecord, [1, 2])


def test_retrieval_event():
    ev = validate_record(RetrievalEvent, {"query": "where is the config loaded", "hits": [{"path": "a.py", "score": 0.5}]})
    assert to_json_dict(ev)["hits"] == [{"path": "a.py", "score": 0.5, "source": None}]
    with pytest.raises(InvalidRecord, match=r"hits\.0\.score"):
        validate_record(RetrievalEvent, {"query": "q", "hits": [{"path": "a.py", "score": float("nan")}]})
    with pytest.raises(InvalidRecord, match="query"):
        validate_record(RetrievalEvent, {"hits": []})


BEHAVIOR = {"token_ids": [5, 7, 2], "logprobs": [-0.5, -1.25, 0.0]}


def test_behavior_logprobs_in_result_are_validated():
    """result.behavior_logprobs (issue 12): kept when well formed; a bad shape is the record's InvalidRecord."""
    rec = validate_record(ActionRecord, {"action_type": "code_edit", "reward": 1.0, "result": {"output": "x", "behavior_logprobs": BEHAVIOR}})
    assert to_json_dict(rec)["result"]["behavior_logprobs"] == BEHAVIOR
    bad = [
        [1, 2],
        {"token_ids": [1, 2], "logprobs": [-0.1]},
        {"token_ids": [], "logprobs": []},
        {"token_ids": [1, -2], "logprobs": [-0.1, -0.2]},
        {"token_ids": [1, 2.0], "logprobs": [-0.1, -0.2]},
        {"token_ids": [1, 2], "logprobs": [-0.1, 0.3]},
        {"token_ids": [1, 2], "logprobs": [-0.1, float("nan")]},
        {"token_ids": [1, 2], "logprobs": [-0.1, True]},
    ]
    for value in bad:
        with pytest.raises(InvalidRecord, match="behavior_logprobs"):
            validate_record(ActionRecord, {"action_type": "code_edit", "reward": 1.0, "result": {"output": "x", "behavior_logprobs": value}})
