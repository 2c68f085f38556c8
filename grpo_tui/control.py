"""The scheduler control socket: newline-delimited JSON over a Unix socket at `<home>/control.sock`.

Requests are `{"cmd": "status" | "start" | "stop" | "guard" | "shutdown", ...}`, replies
`{"ok": bool, ...}` (`{"ok": false, "error": "..."}` on failure). One request per line; a connection
may carry several. `ControlServer` serves a handler on a thread per connection (mode 0600);
`ControlClient` is what `grpo auto ...` and the console use, local or over an SSH-forwarded socket.
"""

from __future__ import annotations

import os
import socket
import socketserver
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from grpo_tui.errors import GrpoError

SOCKET_NAME = "control.sock"
MAX_LINE = 1 << 20
Handler = Callable[[dict[str, Any]], dict[str, Any]]


class DaemonNotRunning(GrpoError):
    """No scheduler answers on this home's control socket."""


def socket_path(home: Path) -> Path:
    return Path(home) / SOCKET_NAME


def _check_length(path: Path) -> None:
    if len(os.fsencode(path)) > 100:
        raise GrpoError(f"control socket path too long for a Unix socket ({path}); use a shorter --home")


def probe(path: Path, timeout: float = 1.0) -> bool:
    """True when something accepts connections on `path`."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(str(path))
            return True
    except (FileNotFoundError, ConnectionRefusedError, socket.timeout, OSError):
        return False


class _RequestHandler(socketserver.StreamRequestHandler):
    server: _Server

    def handle(self) -> None:
        while True:
            line = self.rfile.readline(MAX_LINE)
            if not line:
                return
            try:
                request = orjson.loads(line)
                if not isinstance(request, dict) or not isinstance(request.get("cmd"), str):
                    raise ValueError('a request is a JSON object with a string "cmd"')
                reply = self.server.handler(request)
            except (orjson.JSONDecodeError, ValueError) as exc:
                reply = {"ok": False, "error": f"bad request: {exc}"}
            except GrpoError as exc:
                reply = {"ok": False, "error": str(exc)}
            self.wfile.write(orjson.dumps(reply, option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS) + b"\n")
            self.wfile.flush()


class _Server(socketserver.ThreadingUnixStreamServer):
    daemon_threads = True
    handler: Handler


class ControlServer:
    """Serves `handler` on `<home>/control.sock` from a background thread."""

    def __init__(self, home: Path, handler: Handler) -> None:
        self.path = socket_path(home)
        _check_length(self.path)
        if self.path.exists():
            if probe(self.path):
                raise GrpoError(f"a scheduler already answers on {self.path}; use `grpo auto status`")
            self.path.unlink()  # stale socket of a dead host
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._server = _Server(str(self.path), _RequestHandler)
        os.chmod(self.path, 0o600)
        self._server.handler = handler
        self._thread = threading.Thread(target=self._server.serve_forever, name="control", daemon=True)

    def start(self) -> ControlServer:
        self._thread.start()
        return self

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self.path.unlink(missing_ok=True)


class ControlClient:
    """Sends one request per call; raises DaemonNotRunning with what to do when nobody answers."""

    def __init__(self, home: Path, timeout: float = 5.0) -> None:
        self.home = Path(home)
        self.path = socket_path(home)
        self.timeout = timeout

    def request(self, cmd: str, **fields: Any) -> dict[str, Any]:
        _check_length(self.path)
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(self.timeout)
                sock.connect(str(self.path))
                sock.sendall(orjson.dumps({"cmd": cmd, **fields}) + b"\n")
                reply = sock.makefile("rb").readline(MAX_LINE)
        except FileNotFoundError as exc:
            raise DaemonNotRunning(
                f"no scheduler is running for {self.home} (no {self.path.name}); start one with `grpo auto start --detach`"
            ) from exc
        except ConnectionRefusedError as exc:
            raise DaemonNotRunning(
                f"the scheduler for {self.home} is not running (stale socket {self.path}); "
                "start it again with `grpo auto start --detach`"
            ) from exc
        except socket.timeout as exc:
            raise DaemonNotRunning(f"the scheduler for {self.home} did not answer {cmd!r} within {self.timeout:g} s") from exc
        if not reply:
            raise DaemonNotRunning(f"the scheduler for {self.home} closed the connection without answering {cmd!r}")
        return orjson.loads(reply)
