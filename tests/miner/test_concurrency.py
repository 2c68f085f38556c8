"""Mining exactly once under concurrency, and named cursors (miner.cursor, `grpo mine --cursor`).

Two real `grpo mine --since-cursor` processes on one home at once must between them mine every entry
exactly once; a manual run (`--cursor manual`, the CLI default) and auto mode (`--cursor auto`, the
historical `<home>/cursor.json`) must not take each other's entries.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import orjson
import pytest

from miner.cursor import cursor_lock, cursor_path, read_cursor
from miner.mine import MineParams, mine

N_PROMPTS = 5000  # two candidates each: 10,000 entries, enough that two unserialised runs overlap


def seed(store, n_prompts: int, tag: str = "a") -> list[str]:
    """`n_prompts` prompts with two distinct candidates each, ids ending now; returns the ids in order."""
    pipe = store.client.pipeline(transaction=False)
    for i in range(n_prompts):
        for j in range(2):
            rec = {"action_type": "code_edit", "reward": j / 2, "parameters": {"query": f"Task {tag} number {i} please"},
                   "result": {"output": f"answer {j} to {tag}{i}"}}
            pipe.xadd("rl_actions", {"data": orjson.dumps(rec)})
    ids = [sid.decode() for sid in pipe.execute()]
    return ids


def source_ids(path: Path) -> list[str]:
    return [sid for line in path.read_text().splitlines() for sid in json.loads(line)["meta"]["source_ids"]]


# Each child imports everything first, then waits for the go file, so both really run at once.
CHILD = textwrap.dedent("""
    import os, sys, time
    from grpo_tui.cli import main
    go = sys.argv[1]
    open(go + "." + str(os.getpid()), "w").close()
    while not os.path.exists(go):
        time.sleep(0.001)
    sys.exit(main(sys.argv[2:]))
""")


def test_two_concurrent_since_cursor_runs_mine_each_entry_exactly_once(store, home, tmp_path):
    ids = seed(store, N_PROMPTS)
    go = tmp_path / "go"
    outs = [tmp_path / f"out{k}.jsonl" for k in range(2)]
    procs = [subprocess.Popen([sys.executable, "-c", CHILD, str(go), "--home", str(home), "mine", "--since-cursor",
                               "--hours", "1", "--out", str(out), "--json"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for out in outs]
    while len(list(tmp_path.glob("go.*"))) < 2 and all(p.poll() is None for p in procs):
        time.sleep(0.01)
    go.touch()
    results = [p.communicate(timeout=300) for p in procs]
    for p, (stdout, stderr) in zip(procs, results):
        assert p.returncode == 0, stderr
    summaries = [json.loads(stdout.splitlines()[-1]) for stdout, _ in results]
    assert sum(s["entries_read"] for s in summaries) == len(ids)  # together: every entry once
    mined = [source_ids(out) for out in outs]
    assert sorted(mined[0] + mined[1]) == sorted(ids)  # no entry in both outputs, none missing
    assert read_cursor(cursor_path(home, "manual")) == {"rl_actions": ids[-1]}


def waiting_on(path: Path) -> bool:
    """True when some process is blocked waiting for a lock on `path` (Linux /proc/locks: `->` lines)."""
    inode = os.stat(path).st_ino
    with open("/proc/locks") as f:
        return any("->" in line and any(tok.endswith(f":{inode}") for tok in line.split()) for line in f)


@pytest.mark.skipif(not os.path.exists("/proc/locks"), reason="needs Linux /proc/locks to see a blocked waiter")
def test_a_miner_waits_for_the_cursor_lock(store, home, tmp_path):
    """While another holder has the lock, a since-cursor mine does not read the cursor; once it is
    released the mine runs after the cursor the holder moved."""
    ids = seed(store, 3)
    out = tmp_path / "out.jsonl"
    code = textwrap.dedent(f"""
        from pathlib import Path
        from miner.mine import MineParams, mine
        from miner.store import open_store
        home = Path({str(home)!r})
        r = mine(open_store(home), MineParams(hours=1, since_cursor=True), home, out=Path({str(out)!r}))
        print(r.entries_read)
    """)
    with cursor_lock(home):
        proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        while proc.poll() is None and not waiting_on(home / "cursor.lock"):
            time.sleep(0.01)  # until the child is queued on the lock (or, unlocked, has finished)
        cursor_path(home).write_bytes(orjson.dumps({"rl_actions": ids[3]}))  # the holder mined up to ids[3]
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr
    assert int(stdout) == 2 and sorted(source_ids(out)) == ids[4:]


def test_manual_and_auto_cursors_do_not_take_each_others_entries(grpo, store, home, tmp_path):
    first = seed(store, 2, "a")

    def run(*args: str) -> dict:
        code, stdout, err = grpo("mine", "--since-cursor", "--hours", "1", "--out", str(tmp_path / "o.jsonl"), "--json", *args)
        assert code == 0, err
        return json.loads(stdout.splitlines()[-1])

    assert run()["entries_read"] == 4  # manual (the default) takes everything so far
    assert not cursor_path(home).exists()  # ... and leaves auto mode's cursor alone
    assert run("--cursor", "auto")["entries_read"] == 4  # auto still gets all of them
    assert read_cursor(cursor_path(home)) == {"rl_actions": first[-1]}
    later = seed(store, 1, "b")
    assert run("--cursor", "auto")["entries_read"] == 2
    assert run()["entries_read"] == 2
    assert run("--cursor", "nightly")["entries_read"] == 6  # any other name is a cursor of its own
    assert read_cursor(cursor_path(home, "manual")) == read_cursor(cursor_path(home)) == {"rl_actions": later[-1]}
    assert (home / "cursor.nightly.json").exists() and (home / "cursor.manual.json").exists()

    code, _, err = grpo("mine", "--since-cursor", "--cursor", "../x", "--out", str(tmp_path / "o.jsonl"))
    assert code == 2 and "cursor name '../x'" in err


def test_an_old_single_cursor_file_is_the_auto_cursor(store, home, tmp_path):
    ids = seed(store, 2)
    cursor_path(home).write_text(json.dumps({"rl_actions": ids[1]}))  # what earlier versions wrote
    assert cursor_path(home) == home / "cursor.json"
    result = mine(store, MineParams(hours=1, since_cursor=True, cursor="auto"), home, out=tmp_path / "o.jsonl")
    assert result.cursor_before == ids[1] and result.entries_read == 2
    assert json.loads((home / "cursor.json").read_text()) == {"rl_actions": ids[-1]}
    assert os.path.exists(home / "cursor.lock")
