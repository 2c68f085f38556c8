"""`grpo log-action`: records from flags, RECORD, stdin; validation errors; retrieval events; trimming."""

from __future__ import annotations

import io
import json

import orjson


def entries(store, stream="rl_actions"):
    return [orjson.loads(fields[b"data"]) for _, fields in store.client.xrange(stream)]


def test_flags_build_a_documented_record(grpo, store):
    code, out, _ = grpo("log-action", "--action-type", "code_edit", "--prompt", "Fix the flaky test", "--output", "a diff",
                        "--reward", "0.7", "--tool", "apply_patch", "--signature-name", "FixBug", "--environment", "testing")
    assert code == 0 and out.strip() == store.client.xrange("rl_actions")[0][0].decode()
    (rec,) = entries(store)
    assert rec["parameters"] == {"query": "Fix the flaky test", "tool": "apply_patch", "signature_name": "FixBug"}
    assert rec["result"] == {"output": "a diff"} and rec["reward"] == 0.7 and rec["environment"] == "testing"


def test_record_argument_and_stdin_json_lines(grpo, store, monkeypatch):
    code, _, _ = grpo("log-action", '{"action_type": "verification", "reward": 1, "parameters": {"query": "Verify the build"}}')
    assert code == 0
    lines = "\n".join(json.dumps({"action_type": "code_analysis", "reward": i / 10, "parameters": {"query": f"q{i}"}}) for i in range(3))
    monkeypatch.setattr("sys.stdin", io.StringIO(lines))
    code, out, _ = grpo("log-action", "-")
    assert code == 0 and len(out.split()) == 3
    assert [r["action_type"] for r in entries(store)] == ["verification", "code_analysis", "code_analysis", "code_analysis"]


def test_invalid_records_are_refused_naming_the_field(grpo, store, monkeypatch):
    code, _, err = grpo("log-action", "--action-type", "deploy", "--reward", "1")
    assert code == 1 and err.startswith("error: ActionRecord: action_type: input should be")
    monkeypatch.setattr("sys.stdin", io.StringIO('{"action_type": "code_edit", "reward": NaN}'))
    code, _, err = grpo("log-action", "-")
    assert code == 1 and "reward: input should be a finite number" in err
    code, _, err = grpo("log-action", '[{"action_type": "code_edit", "reward": 1}, {"action_type": "code_edit"}]')
    assert code == 1 and "reward: field required" in err
    assert store.client.xlen("rl_actions") == 0  # nothing of a bad batch is written
    code, _, err = grpo("log-action", "{}", "--reward", "1")
    assert code == 2 and "not both" in err


def test_retrieval_events_and_maxlen(grpo, store):
    code, _, _ = grpo("log-action", "--retrieval", "--query", "where is the config loaded", "--hit", "conf.py:0.9:imesh",
                      "--hit", "c:/win/path.py:0.5", "--workspace-path", "/srv/app")
    assert code == 0
    (ev,) = entries(store, "retrieval_events")
    assert ev["hits"] == [{"path": "conf.py", "score": 0.9, "source": "imesh"}, {"path": "c:/win/path.py", "score": 0.5, "source": None}]
    code, _, err = grpo("log-action", "--retrieval", "--query", "q", "--hit", "nohitscore")
    assert code == 2 and "PATH:SCORE" in err
    batch = json.dumps([{"action_type": "code_edit", "reward": i} for i in range(1500)])
    code, out, _ = grpo("log-action", batch, "--maxlen", "50")
    assert code == 0 and len(out.split()) == 1500
    assert 50 <= store.client.xlen("rl_actions") < 1500


def test_a_record_larger_than_mine_accepts_is_refused_naming_limit_and_size(grpo, store, home, tmp_path):
    from miner.extract import DEFAULT_MAX_ENTRY_BYTES as LIMIT

    big = {"action_type": "code_edit", "reward": 1, "parameters": {"query": "Summarise the build log"}, "result": {"output": "x" * 5_000_000}}
    code, out, err = grpo("log-action", json.dumps(big))
    assert code == 2 and out == ""
    assert f"{LIMIT:,}-byte limit" in err and "5,000," in err and "nothing was written" in err
    assert store.client.xlen("rl_actions") == 0

    # exactly at the limit: written, and mined (not skipped as too_large); one byte more: refused
    def sized(n_bytes: int, prompt: str) -> dict:
        rec = {"action_type": "code_edit", "reward": 1, "parameters": {"query": prompt}, "result": {"output": ""},
               "action_id": "a-fixed-id", "timestamp": 1759700000.0}  # no generated field of varying length
        assert grpo("log-action", json.dumps(rec))[0] == 0
        (sid, fields), = store.client.xrevrange("rl_actions", count=1)
        store.client.xdel("rl_actions", sid)
        rec["result"]["output"] = "y" * (n_bytes - len(fields[b"data"]))
        return rec

    code, _, err = grpo("log-action", json.dumps(sized(LIMIT, "Summarise the build log")))
    assert code == 0, err
    assert len(store.client.xrevrange("rl_actions", count=1)[0][1][b"data"]) == LIMIT
    code, _, err = grpo("log-action", json.dumps(sized(LIMIT + 1, "Summarise the test log")))
    assert code == 2 and f"is {LIMIT + 1:,} bytes" in err
    code, stdout, _ = grpo("mine", "--out", str(tmp_path / "o.jsonl"), "--json")
    summary = json.loads(stdout.splitlines()[-1])
    assert code == 0 and summary["entries_read"] == 1 and summary["skipped"]["too_large"] == 0
