"""`grpo train --nproc N`: the same command again under `torchrun --standalone --nproc-per-node N`.

`torchrun(nproc, argv)` runs `python -m torch.distributed.run --standalone --nproc-per-node N -m
grpo_tui.cli <argv>` (torchrun's own launcher and rendezvous) in a session of its own, so a terminal's
Ctrl-C reaches this process only. SIGTERM / Ctrl-C here is passed to the worker processes themselves
(not to torchrun, which would give them only 30 s): the ranks agree to stop after the current step,
rank 0 checkpoints, and this returns 130. When a rank fails, torchrun ends the others and prints its
report; this reads the report's root cause from torchrun's stderr (passed through as it comes) and ends
with one line naming the rank and how it ended, and that rank's exit code (1 for a signal).
Inside the workers WORLD_SIZE is set, so `grpo train` trains instead of launching again.
"""

from __future__ import annotations

import ctypes
import logging
import os
import re
import signal
import subprocess
import sys
import threading
from typing import Any

import click

ARGV: list[str] | None = None  # the `grpo` arguments of this process (grpo_tui.cli.main sets them)
CHILD_ENV = "GRPO_TORCHRUN_CHILD"  # set for the workers: a stopped run exits 0 and this launcher says 130
REPORT = re.compile(r"^\s*(Failures|Root Cause)")  # torchrun's failure report: other failures, then the first observed
RANK = re.compile(r"^\s*rank\s*:\s*(\d+)(?:\s*\(local_rank:\s*(\d+)\))?")
EXIT = re.compile(r"^\s*exitcode\s*:\s*(-?\d+)")


def in_worker() -> bool:
    """True in a torchrun worker of a world of several processes (ours or a user's own torchrun)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def exit_worker(code: int) -> None:
    """End a torchrun worker with `code` once its output is flushed, skipping the interpreter's teardown.

    The process group is already destroyed and every file closed by then; what teardown would still do is
    run C++ static destructors, and a communication thread still alive there aborts the whole process
    (`terminate called without an active exception`, exit -6: seen once in CI on a finished 2-rank gloo
    run, which torchrun then reports as a failed rank)."""
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed or broken pipe: nothing left to say
            pass
    os._exit(code)


def _die_with_us() -> None:
    """In the child before exec: SIGTERM to torchrun when this launcher dies (it then ends the workers)."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None).prctl(1, int(signal.SIGTERM), 0, 0, 0)  # PR_SET_PDEATHSIG
    os.setsid()


def _workers(pid: int) -> list[Any]:
    import psutil

    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def command(nproc: int, argv: list[str]) -> list[str]:
    """The torchrun command line. `--nproc` leaves the workers' arguments: they learn the world from
    torchrun, and torchrun's parser would take it for an abbreviation of its `--nproc-per-node`."""
    args, skip = [], False
    for arg in argv:
        if skip or arg.startswith("--nproc="):
            skip = False
        elif arg == "--nproc":
            skip = True
        else:
            args.append(arg)
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}", "-m", "grpo_tui.cli", *args]


def failures_in(report: list[str]) -> list[dict[str, int]]:
    """Every rank torchrun's failure report lists: rank, local rank, exitcode, root (1 under "Root Cause")."""
    failures: list[dict[str, int]] = []
    section = ""
    for line in report:
        section = m.group(1) if (m := REPORT.match(line)) else section
        if section and (m := RANK.match(line)):
            failures.append({"rank": int(m.group(1)), "local": int(m.group(2) or m.group(1)), "root": int(section == "Root Cause")})
        elif failures and (m := EXIT.match(line)) and "exitcode" not in failures[-1]:
            failures[-1]["exitcode"] = int(m.group(1))
    return failures


def cause(failures: list[dict[str, int]]) -> dict[str, int]:
    """The failure to name: a rank killed by a signal (the others then fail because their peer is gone,
    and torchrun may observe them first when they exit at once), else torchrun's root cause."""
    killed = [f for f in failures if f.get("exitcode", 1) < 0]
    roots = [f for f in failures if f["root"]]
    return (killed or roots or failures)[0]


def torchrun(nproc: int, argv: list[str] | None = None) -> int:
    """Run `grpo <argv>` (default: this process's arguments) on `nproc` local processes; the exit code of
    the run (130: stopped on request)."""
    argv = list(ARGV if ARGV is not None else sys.argv[1:]) if argv is None else argv
    env = {**os.environ, CHILD_ENV: "1"}
    proc = subprocess.Popen(command(nproc, argv), stderr=subprocess.PIPE, env=env, preexec_fn=_die_with_us, text=True, errors="replace")
    asked: list[int] = []

    def stop(signum: int, frame: Any) -> None:
        asked.append(signum)
        for child in _workers(proc.pid):  # the ranks checkpoint after this step and exit
            child.send_signal(signal.SIGTERM)

    main = threading.current_thread() is threading.main_thread()  # signals reach the main thread only
    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)} if main else {}
    report: list[str] = []  # torchrun's failure report, from its first section on
    try:
        assert proc.stderr is not None
        for line in proc.stderr:
            sys.stderr.write(line)
            if report or REPORT.match(line):
                report.append(line)
        code = proc.wait()
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
    if code == 0:
        return 130 if asked else 0
    if failures := failures_in(report):
        failure = cause(failures)
        ec = failure.get("exitcode", 1)
        how = f"was killed by {signal.Signals(-ec).name}" if ec < 0 else f"exited with code {ec}"
        click.echo(f"error: rank {failure['rank']} (local rank {failure['local']}) {how}; torchrun ended the other ranks", err=True)
        return ec if ec > 0 else 1
    click.echo(f"error: torchrun exited with code {code}", err=True)
    return 130 if asked else (code if code > 0 else 1)
