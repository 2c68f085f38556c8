"""`builtin:exec_tests`: reward = fraction of a row's tests that pass against the completion's code.

The row's `tests` column holds Python snippets (e.g. `assert f(2) == 4`, possibly multi-line), a list
or one string; a row without tests scores None (not applicable). The code is the completion, or the
last ```python fenced block in it. Each completion runs in ONE fresh `python -I` subprocess, in its own
temporary directory and session, with a minimal environment: the harness first leaves the network
(unshare CLONE_NEWNET, or a user namespace around it, where the kernel allows; said once in the log
when it does not), caps the address space (RLIMIT_AS) and core dumps, points stdin/stdout/stderr at
/dev/null, execs the code in a namespace, then each test in try/except, and reports `passed` on its
real stdout on a line starting with a random marker. The limits are applied by the harness, not in a
preexec_fn, because preexec_fn is unsafe in a threaded parent (the trainer; our own thread pool).

Reward = passed / len(tests); the code failing to exec (syntax error, exception, MemoryError), the
wall-time limit (the whole process group is killed), or a death before the result line all give 0.0.
Up to min(4, cpus) completions run at once.

This is a guard rail against runaway or careless code, NOT a security boundary: the code runs as
the training user and can read and write whatever that user can. Use a container or VM for
untrusted models.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import secrets
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from policy.errors import RewardError

log = logging.getLogger("policy")
_FENCE = re.compile(r"```([^\n`]*)\n(.*?)(?:```|\Z)", re.DOTALL)  # (tag, body); an unclosed block runs to the end
_PYTHON_TAGS = ("", "python", "python3", "py")
_warned_network = False

HARNESS = r"""
import json, os, resource, sys

def leave_network():
    try:
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.unshare(0x40000000) == 0 or libc.unshare(0x10000000 | 0x40000000) == 0  # NEWNET [| NEWUSER]
    except (OSError, AttributeError):
        return False

def limit(memory_mb):
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    cap, (_, hard) = memory_mb * 1024 * 1024, resource.getrlimit(resource.RLIMIT_AS)
    cap = cap if hard == resource.RLIM_INFINITY else min(cap, hard)
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))

marker, job = sys.argv[1], json.loads(sys.stdin.buffer.read().decode("utf-8"))
offline = leave_network()
limit(job["memory_mb"])
report = os.fdopen(os.dup(1), "w")
null = os.open(os.devnull, os.O_RDWR)
for fd in (0, 1, 2):
    os.dup2(null, fd)
sys.argv = [""]
ns, passed = {"__name__": "__solution__"}, 0
try:
    exec(compile(job["code"], "<completion>", "exec"), ns)
    ran = True
except BaseException:
    ran = False
for i, test in enumerate(job["tests"] if ran else []):
    try:
        exec(compile(test, f"<test {i}>", "exec"), ns)
        passed += 1
    except BaseException:
        pass
report.write(marker + json.dumps({"passed": passed, "ran": ran, "offline": offline}) + "\n")
report.flush()
os._exit(0)
"""


def strip_fence(completion: str) -> str:
    """The last ```python (or untagged) fenced block of `completion` (an unclosed one runs to the end), else all of it."""
    blocks = [body for tag, body in _FENCE.findall(completion) if tag.strip().lower() in _PYTHON_TAGS]
    return blocks[-1] if blocks else completion


def _as_tests(value: object) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        return [value]
    if isinstance(value, (list, tuple)) and all(isinstance(t, str) for t in value):
        return list(value) or None
    raise TypeError(f"column 'tests' must hold a string or a list of strings per row, not {type(value).__name__}")


def _env(tmp: str) -> dict[str, str]:
    """Nothing of the trainer's environment (tokens, keys) reaches the code; BLAS stays on one thread."""
    threads = {k: "1" for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}
    return {"PATH": os.environ.get("PATH", os.defpath), "HOME": tmp, "TMPDIR": tmp, "LANG": "C.UTF-8", **threads}


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):  # the group is already gone
        pass


def run_tests(code: str, tests: list[str], *, timeout_s: float, memory_mb: int) -> float:
    """passed / len(tests) for `code` run as described in the module docstring; 0.0 on any failure."""
    global _warned_network
    marker = f"@@grpo-exec-{secrets.token_hex(8)}@@"
    payload = json.dumps({"code": code, "tests": tests, "memory_mb": memory_mb}).encode("utf-8")
    with tempfile.TemporaryDirectory(prefix="grpo-exec-", ignore_cleanup_errors=True) as tmp:
        argv = [sys.executable, "-I", "-c", HARNESS, marker]
        popen = dict(stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        with subprocess.Popen(argv, cwd=tmp, env=_env(tmp), start_new_session=True, **popen) as proc:
            try:
                out, _ = proc.communicate(payload, timeout=timeout_s)
            except subprocess.TimeoutExpired:
                return 0.0
            finally:
                _kill_group(proc.pid)  # on expiry, and any stray children of a finished run
    lines = [line for line in out.decode("utf-8", "replace").splitlines() if line.startswith(marker)]
    if not lines:
        return 0.0  # killed (signal, memory) or exited before reporting
    try:
        result = json.loads(lines[-1][len(marker):])
        passed = int(result["passed"])
    except (ValueError, KeyError, TypeError):
        return 0.0
    if not result.get("offline") and not _warned_network:
        _warned_network = True
        log.warning("builtin:exec_tests: completions run WITH network access (unshare of a network namespace failed: "
                    "no CAP_SYS_ADMIN and no user namespaces here)")
    return min(max(passed, 0), len(tests)) / len(tests)


def make_exec_tests(timeout_s: float, memory_mb: int) -> Callable[..., list[float | None]]:
    """The TRL-style reward function `exec_tests(prompts, completions, tests=None, **columns)`."""
    if not (math.isfinite(timeout_s) and timeout_s > 0):
        raise RewardError(f"builtin:exec_tests needs a positive time limit per completion, not {timeout_s}")
    if memory_mb < 16:
        raise RewardError(f"builtin:exec_tests needs at least 16 MiB of address space per completion, not {memory_mb}")

    def exec_tests(prompts: list[str], completions: list[str], tests: list | None = None, **_: object) -> list[float | None]:
        jobs = [_as_tests(t) for t in tests] if tests is not None else [None] * len(completions)
        with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
            futures = [
                None if t is None else pool.submit(run_tests, strip_fence(c), t, timeout_s=timeout_s, memory_mb=memory_mb)
                for c, t in zip(completions, jobs)
            ]
            return [None if f is None else f.result() for f in futures]

    return exec_tests
