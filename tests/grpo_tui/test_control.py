"""The control socket: concurrent clients, bad requests, a dead or stale daemon said plainly."""

from __future__ import annotations

import os
import select
import socket
import stat
import threading
import time
from pathlib import Path

import orjson
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


def _server_threads() -> int:
    return sum(1 for t in threading.enumerate() if "process_request" in t.name)


def _connect(path: Path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(str(path))
    return sock


def test_a_handler_that_raises_gets_an_error_reply_not_a_dropped_connection(short_home: Path, caplog) -> None:
    def handler(request: dict) -> dict:  # what the daemon's guard did with {"set": [1, 2]}
        return {"ok": True, "set": dict(request["set"])}

    server = ControlServer(short_home, handler).start()
    try:
        with _connect(server.path) as sock:
            reader = sock.makefile("rb")
            sock.sendall(b'{"cmd":"guard","set":[1,2]}\n')
            reply = orjson.loads(reader.readline())
            assert reply["ok"] is False and "guard" in reply["error"] and "TypeError" in reply["error"]
            sock.sendall(b'{"cmd":"guard","set":{"a":1}}\n')  # the same connection still serves
            assert orjson.loads(reader.readline()) == {"ok": True, "set": {"a": 1}}
    finally:
        server.close()
    assert "Traceback" not in caplog.text


def test_connections_are_capped_and_extra_ones_told_busy(short_home: Path) -> None:
    cap, before = 8, _server_threads()
    server = ControlServer(short_home, lambda r: {"ok": True}, max_connections=cap).start()
    socks = [_connect(server.path) for _ in range(cap + 5)]
    try:
        busy: list[socket.socket] = []
        deadline = time.monotonic() + 30
        while len(busy) < 5 and time.monotonic() < deadline:  # the extra ones are answered and closed at once
            readable, _, _ = select.select([s for s in socks if s not in busy], [], [], 0.5)
            busy += readable
        assert len(busy) == 5
        for sock in busy:
            data = b"".join(iter(lambda s=sock: s.recv(4096), b""))  # one reply, then EOF
            assert data.count(b"\n") == 1 and "busy" in orjson.loads(data)["error"]
        assert _server_threads() - before <= cap
        served = [s for s in socks if s not in busy]
        assert len(served) == cap
        served[0].sendall(b'{"cmd":"status"}\n')
        assert orjson.loads(served[0].makefile("rb").readline()) == {"ok": True}
        served.pop(0).close()  # a freed slot serves the next client
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with _connect(server.path) as sock:
                try:
                    sock.sendall(b'{"cmd":"status"}\n')
                    if orjson.loads(sock.makefile("rb").readline()) == {"ok": True}:
                        break
                except OSError:
                    pass  # still busy: the server closed this one before reading the request
            time.sleep(0.05)
        else:
            pytest.fail("a closed connection never freed its slot")
    finally:
        for sock in socks:
            sock.close()
        server.close()


def test_idle_connections_are_closed(short_home: Path) -> None:
    server = ControlServer(short_home, lambda r: {"ok": True}, idle_timeout=0.2).start()
    try:
        with _connect(server.path) as sock:
            sock.settimeout(30)  # generous: the server, not this timeout, must end the connection
            assert sock.recv(1) == b""  # EOF: the server closed the idle connection
        deadline = time.monotonic() + 30
        while _server_threads() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _server_threads() == 0
    finally:
        server.close()


def test_an_over_long_line_gets_one_error_and_a_close(short_home: Path) -> None:
    server = ControlServer(short_home, lambda r: {"ok": True}).start()
    try:
        with _connect(server.path) as sock:
            def send() -> None:
                try:
                    sock.sendall(b"x" * (10 << 20) + b"\n")
                except OSError:
                    pass  # the server closes before reading it all
            sender = threading.Thread(target=send, daemon=True)
            sender.start()
            sock.settimeout(30)
            data = b""
            try:
                while chunk := sock.recv(4096):
                    data += chunk
            except ConnectionResetError:
                pass  # Linux ends a Unix socket closed with unread data so, after the data already sent
            sender.join(30)
        lines = data.splitlines()
        assert len(lines) == 1 and "longer than" in orjson.loads(lines[0])["error"]
    finally:
        server.close()


def test_daemon_guard_set_that_is_not_an_object_gets_an_error_reply(short_home: Path) -> None:
    from grpo_tui.daemon import Host

    host = Host(short_home)
    try:
        client = ControlClient(short_home)
        reply = client.request("guard", set=[1, 2])
        assert reply["ok"] is False and '"set" is an object of thresholds' in reply["error"]
        reply = client.request("guard", set={"min_free_gb": -1})
        assert reply["ok"] is False and "min_free_gb: expected float, got -1" in reply["error"]
        assert client.request("guard", set={"min_free_gb": 0, "min_ram_gb": 0})["ok"] is True
    finally:
        host.close()
