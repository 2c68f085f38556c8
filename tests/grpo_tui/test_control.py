"""The control socket: concurrent clients, bad requests, a dead or stale daemon said plainly."""

from __future__ import annotations

import os
import socket
import stat
import threading
import time
from pathlib import Path

import pytest

from grpo_tui.control import ControlClient, ControlServer, DaemonNotRunning
from grpo_tui.errors import GrpoError


@pytest.fixture()
def short_home(tmp_path_factory) -> Path:
    # Unix socket paths are limited to ~100 bytes; pytest's tmp paths can be long.
    return Path(tmp_path_factory.mktemp("h", numbered=True))


def test_two_clients_at_the_same_time(short_home: Path) -> None:
    entered, release = threading.Barrier(2, timeout=5), threading.Event()

    def handler(request: dict) -> dict:
        if request["cmd"] == "slow":
            entered.wait()  # both requests are inside the handler at once
            release.wait(5)
        return {"ok": True, "echo": request.get("n")}

    server = ControlServer(short_home, handler).start()
    try:
        assert stat.S_IMODE(os.stat(server.path).st_mode) == 0o600
        results: list[dict] = []
        threads = [threading.Thread(target=lambda n=n: results.append(ControlClient(short_home).request("slow", n=n)))
                   for n in (1, 2)]
        for t in threads:
            t.start()
        time.sleep(0.5)
        release.set()
        for t in threads:
            t.join(5)
        assert sorted(r["echo"] for r in results) == [1, 2]
    finally:
        server.close()
    assert not server.path.exists()


def test_bad_request_gets_an_error_reply(short_home: Path) -> None:
    server = ControlServer(short_home, lambda r: {"ok": True}).start()
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.connect(str(server.path))
            sock.sendall(b"not json\n")
            assert b'"ok":false' in sock.makefile("rb").readline()
    finally:
        server.close()


def test_no_daemon_is_said_plainly(short_home: Path) -> None:
    with pytest.raises(DaemonNotRunning, match="no scheduler is running .* `grpo auto start --detach`"):
        ControlClient(short_home).request("status")


def test_dead_daemon_with_stale_socket_is_said_not_hung(short_home: Path) -> None:
    path = short_home / "control.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(path))  # bound, never listening: what a killed host leaves behind
    sock.close()
    with pytest.raises(DaemonNotRunning, match="stale socket"):  # said at once: nobody listens on it
        ControlClient(short_home).request("status")
    server = ControlServer(short_home, lambda r: {"ok": True}).start()  # a new host cleans the stale socket
    try:
        assert ControlClient(short_home).request("status") == {"ok": True}
        with pytest.raises(GrpoError, match="already answers"):
            ControlServer(short_home, lambda r: {"ok": True})
    finally:
        server.close()
