"""Faults around training runs, with real processes (the daemon, `grpo train` children).

Covers: one writer per run folder (a second trainer on the same out dir exits 1 naming the holder's
pid), a trainer ending with the host that started it (SIGKILLed daemon), a new host ending a stale
trainer of the run folder before it trains that level (recorded in the cycle line), and a stopped or
shut-down train job still recording a cycle line with the steps it checkpointed.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import orjson
import psutil
import pytest

from grpo_tui.commands.auto import request_config
from grpo_tui.config import AutoConfig
from grpo_tui.control import ControlClient
from grpo_tui.cycles import read_cycles
from grpo_tui.daemon import spawn_daemon
from policy.runlock import lock_holder

from testkit import trainer_of, wait_for, word_groups as dataset  # noqa: E402 - tests/testkit.py

pytestmark = pytest.mark.timeout(300)


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def metric_lines(run: Path) -> int:
    path = run / "metrics.jsonl"
    return path.read_bytes().count(b"\n") if path.exists() else 0


@pytest.fixture()
def env(home: Path, monkeypatch: pytest.MonkeyPatch):
    """One thread per child; every process a test starts is killed at teardown if still alive."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("MKL_NUM_THREADS", "1")
    pids: list[int] = []
    yield pids
    for pid in reversed(pids):
        try:
            proc = psutil.Process(pid)
            for child in proc.children(recursive=True):
                child.kill()
            proc.kill()
        except psutil.NoSuchProcess:
            pass


def train_proc(home: Path, pids: list[int], *args: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-m", "grpo_tui.cli", "--home", str(home), "train", "--model", "bow",
                             "--device", "cpu", "--json", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    pids.append(proc.pid)
    return proc


def daemon(home: Path, pids: list[int]) -> psutil.Process:
    pid = spawn_daemon(home)
    pids.append(pid)
    return psutil.Process(pid)


def run_train_job(home: Path, steps: int) -> None:
    cfg = AutoConfig(steps=steps, model="bow", device="cpu")
    reply = ControlClient(home, timeout=10).request("run", job="train", config=request_config(cfg))
    assert reply["ok"], reply


def grpo(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([sys.executable, "-m", "grpo_tui.cli", "--home", str(home), *args],
                          capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, f"grpo {' '.join(args)} -> {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc


def test_second_trainer_on_the_same_run_folder_exits_1_naming_the_holder(home: Path, tmp_path: Path, env) -> None:
    data, run = dataset(tmp_path / "d.jsonl"), tmp_path / "run"
    first = train_proc(home, env, "--dataset", str(data), "--out", str(run), "--steps", "100000", "--save-every", "100000")
    wait_for(lambda: metric_lines(run) >= 1 or first.poll() is not None)
    assert first.poll() is None, first.communicate()[1]
    second = train_proc(home, env, "--dataset", str(data), "--out", str(run), "--steps", "1", "--resume")
    _, err = second.communicate(timeout=180)
    assert second.returncode == 1, err
    assert f"being trained by pid {first.pid}" in err
    assert lock_holder(run) == first.pid
    first.send_signal(signal.SIGTERM)
    out, err = first.communicate(timeout=120)
    assert first.returncode == 130, err
    stopped_at = orjson.loads(out.strip().splitlines()[-1])["step"]
    assert lock_holder(run) is None  # released with the run; the next trainer takes over
    third = train_proc(home, env, "--dataset", str(data), "--out", str(run), "--steps", "1", "--resume")
    out, err = third.communicate(timeout=180)
    assert third.returncode == 0, err
    assert orjson.loads(out.strip().splitlines()[-1])["start_step"] == stopped_at


def test_trainer_dies_with_the_host_that_started_it(home: Path, env) -> None:
    dataset(home / "auto" / "global.jsonl")
    host = daemon(home, env)
    run_train_job(home, steps=100000)
    trainer = wait_for(lambda: trainer_of(host))
    env.append(trainer.pid)
    wait_for(lambda: metric_lines(home / "auto" / "ckpts_global") >= 1)
    host.kill()  # SIGKILL: the host cannot stop its child itself
    wait_for(lambda: gone(trainer.pid), timeout=120)  # the parent-death signal ended it
    assert lock_holder(home / "auto" / "ckpts_global") is None


def test_new_host_ends_a_stale_trainer_before_training_the_level(home: Path, env) -> None:
    data, run = dataset(home / "auto" / "global.jsonl"), home / "auto" / "ckpts_global"
    # a trainer left over from a host that died (not a child of the new host, not tied to it)
    stale = train_proc(home, env, "--dataset", str(data), "--out", str(run), "--steps", "100000", "--save-every", "100000")
    wait_for(lambda: metric_lines(run) >= 1 or stale.poll() is not None)
    assert stale.poll() is None
    daemon(home, env)
    run_train_job(home, steps=3)
    record = wait_for(lambda: read_cycles(home), timeout=240)[-1]
    assert stale.poll() is not None  # ended before the new trainer started
    stale.communicate(timeout=30)
    assert record["stale"]["global"]["pid"] == stale.pid and record["stale"]["global"]["ended"] is True, record
    assert record["outcome"] == "ok", record
    trained = record["trained"]["global"]
    assert trained["from_step"] >= 1 and trained["to_step"] == trained["from_step"] + 3  # resumed its checkpoint


def test_stopped_train_job_records_the_steps_it_checkpointed(home: Path, env) -> None:
    dataset(home / "auto" / "global.jsonl")
    daemon(home, env)
    run_train_job(home, steps=100000)
    wait_for(lambda: metric_lines(home / "auto" / "ckpts_global") >= 2)
    grpo(home, "auto", "stop")
    record = wait_for(lambda: read_cycles(home), timeout=240)[-1]
    assert record["job"] == "train" and record["outcome"] == "stopped", record
    trained = record["trained"]["global"]
    assert trained["from_step"] == 0 and trained["to_step"] >= 2 and trained["stopped"] is True
    assert Path(trained["checkpoint"]).name == f"step_{trained['to_step']:06d}" and Path(trained["checkpoint"]).is_dir()


def test_shutdown_waits_for_the_job_and_records_it(home: Path, env) -> None:
    dataset(home / "auto" / "global.jsonl")
    host = daemon(home, env)
    run_train_job(home, steps=100000)
    wait_for(lambda: metric_lines(home / "auto" / "ckpts_global") >= 2)
    grpo(home, "auto", "shutdown")
    wait_for(lambda: gone(host.pid), timeout=60)
    records = read_cycles(home)
    assert len(records) == 1 and records[0]["job"] == "train" and records[0]["outcome"] == "stopped", records
    trained = records[0]["trained"]["global"]
    assert trained["from_step"] == 0 and trained["to_step"] >= 2
    assert (home / "auto" / "ckpts_global" / "checkpoints" / f"step_{trained['to_step']:06d}").is_dir()
