"""The console measured the way an operator meets it: `grpo-tui` in a real terminal (tmux).

`TmuxConsole(home, ...)` launches `grpo-tui --home HOME` as the only process of a pane on a private
tmux server (so the pane's pid is the console's), reads the screen with `capture-pane` and types with
`send-keys`. The console attaches to the home's scheduler daemon, starting one, as a person's would;
`close()` ends the tmux server and shuts that daemon down.

Measurements (the `grpo bench tui` case, `bench/cases/tui.py`):
- `idle_cpu(console, seconds)`: CPU time (user + system, psutil) the console process used over
  `seconds` of wall time while idle at its refresh rate, as a percent of one core (goal <= 3 %);
- `keypress_ms(console)`: one `p` (pause / resume) from `send-keys` until the header's `PAUSED`
  marker appears or disappears in `capture-pane`, in ms (goal <= 100 ms; includes the tmux round trip).
`populate(home)` writes a realistic home (three levels of metrics, 20 cycle records, checkpoints, a
log, 40 mined groups per level) so the idle console renders real panels; `python -m bench.tui` prints
both numbers. With `--screen inspect` (case `tui-inspect`) the console first opens the inspect screen
(`i`), then idles there, and each key press is `j` / `k` (next / previous group) timed until the
head line's `group n/N` changes.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson
import psutil

PAUSED = "PAUSED"


def console_argv(home: Path, *extra: str) -> list[str]:
    """`grpo-tui` from this interpreter's environment (the console script, else the module)."""
    script = Path(sys.executable).with_name("grpo-tui")
    base = [str(script)] if script.exists() else [sys.executable, "-m", "grpo_tui.console.app"]
    return [*base, "--home", str(home), *extra]


class TmuxConsole:
    """One `grpo-tui` in a detached tmux pane of its own tmux server."""

    def __init__(self, home: Path, *extra: str, width: int = 120, height: int = 40, keep_pane: bool = True) -> None:
        if shutil.which("tmux") is None:
            raise RuntimeError("tmux is not installed (apt-get install tmux)")
        self.home = Path(home)
        self.server = f"grpo-tui-{os.getpid()}-{time.monotonic_ns() % 10**9}"
        command = " ".join(_quote(a) for a in console_argv(self.home, *extra))
        # keep the pane after the console exits, so its last words stay readable
        shell = f"{command}; echo '[console exited]'; sleep 600" if keep_pane else f"exec {command}"
        env = {k: v for k, v in os.environ.items() if k not in ("TMUX", "NO_COLOR")}
        env["TERM"] = "xterm-256color"
        self._tmux("new-session", "-d", "-s", "c", "-x", str(width), "-y", str(height), shell, env=env)
        self._tmux("set-option", "-t", "c", "status", "off")

    def _tmux(self, *args: str, env: dict[str, str] | None = None) -> str:
        out = subprocess.run(["tmux", "-L", self.server, *args], capture_output=True, text=True, env=env, check=False)
        if out.returncode != 0:
            raise RuntimeError(f"tmux {' '.join(args[:2])} failed: {out.stderr.strip()}")
        return out.stdout

    def screen(self) -> str:
        return self._tmux("capture-pane", "-p", "-t", "c")

    def send(self, *keys: str) -> None:
        self._tmux("send-keys", "-t", "c", *keys)

    def pane_pid(self) -> int:
        return int(self._tmux("display-message", "-p", "-t", "c", "#{pane_pid}").strip())

    def console_process(self) -> psutil.Process:
        """The console's own process: the pane's shell runs it as a child (or is it, with exec)."""
        shell = psutil.Process(self.pane_pid())
        for proc in [shell, *shell.children()]:
            if "grpo_tui.console.app" in " ".join(proc.cmdline()) or any("grpo-tui" in a for a in proc.cmdline()[:2]):
                return proc
        raise RuntimeError("the console process is not running in the pane")

    def wait_for(self, text: str, timeout: float = 60.0, absent: bool = False) -> str:
        deadline = time.monotonic() + timeout
        while True:
            screen = self.screen()
            if (text in screen) != absent:
                return screen
            if time.monotonic() > deadline:
                raise TimeoutError(f"{'still saw' if absent else 'never saw'} {text!r} within {timeout:g} s; "
                                   f"screen:\n{screen}")
            time.sleep(0.05)

    def close(self, shutdown_daemon: bool = True) -> None:
        subprocess.run(["tmux", "-L", self.server, "kill-server"], capture_output=True, check=False)
        if shutdown_daemon:
            shutdown(self.home)


def shutdown(home: Path, wait: float = 30.0) -> None:
    """Shut the home's scheduler daemon down, if one answers, and wait until its process has exited
    (so the caller may delete the home)."""
    from grpo_tui.control import ControlClient, DaemonNotRunning
    from grpo_tui.daemon import read_state

    pid = (read_state(home) or {}).get("pid")
    try:
        ControlClient(home).request("shutdown")
    except DaemonNotRunning:
        return
    if pid:
        try:
            psutil.Process(pid).wait(wait)
        except psutil.NoSuchProcess:
            pass
        except psutil.TimeoutExpired as exc:
            raise RuntimeError(f"the scheduler daemon (pid {pid}) did not exit within {wait:g} s") from exc


def _quote(arg: str) -> str:
    return "'" + arg.replace("'", "'\\''") + "'"


def idle_cpu(console: TmuxConsole, seconds: float = 20.0) -> dict[str, Any]:
    """CPU percent of one core used by the idle console over `seconds`."""
    proc = console.console_process()
    before, start = proc.cpu_times(), time.monotonic()
    time.sleep(seconds)
    after, wall = proc.cpu_times(), time.monotonic() - start
    used = (after.user - before.user) + (after.system - before.system)
    return {"idle_seconds": wall, "idle_cpu_s": used, "idle_cpu_percent": 100.0 * used / wall, "console_pid": proc.pid}


def keypress_ms(console: TmuxConsole, timeout: float = 5.0) -> float:
    """Press `p` and time until the pause marker flips on screen."""
    paused = PAUSED in console.screen()
    start = time.perf_counter()
    console.send("p")
    deadline = start + timeout
    while (PAUSED in console.screen()) == paused:
        if time.perf_counter() > deadline:
            raise TimeoutError(f"the console did not show the key press within {timeout:g} s")
    return (time.perf_counter() - start) * 1e3


GROUP_MARK = re.compile(r"group (\d+)/(\d+)")


def open_inspect(console: TmuxConsole, timeout: float = 120.0) -> None:
    """Press `i` and wait until the inspect screen shows its groups."""
    console.send("i")
    deadline = time.monotonic() + timeout
    while GROUP_MARK.search(console.screen()) is None:
        if time.monotonic() > deadline:
            raise TimeoutError(f"the inspect screen did not show its groups; screen:\n{console.screen()}")
        time.sleep(0.05)


def inspect_keypress_ms(console: TmuxConsole, timeout: float = 5.0) -> float:
    """On the inspect screen: press `j` (or `k` at the last group) and time until `group n/N` changes."""
    match = GROUP_MARK.search(console.screen())
    if match is None:
        raise RuntimeError("the inspect screen is not open")
    n, total = int(match.group(1)), int(match.group(2))
    start = time.perf_counter()
    console.send("j" if n < total else "k")
    deadline = start + timeout
    while True:
        now = GROUP_MARK.search(console.screen())
        if now is not None and int(now.group(1)) != n:
            return (time.perf_counter() - start) * 1e3
        if time.perf_counter() > deadline:
            raise TimeoutError(f"the inspect screen did not show the key press within {timeout:g} s")


def populate_groups(home: Path, per_level: int = 40) -> None:
    """Mined datasets for the three auto levels (what the inspect screen lists)."""
    auto = home / "auto"
    auto.mkdir(parents=True, exist_ok=True)
    for k, level in enumerate(("global", "signature", "patch")):
        lines = []
        for i in range(per_level):
            cands = [{"text": f"candidate {j} for task {i}: " + "edit the file and run the tests " * 3,
                      "reward": round((i * 7 + j * 13 + k) % 10 / 10, 2),
                      "rewards": {"correctness": round((i + j) % 5 / 4, 2), "style": round((i * j) % 3 / 2, 2)}}
                     for j in range(4)]
            lines.append(orjson.dumps({"prompt": f"Fix the bug number {i} in module_{i % 7}.py ({level})",
                                       "candidates": cands, "meta": {"level": level}}))
        (auto / f"{level}.jsonl").write_bytes(b"\n".join(lines) + b"\n")


def populate(home: Path, steps: int = 400, now: float | None = None) -> None:
    """A home as auto mode leaves it: metrics for three levels, 20 cycles, checkpoints and a log."""
    now = time.time() if now is None else now
    auto = home / "auto"
    for k, level in enumerate(("global", "signature", "patch")):
        root = auto / f"ckpts_{level}"
        (root / "checkpoints").mkdir(parents=True, exist_ok=True)
        lines = []
        for i in range(1, steps + 1):
            x = i / steps
            lines.append(orjson.dumps({
                "step": i, "loss": 0.9 * math.exp(-3 * x) + 0.05 * math.sin(7 * i), "kl": 0.002 + 0.05 * x * x,
                "adv_mean": 0.0, "adv_std": 1.0, "lr": 1e-4, "timestamp": now - steps + i,
                "reward_mean": 0.3 + 0.4 * x, "reward_std": 0.3, "clip_frac_low": 0.01, "clip_frac_high": 0.02 * x,
                "grad_norm": 0.8 + 0.3 * math.sin(i / 3), "kl_coef": 0.04, "entropy": 2.0, "tokens_per_s": 900.0,
                "groups_filtered": 0, "nan_skips": 0}))
        (root / "metrics.jsonl").write_bytes(b"\n".join(lines) + b"\n")
        for step in (steps - 200, steps):
            folder = root / "checkpoints" / f"step_{step:06d}"
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "meta.json").write_bytes(orjson.dumps({"step": step, "metrics": {"loss": 0.05 + k / 100}}))
    cycles = []
    for i in range(1, 21):
        start = now - (21 - i) * 600
        outcome = ("ok", "ok", "skipped", "ok", "failed")[i % 5]
        cycles.append(orjson.dumps({"cycle": i, "job": "cycle", "start": start, "end": start + 90, "outcome": outcome,
                                    "reason": f"{outcome}: synthetic cycle {i}", "groups": {"global": 30}}))
    (auto / "cycles.jsonl").write_bytes(b"\n".join(cycles) + b"\n")
    (auto / "logs").mkdir(parents=True, exist_ok=True)
    (auto / "logs" / "cycle_00020_train_global.log").write_text(
        "\n".join(f"INFO policy: step {i} loss 0.05" for i in range(60)) + "\n")
    populate_groups(home)


def run_bench(seconds: float = 20.0, presses: int = 10, refresh: float = 2.0, screen: str = "main") -> dict[str, Any]:
    """Idle CPU over `seconds` and `presses` keypress latencies of a console on a populated home
    (`screen="inspect"`: on the inspect screen, opened first)."""
    tmp = Path(tempfile.mkdtemp(prefix="gtb-"))
    home = tmp / "h"
    populate(home)
    console = TmuxConsole(home, "--refresh", str(refresh), keep_pane=False)
    try:
        console.wait_for("scheduler pid", timeout=120)
        if screen == "inspect":
            open_inspect(console)
        time.sleep(2 * refresh)  # let start-up work settle
        idle = idle_cpu(console, seconds)
        press = inspect_keypress_ms if screen == "inspect" else keypress_ms
        latencies = [press(console) for _ in range(presses)]
    finally:
        console.close()
        shutil.rmtree(tmp, ignore_errors=True)
    latencies.sort()
    return {**idle, "screen": screen, "refresh_s": refresh, "keypress_ms": latencies, "keypress_ms_p50": latencies[len(latencies) // 2],
            "keypress_ms_max": latencies[-1]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.tui", description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="idle window, seconds")
    parser.add_argument("--presses", type=int, default=10)
    parser.add_argument("--refresh", type=float, default=2.0)
    parser.add_argument("--screen", choices=("main", "inspect"), default="main",
                        help="measure on the main screen or with the inspect screen (i) open")
    args = parser.parse_args(argv)
    result = run_bench(args.seconds, args.presses, args.refresh, args.screen)
    print(f"idle console ({args.screen} screen): {result['idle_cpu_percent']:.2f}% of one core over {result['idle_seconds']:.1f} s "
          f"(goal <= 3%); keypress to screen: p50 {result['keypress_ms_p50']:.1f} ms, max {result['keypress_ms_max']:.1f} ms "
          f"(goal <= 100 ms)", file=sys.stderr)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
