"""`grpo store status|stop` on the embedded store."""

from __future__ import annotations

import json


def test_status_and_stop(grpo, store):
    store.client.xadd("rl_actions", {"data": b"{}"})
    code, out, _ = grpo("store", "status", "--json")
    assert code == 0 and json.loads(out)["streams"] == {"rl_actions": 1, "retrieval_events": 0}
    code, out, _ = grpo("store", "stop")
    assert code == 0 and "stopped the embedded Redis" in out
    code, out, _ = grpo("store", "stop")
    assert "not running" in out
    code, out, _ = grpo("store", "status")
    assert code == 0 and "rl_actions: 1 entries" in out  # restarted with its data
