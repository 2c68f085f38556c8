"""`grpo mine` end to end on a real Redis: outputs, --json summary, usage errors, a killed server."""

from __future__ import annotations

import json
from pathlib import Path

import orjson

import miner.mine


def add(store, prompt: str, n: int, start: int = 0) -> None:
    pipe = store.client.pipeline(transaction=False)
    for i in range(start, start + n):
        rec = {"action_type": "patch_generation", "reward": i / 100, "parameters": {"query": prompt, "signature_name": "Sig"},
               "result": {"output": f"answer {i}"}}
        pipe.xadd("rl_actions", {"data": orjson.dumps(rec)})
    pipe.execute()


def test_mine_json_summary_and_output(grpo, store, tmp_path):
    add(store, "Fix the flaky pagination test", 5)
    store.client.xadd("rl_actions", {"data": b"{broken"})
    out = tmp_path / "global.jsonl"
    code, stdout, _ = grpo("mine", "--hours", "48", "--out", str(out), "--json")
    assert code == 0
    summary = json.loads(stdout.strip().splitlines()[-1])
    assert summary["entries_read"] == 6 and summary["actions_mined"] == 5
    assert summary["groups"] == {"global": 1} and summary["skipped"]["bad_json"] == 1 and summary["skipped_total"] == 1
    assert summary["outputs"] == {"global": str(out)}
    (group,) = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(group["candidates"]) == 5


def test_hierarchical_and_since_cursor(grpo, store, home, tmp_path):
    add(store, "Refactor the config loader", 4)
    code, stdout, _ = grpo("mine", "--hierarchical", "--out-dir", str(tmp_path / "ds"), "--since-cursor", "--min-k", "2", "--max-k", "3")
    assert code == 0, stdout
    assert sorted(p.name for p in (tmp_path / "ds").iterdir()) == ["global.jsonl", "patch.jsonl", "signature.jsonl"]
    assert "signature: 1 groups" in stdout and "cursor: (none) -> " in stdout
    group = json.loads((tmp_path / "ds" / "signature.jsonl").read_text())
    assert len(group["candidates"]) == 3 and group["meta"]["group_size"] == 4
    add(store, "Refactor the config loader", 2, start=10)
    code, stdout, _ = grpo("mine", "--hierarchical", "--out-dir", str(tmp_path / "ds"), "--since-cursor", "--json")
    assert json.loads(stdout.splitlines()[-1])["entries_read"] == 2
    # the CLI's default cursor is `manual` (<home>/cursor.manual.json); auto mode's cursor.json is untouched
    assert json.loads((home / "cursor.manual.json").read_text())["rl_actions"] == store.client.xrevrange("rl_actions", count=1)[0][0].decode()
    assert not (home / "cursor.json").exists()


def test_default_outputs_and_config_file(grpo, store, home, tmp_path):
    add(store, "Write tests for the parser", 3)
    cfg = tmp_path / "mine.yaml"
    cfg.write_text("hours: 1\nmax_k: 2\n")
    code, stdout, _ = grpo("mine", "--config-file", str(cfg))
    assert code == 0
    (group,) = [json.loads(line) for line in (home / "datasets" / "global.jsonl").read_text().splitlines()]
    assert [c["reward"] for c in group["candidates"]] == [0.02, 0.0]


def test_usage_errors_exit_2(grpo, store):
    code, _, err = grpo("mine", "--min-k", "5", "--max-k", "3")
    assert code == 2 and "min_k <= max_k" in err
    code, _, err = grpo("mine", "--min-k", "1")
    assert code == 2 and "min_k" in err


def test_bad_redis_url_is_one_clear_error_exit_1(grpo, monkeypatch):
    code, out, err = grpo("mine", "--redis-url", "redis://127.0.0.1:1/0")
    assert code == 1 and "Traceback" not in err + out
    assert err.startswith("error: Redis store at redis://127.0.0.1:1/0 is unavailable") and "check that Redis is running" in err
    monkeypatch.setenv("GRPO_REDIS_URL", "http://nowhere")
    code, _, err = grpo("mine")
    assert code == 1 and "scheme 'http'" in err


def test_server_killed_mid_mine_then_next_run_mines_everything_once(grpo, store, home, tmp_path, kill_store, monkeypatch):
    add(store, "Optimize the hot loop of the renderer", 60)
    (tmp_path / "mine.yaml").write_text("page_size: 10\nsince_cursor: true\n")
    out = tmp_path / "out" / "global.jsonl"
    args = ("mine", "--config-file", str(tmp_path / "mine.yaml"), "--out", str(out), "--json")
    real_pages = miner.mine._pages

    def pages_then_crash(*a, **kw):
        for n, page in enumerate(real_pages(*a, **kw)):
            yield page
            if n == 0:
                kill_store()  # the server dies after the first page

    monkeypatch.setattr(miner.mine, "_pages", pages_then_crash)
    code, stdout, err = grpo(*args)
    assert code == 1 and stdout == "" and "Traceback" not in err
    assert err.startswith("error: Redis store embedded at ") and "is unavailable" in err and "run the command again" in err
    assert not out.parent.exists() and not (home / "cursor.manual.json").exists()

    monkeypatch.setattr(miner.mine, "_pages", real_pages)
    code, stdout, _ = grpo(*args)  # restarts the embedded server from its files
    assert code == 0
    assert json.loads(stdout.splitlines()[-1])["entries_read"] == 60
    (group,) = [json.loads(line) for line in out.read_text().splitlines()]
    assert group["meta"]["n_entries"] == 60
    code, stdout, _ = grpo(*args)
    assert json.loads(stdout.splitlines()[-1])["entries_read"] == 0
    assert Path(json.loads(stdout.splitlines()[-1])["outputs"]["global"]) == out


def test_bad_values_exit_2_naming_field_file_and_form(grpo, tmp_path):  # no store needed: refused before connecting
    for hours in ("inf", "nan", "1e308"):
        code, _, err = grpo("mine", "--hours", hours)
        assert code == 2 and err.startswith("error: command line: hours: expected float") and "unexpected" not in err
    latin1 = tmp_path / "latin1.yaml"
    latin1.write_bytes("hours: 1\nout_dir: caf\u00e9\n".encode("latin-1"))
    code, _, err = grpo("mine", "--config-file", str(latin1))
    assert code == 2 and str(latin1) in err and "UTF-8" in err and "unexpected" not in err
    typo = tmp_path / "typo.yaml"
    typo.write_text("stpes: 3\n")
    code, _, err = grpo("mine", "--config-file", str(typo))
    assert code == 2 and str(typo) in err and "'stpes'" in err
    assert "did you mean" not in err and "valid keys:" in err and "page_size" in err  # listed, not suggested
    typo.write_text("page_sise: 3\n")
    code, _, err = grpo("mine", "--config-file", str(typo))
    assert code == 2 and "did you mean 'page_size'?" in err
