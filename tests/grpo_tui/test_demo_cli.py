"""`grpo demo seed` then `grpo mine`: a fresh machine gets data for the main job."""

from __future__ import annotations

import json


def test_seed_then_mine_gives_dozens_of_groups(grpo, store, tmp_path):
    code, out, _ = grpo("demo", "seed", "--json")
    assert code == 0 and json.loads(out.splitlines()[-1])["actions"] == 1200
    code, out, _ = grpo("mine", "--hours", "48", "--hierarchical", "--out-dir", str(tmp_path), "--json")
    groups = json.loads(out.splitlines()[-1])["groups"]
    assert code == 0 and all(n >= 30 for n in groups.values()), groups


def test_seed_twice_appends_after_existing_entries(grpo, store):
    assert grpo("demo", "seed", "--actions", "50", "--seed", "1")[0] == 0
    code, out, _ = grpo("demo", "seed", "--actions", "50", "--seed", "1")
    assert code == 0 and "seeded 50 actions" in out
    assert store.client.xlen("rl_actions") == 100
