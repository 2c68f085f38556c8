"""ActionLog: validated XADDs into a real Redis, approximate trimming, nothing written on a bad batch."""

from __future__ import annotations

import orjson
import pytest

from miner.actionlog import ActionLog
from miner.errors import InvalidRecord


def rec(i: int = 0, **over) -> dict:
    return {"action_type": "code_edit", "reward": 0.5, "parameters": {"query": f"Fix bug number {i}"},
            "result": {"output": f"diff {i}"}, **over}


def test_record_action_writes_one_data_field(store):
    log = ActionLog(store)
    sid = log.record_action(rec(1, context_hash="h"))
    ((got_id, fields),) = store.client.xrange("rl_actions")
    assert got_id.decode() == sid and list(fields) == [b"data"]
    data = orjson.loads(fields[b"data"])
    assert data["parameters"]["query"] == "Fix bug number 1" and data["context_hash"] == "h" and data["reward"] == 0.5


def test_invalid_record_in_a_batch_writes_nothing(store):
    log = ActionLog(store)
    with pytest.raises(InvalidRecord, match="ActionRecord: reward: input should be a finite number"):
        log.record_actions([rec(1), rec(2, reward=float("nan"))])
    assert store.client.xlen("rl_actions") == 0


def test_maxlen_trims_approximately(store):
    log = ActionLog(store)
    log.record_actions([rec(i) for i in range(1500)], maxlen=100)
    length = store.client.xlen("rl_actions")
    assert 100 <= length < 1500
    newest = orjson.loads(store.client.xrevrange("rl_actions", count=1)[0][1][b"data"])
    assert newest["parameters"]["query"] == "Fix bug number 1499"  # trimming drops the oldest


def test_record_retrieval_and_custom_streams(store):
    log = ActionLog(store, actions_stream="acts", retrieval_stream="hits")
    log.record_retrieval({"query": "where is it", "hits": [{"path": "a.py", "score": 0.4, "source": "imesh"}]})
    log.record_action(rec(3), id="5-1")
    assert store.client.xlen("hits") == 1
    assert store.client.xrange("acts")[0][0] == b"5-1"
