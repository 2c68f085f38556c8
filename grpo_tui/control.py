"""The scheduler control socket: newline-delimited JSON over a Unix socket at `<home>/control.sock`.

Requests are `{"cmd": "status" | "start" | "stop" | "guard" | "shutdown", ...}`, replies
`{"ok": bool, ...}` (`{"ok": false, "error": "..."}` on failure). One request per line; a connection
may carry several. `ControlServer` serves a handler on a thread per connection (mode 0600);
`ControlClient` is what `grpo auto ...` and the console use, local or over an SSH-forwarded socket.

Every request line read gets exactly one reply: a bad request, or a handler that raises, gets
`{"ok": false, "error": ...}` (logged as one line, no traceback), never a dropped connection. At most
`max_connections` (32) connections are served at once: one more gets one error reply and is closed. A
connection idle for `idle_timeout` (30 s) is closed; a line longer than MAX_LINE (1 MiB) gets one
error reply and the connection is closed.
"""

from __future__ import annotations

import logging
import os
import socket
import socketserver
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from grpo_tui.errors import GrpoError

SOCKET_NAME = "control.sock"
MAX_LINE = 1 << 20
MAX_CONNECTIONS = 32
IDLE_TIMEOUT = 30.0
log = logging.getLogger(__name__)
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


def _encode(reply: dict[str, Any]) -> bytes:
    return orjson.dumps(reply, option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS) + b"\n"


class _RequestHandler(socketserver.StreamRequestHandler):
    server: _Server

    def setup(self) -> None:
        self.timeout = self.server.idle_timeout  # StreamRequestHandler applies it to the socket
        super().setup()

    def handle(self) -> None:
        while True:
            try:
                line = self.rfile.readline(MAX_LINE)
            except TimeoutError:
                log.debug("control: closing a connection idle for %g s", self.server.idle_timeout)
                return
            except OSError as exc:  # the client went away mid-line
                log.debug("control: connection lost while reading (%s)", exc)
                return
            if not line:
                return
            if len(line) >= MAX_LINE and not line.endswith(b"\n"):
                self._reply({"ok": False, "error": f"bad request: line longer than {MAX_LINE} bytes; closing the connection"})
                return
            if not self._reply(self._answer(line)):
                return

    def _answer(self, line: bytes) -> dict[str, Any]:
        try:
            request = orjson.loads(line)
            if not isinstance(request, dict) or not isinstance(request.get("cmd"), str):
                raise ValueError('a request is a JSON object with a string "cmd"')
        except ValueError as exc:  # orjson.JSONDecodeError is a ValueError
            return {"ok": False, "error": f"bad request: {exc}"}
        try:
            return self.server.handler(request)
        except GrpoError as exc:
            return {"ok": False, "error": str(exc)}
        except Exception as exc:  # noqa: BLE001 - a request must never drop the connection; said, not swallowed
            log.warning("control: %r failed: %s: %s", request["cmd"], type(exc).__name__, exc)
            return {"ok": False, "error": f"{request['cmd']!r} failed: {type(exc).__name__}: {exc}"}

    def _reply(self, reply: dict[str, Any]) -> bool:
        """Write one reply line; False when the client has gone."""
        try:
            data = _encode(reply)
        except TypeError as exc:  # orjson.JSONEncodeError: the handler returned something not JSON
            log.warning("control: reply not JSON-serialisable: %s", exc)
            data = _encode({"ok": False, "error": f"internal error: reply not JSON-serialisable ({exc})"})
        try:
            self.wfile.write(data)
            self.wfile.flush()
        except OSError as exc:
            log.debug("control: client went away before the reply (%s)", exc)
            return False
        return True


class _Server(socketserver.ThreadingUnixStreamServer):
    daemon_threads = True
    request_queue_size = 64
    handler: Handler
    idle_timeout: float | None = IDLE_TIMEOUT

    def __init__(self, path: str, max_connections: int) -> None:
        self.max_connections = max_connections
        self._slots = threading.BoundedSemaphore(max_connections)
        super().__init__(path, _RequestHandler)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):  # full: say so once and close, without a thread
            try:
                request.settimeout(1.0)
                request.sendall(_encode({"ok": False, "error": f"busy: {self.max_connections} connections already open; "
                                                               "close one or try again later"}))
            except OSError as exc:
                log.debug("control: could not tell an extra connection it is refused (%s)", exc)
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()  # the thread never started
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def handle_error(self, request: Any, client_address: Any) -> None:  # one log line, not a traceback on stderr
        exc = sys.exc_info()[1]
        log.warning("control: a connection failed: %s: %s", type(exc).__name__, exc, exc_info=log.isEnabledFor(logging.DEBUG))


class ControlServer:
    """Serves `handler` on `<home>/control.sock` from a background thread."""

    def __init__(self, home: Path, handler: Handler, max_connections: int = MAX_CONNECTIONS,
                 idle_timeout: float | None = IDLE_TIMEOUT) -> None:
        self.path = socket_path(home)
        _check_length(self.path)
        if self.path.exists():
            if probe(self.path):
                raise GrpoError(f"a scheduler already answers on {self.path}; use `grpo auto status`")
            self.path.unlink()  # stale socket of a dead host
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._server = _Server(str(self.path), max_connections)
        os.chmod(self.path, 0o600)
        self._server.handler = handler
        self._server.idle_timeout = idle_timeout
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
