"""The embedded store (start, reuse across processes, restart after a crash) and URL errors (miner.store)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import psutil
import pytest

from miner.errors import StoreUnavailable
from miner.store import EmbeddedServer, open_store, redact

ROOT = Path(__file__).resolve().parents[2]


def servers_for(socket_path: str) -> list[int]:
    """Pids of live redis-server processes serving `socket_path`."""
    out = []
    for proc in psutil.process_iter(["name", "cmdline", "status"]):
        if (proc.info["name"] or "").startswith("redis-server") and proc.info["status"] != psutil.STATUS_ZOMBIE:
            if socket_path in " ".join(proc.info["cmdline"] or []):
                out.append(proc.pid)
    return out


def test_embedded_store_lives_under_home(store, home):
    assert store.server is not None
    info = store.server.info()
    assert (home / "store" / "server.json").exists() and (home / "store" / "redis.conf").exists()
    assert store.client.ping()
    assert info["pid"] == store.server.pid()
    assert servers_for(info["socket"]) == [info["pid"]]


def test_second_process_reuses_the_running_server(store, home):
    code = textwrap.dedent(
        f"""
        import json, sys
        from pathlib import Path
        from miner.store import open_store
        s = open_store(Path({str(home)!r}))
        s.client.incr("visits")
        print(json.dumps({{"pid": s.server.pid(), "visits": int(s.client.get("visits"))}}))
        """
    )
    first_pid = store.server.pid()
    runs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, cwd=ROOT) for _ in range(2)]
    results = [json.loads(p.communicate(timeout=60)[0].strip().splitlines()[-1]) for p in runs]
    assert {r["pid"] for r in results} == {first_pid}  # both connected to the server already running
    assert sorted(r["visits"] for r in results) == [1, 2]
    assert servers_for(store.server.info()["socket"]) == [first_pid]


def test_concurrent_first_starts_get_one_server(home):
    code = f"from pathlib import Path; from miner.store import open_store; print(open_store(Path({str(home)!r})).server.pid())"
    runs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, cwd=ROOT) for _ in range(3)]
    try:
        pids = {int(p.communicate(timeout=60)[0].split()[-1]) for p in runs}
        assert len(pids) == 1
        assert servers_for(EmbeddedServer(home / "store").info()["socket"]) == list(pids)
    finally:
        for pid in servers_for(EmbeddedServer(home / "store").info()["socket"]):
            psutil.Process(pid).kill()


def test_killed_server_restarts_with_every_acknowledged_write(store, home, kill_store):
    for i in range(100):
        store.client.xadd("rl_actions", {"data": f'{{"n": {i}}}'})
    old_pid = kill_store()  # SIGKILL: no save on exit
    again = open_store(home)
    try:
        assert again.server.pid() != old_pid
        assert again.client.xlen("rl_actions") == 100  # the append-only file kept them
    finally:
        again.close()


def test_existing_dump_rdb_is_loaded_and_kept(store, home):
    store.client.set("kept", "yes")
    store.server.stop()
    (home / "store" / "appendonly.aof").unlink()  # a store holding only dump.rdb
    again = open_store(home)
    try:
        assert again.client.get("kept") == b"yes"
        assert again.client.config_get("appendonly")["appendonly"] == "yes"
    finally:
        again.close()


def test_stop_saves_and_the_next_open_starts_again(store, home):
    store.client.set("k", "v")
    pid = store.server.stop()
    assert pid and not servers_for(str(home))
    assert EmbeddedServer(home / "store").pid() is None
    again = open_store(home)
    try:
        assert again.client.get("k") == b"v"
    finally:
        again.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_url_names_the_host_and_what_to_check():
    port = free_port()
    with pytest.raises(StoreUnavailable) as err:
        open_store(None, f"redis://:s3cret@127.0.0.1:{port}/0")
    text = str(err.value)
    assert f"127.0.0.1:{port}" in text and "check that Redis is running" in text
    assert "s3cret" not in text and "***" in text


def test_bad_unix_socket_and_scheme(tmp_path):
    with pytest.raises(StoreUnavailable, match="unix socket .*nowhere.sock.*check that the socket exists"):
        open_store(None, f"unix://{tmp_path}/nowhere.sock?password=x")
    with pytest.raises(StoreUnavailable, match="scheme 'http'"):
        open_store(None, "http://localhost:6379")
    with pytest.raises(StoreUnavailable, match="not valid"):
        open_store(None, "redis://localhost:notaport")


def test_url_store_works_against_a_real_server(store):
    sock = store.server.info()["socket"]
    by_url = open_store(None, f"unix://{sock}")
    try:
        by_url.client.set("via", "url")
        assert store.client.get("via") == b"url"
    finally:
        by_url.close()


def test_redact_hides_passwords():
    assert redact("redis://user:pw@h:1/0") == "redis://user:***@h:1/0"
    assert redact("rediss://:pw@h:1") == "rediss://***@h:1"
    assert redact("unix:///s.sock?db=1&password=pw") == "unix:///s.sock?db=1&password=***"


def test_a_long_home_puts_the_socket_in_a_private_folder_never_a_shared_path(tmp_path):
    import os
    import stat
    import tempfile

    home = tmp_path / ("d" * 120) / ".grpo"
    server = EmbeddedServer(home / "store")
    try:
        first = open_store(home)
        first.client.set("k", "v")
        first.close()
        info = server.info()
        sock = Path(info["socket"])
        st = sock.parent.stat()
        assert sock.parent != Path(tempfile.gettempdir()) and info["socket_dir"] == str(sock.parent)
        assert stat.S_IMODE(st.st_mode) == 0o700 and st.st_uid == os.getuid()
        assert server.stop() == info["pid"]

        again = open_store(home)  # a restart makes a fresh private folder and removes the old one
        assert again.client.get("k") == b"v"
        again.close()
        assert server.info()["socket_dir"] != info["socket_dir"] and not sock.parent.exists()
        server.stop()
        assert not Path(server.info()["socket_dir"]).exists()  # stopping removes it too
    finally:
        server.stop()


def test_a_recorded_socket_in_a_shared_folder_of_a_dead_server_is_not_trusted(tmp_path):
    """Someone else's server answering at the recorded socket of our dead server (a folder others may
    write in) must not be connected to: a server of our own starts instead."""
    import os

    other = EmbeddedServer(tmp_path / "other" / "store")
    home = tmp_path / ".grpo"
    ours = EmbeddedServer(home / "store")
    try:
        squat = other.ensure()
        os.chmod(Path(squat).parent, 0o755)  # stands for a shared folder such as /tmp
        dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True).stdout
        (home / "store").mkdir(parents=True)
        (home / "store" / "server.json").write_text(json.dumps({"pid": int(dead), "socket": squat}))
        store = open_store(home)
        store.client.set("secret", "ours")
        store.close()
        assert ours.info()["socket"] != squat and ours.info()["pid"] != other.info()["pid"]
        import redis

        assert redis.Redis(unix_socket_path=squat).get("secret") is None
    finally:
        ours.stop()
        other.stop()
