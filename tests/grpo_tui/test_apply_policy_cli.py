"""`grpo apply-policy`: writes nudges, prints what changed, idempotent, refuses paths outside the workspace."""

from __future__ import annotations

import json

import yaml


def test_apply_policy_on_demo_data(grpo, store, home, tmp_path, monkeypatch):
    ws = home.parent
    monkeypatch.chdir(ws)
    assert grpo("demo", "seed")[0] == 0
    code, out, _ = grpo("apply-policy", "--hours", "24", "--top-k", "3", "--bottom-k", "1", "--workspace", ".")
    assert code == 0 and "updated" in out and "deny_tools: [] -> ['shell_exec']" in out
    policy = yaml.safe_load((ws / ".dspy_policy.yaml").read_text())["policy"]
    assert len(policy["prefer_tools"]) == 3 and policy["deny_tools"] == ["shell_exec"]
    before = (ws / ".dspy_policy.yaml").read_bytes()
    code, out, _ = grpo("apply-policy", "--json")
    assert code == 0 and json.loads(out.splitlines()[-1])["changed"] is False
    assert (ws / ".dspy_policy.yaml").read_bytes() == before


def test_workspace_escapes_are_refused(grpo, tmp_path, monkeypatch):
    project = tmp_path / "proj"
    (project / "sub").mkdir(parents=True)
    monkeypatch.chdir(project / "sub")
    code, out, err = grpo("--home", str(project / ".grpo"), "apply-policy", "--workspace", "../..")
    assert code == 1 and "outside" in err and "refusing" in err and "Traceback" not in err + out
    assert not (tmp_path / ".dspy_policy.yaml").exists()
    assert not (project / ".grpo" / "store").exists()  # refused before touching the store
