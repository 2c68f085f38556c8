"""The home is the user's own: created 0700, refused when another user owns it or group/others can write
it, and no file inside is written through a planted symbolic link (issue 15, item 3).

Real `grpo` processes where the behaviour is the CLI's (the home gate, a training run's metrics and
manifest); the scheduler's child logs, the daemon log and cycles.jsonl through the functions that open them.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from grpo_tui.cycle import ChildFailed, SubprocessCycleRunner
from grpo_tui.cycles import append_cycle
from grpo_tui.errors import GrpoError

ROOT = Path(__file__).resolve().parents[2]
VICTIM_TEXT = b"precious victim bytes\n"


def grpo(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "GRPO_HOME": str(home)}
    return subprocess.run([sys.executable, "-m", "grpo_tui.cli", "--home", str(home), *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300, check=False)


def victim(tmp_path: Path, name: str = "victim.txt") -> Path:
    path = tmp_path / name
    path.write_bytes(VICTIM_TEXT)
    return path


def dataset(path: Path) -> Path:
    path.write_text("".join(json.dumps({"prompt": f"task {i}: pick the word", "candidates": [
        {"text": "use sorted here", "reward": 1.0}, {"text": "use open here", "reward": 0.1}]}) + "\n" for i in range(8)))
    return path


def test_pytest_tmp_dirs_are_private(tmp_path: Path) -> None:
    """The premise of every test that makes a home under tmp_path: pytest's folders are not writable by others."""
    assert not stat.S_IMODE(tmp_path.stat().st_mode) & 0o022


def test_a_new_home_is_created_0700(tmp_path: Path) -> None:
    home = tmp_path / "deep" / ".grpo"
    proc = grpo(home, "guard", "--min-free-gb", "0", "--min-ram-gb", "0", "--json")
    assert proc.returncode == 0, proc.stderr
    assert stat.S_IMODE(home.stat().st_mode) == 0o700 and (home / "guard.json").is_file()


@pytest.mark.parametrize("mode", [0o777, 0o770, 0o702], ids=["0777", "0770", "0702"])
def test_a_home_writable_by_group_or_others_is_refused_with_the_fix(tmp_path: Path, mode: int) -> None:
    home = tmp_path / ".grpo"
    home.mkdir()
    home.chmod(mode)
    proc = grpo(home, "guard", "--min-free-gb", "0", "--json")
    assert proc.returncode == 1 and proc.stdout == "" and "Traceback" not in proc.stderr
    assert proc.stderr.startswith(f"error: refusing the home {home}: it is writable by") and f"chmod 700 {home}" in proc.stderr
    assert list(home.iterdir()) == []  # nothing was written into it
    home.chmod(0o700)
    assert grpo(home, "guard", "--min-free-gb", "0", "--json").returncode == 0  # the fix works


def test_a_home_owned_by_another_user_is_refused(tmp_path: Path) -> None:
    if os.geteuid() == 0:  # root can hand a folder to another user; anyone else uses one root owns
        home = tmp_path / ".grpo"
        home.mkdir(mode=0o700)
        os.chown(home, 65534, 65534)
    else:
        home = Path("/")
    proc = grpo(home, "guard", "--min-free-gb", "0", "--json")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert f"refusing the home {home}: it is owned by uid" in proc.stderr and "use a home of your own" in proc.stderr
    if home != Path("/"):
        assert list(home.iterdir()) == []


def test_commands_that_need_no_home_neither_create_nor_check_it(tmp_path: Path) -> None:
    home = tmp_path / "absent" / ".grpo"
    proc = grpo(home, "config", "--help")
    assert proc.returncode == 0 and not home.exists()


def test_planted_child_log_symlink_is_refused_and_the_victim_untouched(home: Path, tmp_path: Path) -> None:
    """A planted `auto/logs/cycle_00001_mine.log -> victim` fails that child; the victim is not truncated."""
    target = victim(tmp_path)
    logs = home / "auto" / "logs"
    logs.mkdir(parents=True)
    (logs / "cycle_00001_mine.log").symlink_to(target)
    runner = SubprocessCycleRunner(home)
    argv = [sys.executable, "-c", "import sys; print('child ran', file=sys.stderr); print('{}')"]
    with pytest.raises(ChildFailed, match="symbolic link"):
        runner._run_child(argv, "cycle_00001_mine", threading.Event())
    assert target.read_bytes() == VICTIM_TEXT
    assert runner._run_child(argv, "cycle_00002_mine", threading.Event()) == {}  # a plain log still works
    assert (logs / "cycle_00002_mine.log").read_bytes() == b"child ran\n"


def test_planted_daemon_log_symlink_is_refused_and_no_daemon_starts(home: Path, tmp_path: Path) -> None:
    from grpo_tui.control import ControlClient, probe, socket_path
    from grpo_tui.daemon import LOG_FILE, spawn_daemon

    target = victim(tmp_path)
    (home / LOG_FILE).parent.mkdir(parents=True)
    (home / LOG_FILE).symlink_to(target)
    pid = None
    try:
        with pytest.raises(GrpoError, match="symbolic link"):
            pid = spawn_daemon(home, wait=30)
    finally:
        if pid is not None or probe(socket_path(home), timeout=0.5):  # today's code started one: end it
            ControlClient(home).request("shutdown")
    assert target.read_bytes() == VICTIM_TEXT


def test_planted_cycles_file_symlink_is_refused(home: Path, tmp_path: Path) -> None:
    target = victim(tmp_path)
    (home / "auto").mkdir()
    (home / "auto" / "cycles.jsonl").symlink_to(target)
    with pytest.raises(OSError, match="symbolic link"):
        append_cycle(home, {"cycle": 1, "outcome": "ok"})
    assert target.read_bytes() == VICTIM_TEXT


def test_train_never_writes_metrics_through_a_planted_symlink(home: Path, tmp_path: Path) -> None:
    target = tmp_path / "victim.txt"
    target.write_bytes(b"")  # empty: a non-empty metrics file would (rightly) read as an earlier run
    out = tmp_path / "run"
    out.mkdir()
    (out / "metrics.jsonl").symlink_to(target)
    proc = grpo(home, "train", "--dataset", str(dataset(tmp_path / "g.jsonl")), "--steps", "2", "--out", str(out), "--json")
    assert proc.returncode == 1 and "symbolic link" in proc.stderr and "Traceback" not in proc.stderr
    assert target.read_bytes() == b""


def test_atomic_writes_replace_a_planted_symlink_instead_of_following_it(home: Path, tmp_path: Path) -> None:
    """guard.json (miner.atomic, through the CLI) and manifest.json (policy.atomic, a training run)."""
    guard_text = b'{"min_free_gb": 0, "min_ram_gb": 0, "min_vram_mb": 0}'  # read as the current thresholds
    guard_victim, manifest_victim = tmp_path / "guard_victim", victim(tmp_path, "manifest_victim")
    guard_victim.write_bytes(guard_text)
    (home / "guard.json").unlink()
    (home / "guard.json").symlink_to(guard_victim)
    assert grpo(home, "guard", "--min-free-gb", "0.001", "--json").returncode == 0
    assert not (home / "guard.json").is_symlink() and json.loads((home / "guard.json").read_text())["min_free_gb"] == 0.001
    out = tmp_path / "run"
    out.mkdir()
    (out / "manifest.json").symlink_to(manifest_victim)
    proc = grpo(home, "train", "--dataset", str(dataset(tmp_path / "g.jsonl")), "--steps", "1", "--out", str(out), "--json")
    assert proc.returncode == 0, proc.stderr
    assert not (out / "manifest.json").is_symlink() and json.loads((out / "manifest.json").read_text())["config"]
    assert guard_victim.read_bytes() == guard_text and manifest_victim.read_bytes() == VICTIM_TEXT
