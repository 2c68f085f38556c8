"""A scheduler host: one per home, serving the control socket until `shutdown`.

Hosts: `grpo auto serve` (foreground), `grpo auto start --detach` (this module run as a daemon in
its own session, surviving SSH logout), or the console's own process. An exclusive lock on
`<home>/scheduler.lock` refuses a second host on the same home; a stale socket or pid file of a dead
host is cleaned. `<home>/scheduler.json` (pid, socket, state) is written atomically.
"""

from __future__ import annotations

import argparse
import fcntl
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import orjson
from pydantic import ValidationError

from grpo_tui import guard
from miner.atomic import open_nofollow, write_atomic as write_bytes_atomic
from grpo_tui.config import AutoConfig, GuardConfig, describe
from grpo_tui.control import ControlClient, ControlServer, probe, socket_path
from grpo_tui.errors import GrpoError
from grpo_tui.scheduler import CycleRunner, Scheduler
from grpo_tui.stats import StatsSampler

log = logging.getLogger(__name__)
STATE_FILE, LOCK_FILE, LOG_FILE = "scheduler.json", "scheduler.lock", Path("auto") / "daemon.log"


def read_state(home: Path) -> dict[str, Any] | None:
    try:
        return orjson.loads((Path(home) / STATE_FILE).read_bytes())
    except (FileNotFoundError, orjson.JSONDecodeError):
        return None


class Host:
    """Owns the scheduler and the control server of one home."""

    def __init__(self, home: Path, runner: CycleRunner | None = None, sampler: StatsSampler | None = None) -> None:
        self.home = Path(home)
        self.home.mkdir(parents=True, exist_ok=True)
        self._lock_handle = open(self.home / LOCK_FILE, "a+")
        try:
            fcntl.flock(self._lock_handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            self._lock_handle.close()
            other = (read_state(self.home) or {}).get("pid", "?")
            raise GrpoError(
                f"another scheduler host (pid {other}) already runs for {self.home}; "
                "talk to it with `grpo auto status|start|stop|shutdown`"
            ) from exc
        if runner is None:
            from grpo_tui.cycle import SubprocessCycleRunner

            runner = SubprocessCycleRunner(self.home)
        self.sampler = sampler or StatsSampler(self.home)
        self.scheduler = Scheduler(self.home, runner)
        self.finished = threading.Event()
        self.server = ControlServer(self.home, self.handle).start()
        self._write_state("up")

    def _write_state(self, state: str) -> None:
        data = {"pid": os.getpid(), "socket": str(socket_path(self.home)), "state": state, "updated": time.time()}
        write_bytes_atomic(self.home / STATE_FILE, orjson.dumps(data))

    def handle(self, request: dict[str, Any]) -> dict[str, Any]:
        cmd = request["cmd"]
        if cmd == "status":
            stats = self.sampler.sample()
            report = guard.check(self.home, guard.load_thresholds(self.home), stats)
            return self.scheduler.status() | {"pid": os.getpid(), "home": str(self.home),
                                              "guard": report.to_dict(), "stats": stats}
        if cmd == "start":
            try:
                cfg = AutoConfig.model_validate(request.get("config") or {})
            except ValidationError as exc:
                return {"ok": False, "error": f"invalid auto config: {exc.errors()[0]['loc']}: {exc.errors()[0]['msg']}"}
            if "guard" in (request.get("config") or {}):
                guard.save_thresholds(self.home, cfg.guard)
            return self.scheduler.start(cfg)
        if cmd == "stop":
            return self.scheduler.stop()
        if cmd == "run":
            cfg = self.scheduler.cfg
            if request.get("config"):
                try:
                    cfg = AutoConfig.model_validate(request["config"])
                except ValidationError as exc:
                    return {"ok": False, "error": f"invalid auto config: {exc.errors()[0]['msg']}"}
            return self.scheduler.run_once(str(request.get("job", "")), cfg)
        if cmd == "guard":
            thresholds = guard.load_thresholds(self.home)
            if request.get("set"):
                if not isinstance(request["set"], dict):
                    return {"ok": False, "error": 'bad request: "set" is an object of thresholds, e.g. {"min_free_gb": 5}'}
                try:
                    thresholds = GuardConfig.model_validate(thresholds.model_dump() | request["set"])
                except ValidationError as exc:
                    return {"ok": False, "error": f"invalid guard thresholds: {describe(GuardConfig, exc)}"}
                guard.save_thresholds(self.home, thresholds)
            return {"ok": True, "guard": guard.check(self.home, thresholds).to_dict()}
        if cmd == "observe":  # metrics, checkpoints and log tails, for a console on another machine
            from grpo_tui import observe

            return {"ok": True} | observe.collect(self.home, int(request.get("metrics_limit", 120)),
                                                  int(request.get("log_lines", 60)))
        if cmd == "shutdown":
            self.scheduler.stop()
            threading.Thread(target=self.close, name="shutdown", daemon=True).start()
            return {"ok": True, "state": "shutting down"}
        return {"ok": False, "error": f"unknown command {cmd!r}; use status, start, stop, run, guard, observe or shutdown"}

    def close(self, wait: float = 45.0) -> None:
        """Stop auto mode and any one-off job (letting the trainer checkpoint and the job record its cycle
        line; bounded by `wait`, longer than the runner's 30 s SIGKILL timeout), remove the socket, release the lock."""
        if self.finished.is_set():
            return
        try:
            self.scheduler.stop()
            self.scheduler.join(wait)
            self.server.close()
            self._write_state("down")
        except OSError as exc:  # e.g. the home was deleted under us: still end the host
            log.warning("while shutting down: %s", exc)
        finally:
            fcntl.flock(self._lock_handle, fcntl.LOCK_UN)
            self._lock_handle.close()
            self.finished.set()

    def serve_forever(self) -> None:
        """Block until shutdown (control socket, SIGTERM or SIGINT)."""
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: threading.Thread(target=self.close, daemon=True).start())
        signal.signal(signal.SIGHUP, signal.SIG_IGN)  # survive the SSH session that started us
        while not self.finished.wait(0.5):
            pass


def spawn_daemon(home: Path, wait: float = 30.0) -> int:
    """Start a detached host for `home` in its own session; return its pid once the socket answers."""
    home = Path(home)
    log_path = home / LOG_FILE
    log_path.parent.mkdir(parents=True, exist_ok=True)
    try:
        out = open_nofollow(log_path, append=True)  # a planted symlink is refused, never followed
    except OSError as exc:
        raise GrpoError(f"cannot open the daemon log: {exc}") from exc
    with out:
        log_start = os.fstat(out.fileno()).st_size  # the log is appended to: what this start writes begins here
        proc = subprocess.Popen(
            [sys.executable, "-m", "grpo_tui.daemon", "--home", str(home)],
            stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True, close_fds=True,
        )
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise GrpoError(f"the scheduler daemon exited at start (code {proc.returncode}); see {log_path}"
                            + _log_tail(log_path, log_start))
        if probe(socket_path(home), timeout=0.2):
            ControlClient(home).request("status")
            return proc.pid
        time.sleep(0.1)
    raise GrpoError(f"the scheduler daemon did not open its socket within {wait:g} s; see {log_path}")


def _log_tail(path: Path, start: int, lines: int = 10, max_bytes: int = 8192) -> str:
    """'; its last lines:' and the last `lines` lines written to `path` after offset `start`, or '' when none."""
    try:
        with open(path, "rb") as f:
            f.seek(max(start, f.seek(0, os.SEEK_END) - max_bytes))
            text = f.read().decode(errors="replace")
    except OSError:
        return ""
    tail = [line for line in text.splitlines() if line.strip()][-lines:]
    return ("; its last lines:\n" + "\n".join("  " + line for line in tail)) if tail else ""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m grpo_tui.daemon")
    parser.add_argument("--home", type=Path, required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        host = Host(args.home.absolute())
    except GrpoError as exc:
        log.error("%s", exc)
        return 1
    log.info("scheduler host pid %d serving %s", os.getpid(), host.server.path)
    host.serve_forever()
    log.info("scheduler host stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
