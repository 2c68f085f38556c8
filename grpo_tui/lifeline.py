"""Children that die with their host, and stale trainers a new host ends.

`die_with_parent()` runs first thing in every `grpo` process (grpo_tui.cli.main). When the env var
GRPO_DIE_WITH_PARENT=<ppid> is set (the cycle runner sets it for its children), it asks Linux for
SIGTERM when the parent dies (prctl PR_SET_PDEATHSIG; the trainer then checkpoints and exits) and exits
at once if the parent is already gone (getppid() differs from <ppid>). The variable is removed from
the environment so the child's own children are not affected. On other systems it does nothing.

`end_stale_trainer(out)`: a trainer still holding `<out>/.lock` (policy.runlock) when a host is about
to train that run folder is left over from a host that died; if it is a `grpo train` process it gets
SIGTERM, then SIGKILL after `timeout` seconds. Returns what was done, for the cycle record.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from policy.runlock import lock_holder

ENV = "GRPO_DIE_WITH_PARENT"
PR_SET_PDEATHSIG = 1


def child_env(env: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a child that must die with this process."""
    return {**(os.environ if env is None else env), ENV: str(os.getpid())}


def die_with_parent() -> None:
    expected = os.environ.pop(ENV, None)
    if not expected or not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if str(os.getppid()) != expected.strip():  # the parent died before prctl took effect
        os._exit(1)


if TYPE_CHECKING:
    import psutil


def _is_trainer(proc: psutil.Process) -> bool:
    cmd = proc.cmdline()
    return "train" in cmd and any("grpo" in part for part in cmd[:3])


def end_stale_trainer(out: Path, timeout: float = 30.0) -> dict[str, Any] | None:
    """End a `grpo train` still holding the lock of `out`; None when nobody holds it."""
    import psutil

    pid = lock_holder(out)
    if pid is None:
        return None
    entry: dict[str, Any] = {"pid": pid, "ended": False}
    if pid == 0 or pid == os.getpid():
        return entry | {"reason": "lock held without a pid" if pid == 0 else "held by this host"}
    try:
        proc = psutil.Process(pid)
        if not _is_trainer(proc):
            return entry | {"reason": f"held by a process that is not a grpo trainer: {' '.join(proc.cmdline())[:200]}"}
        proc.send_signal(signal.SIGTERM)  # it checkpoints after the current step and exits
        entry["signal"] = "SIGTERM"
        if not _released(out, pid, timeout):
            proc.kill()
            entry["signal"] = "SIGKILL"
    except psutil.NoSuchProcess:
        pass  # it ended on its own meanwhile
    except psutil.AccessDenied as exc:
        return entry | {"reason": f"cannot end it: {exc}"}
    return entry | {"ended": _released(out, pid, timeout)}


def _released(out: Path, pid: int, timeout: float) -> bool:
    """Wait until `pid` no longer holds the lock (the kernel drops it as the process exits, zombie or not)."""
    deadline = time.monotonic() + timeout
    while lock_holder(out) == pid:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True
