"""`grpo store status|stop` on the embedded store."""

from __future__ import annotations

import json

from miner.store import EmbeddedServer


def test_status_and_stop(grpo, store):
    store.client.xadd("rl_actions", {"data": b"{}"})
    code, out, _ = grpo("store", "status", "--json")
    assert code == 0 and json.loads(out)["streams"] == {"rl_actions": 1, "retrieval_events": 0}
    code, out, _ = grpo("store", "stop")
    assert code == 0 and "stopped the embedded Redis" in out
    code, out, _ = grpo("store", "stop")
    assert "not running" in out
    code, out, _ = grpo("store", "status")
    assert code == 0 and "not running" in out  # status only looks: it starts nothing
    code, out, _ = grpo("store", "status", "--json")
    assert code == 0 and json.loads(out)["state"] == "not running" and json.loads(out)["streams"] is None
    assert EmbeddedServer(store.server.dir).pid() is None
    store.server.ensure()  # the next command that needs the store starts it again, with its data
    code, out, _ = grpo("store", "status")
    assert code == 0 and ": running" in out and "rl_actions: 1 entries" in out


def test_status_of_a_home_that_never_had_a_store_starts_nothing(grpo, tmp_path):
    home = tmp_path / "h"
    code, out, _ = grpo("--home", str(home), "store", "status", "--json")
    assert code == 0 and json.loads(out)["state"] == "not running"
    assert not (home / "store" / "server.json").exists() and EmbeddedServer(home / "store").pid() is None
