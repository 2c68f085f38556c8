"""Auto mode end to end: a detached daemon on the embedded store, demo data, the bow policy.

Covers: >= 2 training cycles where the second continues the first's checkpoint, status from two
clients at once, a stop answered within 2 s, shutdown removing the socket, a killed trainer recorded
as a failed cycle after which the next cycle runs, a failing guard skipping the cycle, a client
of a dead daemon saying so, and a cycle whose `train:` section trains the tiny LM online on the
prompts it has just mined (plus the `grpo train` arguments a section turns into), and a LoRA cycle
whose `on_checkpoint` hook exports the checkpoint into serve/<level>/ and runs a command.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import orjson
import psutil
import pytest
import yaml

from grpo_tui.config import AutoConfig
from grpo_tui.control import ControlClient, DaemonNotRunning
from grpo_tui.cycle import train_args
from testkit import trainer_of, wait_for  # tests/testkit.py

pytestmark = pytest.mark.timeout(300)


def grpo(home: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([sys.executable, "-m", "grpo_tui.cli", "--home", str(home), *args],
                          capture_output=True, text=True, timeout=120)
    if check and proc.returncode != 0:
        raise AssertionError(f"grpo {' '.join(args)} -> {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


def status(home: Path) -> dict:
    return ControlClient(home, timeout=10).request("status")


def trained_cycles(home: Path) -> list[dict]:
    return [c for c in status(home)["cycles"] if c["outcome"] == "ok" and c.get("trained")]


@pytest.fixture()
def auto_home(tmp_path_factory):
    home = Path(tmp_path_factory.mktemp("auto")) / "h"
    grpo(home, "demo", "seed", "--actions", "600")
    yield home
    if (home / "control.sock").exists():
        grpo(home, "auto", "shutdown", check=False)
    grpo(home, "store", "stop", check=False)


def test_detached_daemon_runs_cycles_that_continue_each_other(auto_home: Path) -> None:
    home = auto_home
    grpo(home, "guard", "--min-free-gb", "0", "--min-ram-gb", "0")
    grpo(home, "auto", "start", "--detach", "--period-sec", "1", "--min-groups", "5", "--steps", "3", "--model", "bow")
    first = wait_for(lambda: trained_cycles(home))[0]
    assert first["trained"]["global"]["from_step"] == 0 and first["trained"]["global"]["to_step"] == 3
    grpo(home, "demo", "seed", "--actions", "400", "--seed", "7")  # the agent keeps logging
    second = wait_for(lambda: trained_cycles(home)[1:])[0]
    assert second["cycle"] > first["cycle"]
    assert second["trained"]["global"]["from_step"] == 3 and second["trained"]["global"]["to_step"] == 6

    replies: list[dict] = []
    clients = [threading.Thread(target=lambda: replies.append(status(home))) for _ in range(2)]
    for t in clients:
        t.start()
    for t in clients:
        t.join(30)
    assert len(replies) == 2 and all(r["ok"] for r in replies)

    reply = orjson.loads(grpo(home, "auto", "status", "--json").stdout.strip().splitlines()[-1])
    numbers = [c["cycle"] for c in reply["cycles"]]
    assert first["cycle"] in numbers and second["cycle"] in numbers
    assert "unavailable" in reply["stats"]["gpus"] or reply["stats"]["gpus"]["devices"]

    stop = orjson.loads(grpo(home, "auto", "stop", "--json").stdout.strip().splitlines()[-1])
    assert stop["ok"] and stop["state"] in ("stopping", "idle")
    # the request itself answers while the trainer child runs (the client gives up after its timeout)
    assert ControlClient(home, timeout=10.0).request("stop")["ok"]

    pid = reply["pid"]
    grpo(home, "auto", "shutdown")
    assert not (home / "control.sock").exists()
    wait_for(lambda: not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE, timeout=30)
    with pytest.raises(DaemonNotRunning, match="no scheduler is running"):
        status(home)


def test_killed_trainer_fails_the_cycle_and_the_next_one_runs(auto_home: Path) -> None:
    home = auto_home
    grpo(home, "guard", "--min-free-gb", "0", "--min-ram-gb", "0")
    grpo(home, "auto", "start", "--detach", "--period-sec", "1", "--min-groups", "5", "--steps", "100000",
         "--model", "bow")
    daemon = psutil.Process(status(home)["pid"])

    victim = wait_for(lambda: trainer_of(daemon))
    os.kill(victim.pid, signal.SIGKILL)  # what the kernel's OOM killer does
    failed = wait_for(lambda: [c for c in status(home)["cycles"] if c["outcome"] == "failed"])[0]
    assert "killed by SIGKILL" in failed["reason"]
    # the scheduler goes on: the groups that trainer never finished are still pending, so the next
    # cycle trains them in a new child
    successor = wait_for(lambda: (t := trainer_of(daemon)) is not None and t.pid != victim.pid and t)
    assert successor.is_running()
    assert status(home)["cycles_run"] >= failed["cycle"]
    assert ControlClient(home).request("stop")["ok"]


def test_failing_guard_skips_the_cycle(auto_home: Path) -> None:
    home = auto_home
    grpo(home, "guard", "--min-free-gb", "1000000000", check=False)
    grpo(home, "auto", "start", "--detach", "--period-sec", "1", "--model", "bow")
    skipped = wait_for(lambda: [c for c in status(home)["cycles"] if c["outcome"] == "skipped"])[0]
    assert skipped["reason"].startswith("guard: disk") and not skipped["trained"]
    assert not (home / "auto" / "ckpts_global").exists()


def test_online_train_section_trains_on_the_prompts_just_mined(auto_home: Path) -> None:
    home = auto_home
    grpo(home, "guard", "--min-free-gb", "0", "--min-ram-gb", "0")
    config = home.parent / "auto.yaml"
    config.write_text(yaml.safe_dump({
        "period_sec": 3600, "min_groups": 5, "model": "tiny", "device": "cpu",
        "train": {"reward_fn": ["builtin:format"], "format_regex": "[aeiou]", "num_generations": 2,
                  "prompts_per_step": 2, "max_new_tokens": 8, "steps": 2, "log_samples": 1},
    }))
    # --steps 50 is the top-level shorthand: the section's steps: 2 wins; --train-mode sets the section's mode
    grpo(home, "auto", "start", "--detach", "--config-file", str(config), "--train-mode", "online", "--steps", "50")
    cycle = wait_for(lambda: [c for c in status(home)["cycles"] if c["outcome"] != "skipped"])[0]
    assert cycle["outcome"] == "ok", cycle
    assert cycle["trained"]["global"]["from_step"] == 0 and cycle["trained"]["global"]["to_step"] == 2
    assert ControlClient(home).request("stop")["ok"]
    ckpt = Path(cycle["trained"]["global"]["checkpoint"])
    assert ckpt.name == "step_000002" and (ckpt / "meta.json").exists()

    section = yaml.safe_load((home / "auto" / "train_global.yaml").read_text())
    assert section == {"online": True, "reward_fn": ["builtin:format"], "format_regex": "[aeiou]", "num_generations": 2,
                       "prompts_per_step": 2, "max_new_tokens": 8, "steps": 2, "log_samples": 1}
    run = home / "auto" / "ckpts_global"
    records = [orjson.loads(line) for line in (run / "metrics.jsonl").read_bytes().splitlines()]
    assert [r["step"] for r in records] == [1, 2]
    for rec in records:
        assert 0 < rec["completion_len_mean"] <= 8 and rec["reward/format_mean"] is not None
    mined = {orjson.loads(line)["prompt"] for line in (home / "auto" / "global.jsonl").read_bytes().splitlines()}
    samples = [orjson.loads(line) for line in (run / "samples.jsonl").read_bytes().splitlines()]
    assert samples and {s["prompt"] for s in samples} <= mined  # the prompts of the groups just mined


def test_train_args_without_a_section_are_the_plain_offline_flags(tmp_path: Path) -> None:
    cfg = AutoConfig(steps=7, lr=0.01, lr_step=5, kl_target=0.1)
    assert train_args(tmp_path, cfg, "patch") == [
        "train", "--dataset", str(tmp_path / "auto" / "patch.jsonl"), "--out", str(tmp_path / "auto" / "ckpts_patch"),
        "--model", "bow", "--device", "auto", "--steps", "7", "--resume", "--lr", "0.01", "--beta", "0.04",
        "--kl-warmup", "0", "--json", "--val-split", "0.1", "--val-interval", "1", "--lr-step", "5", "--lr-gamma", "0.5", "--kl-target", "0.1"]
    assert not (tmp_path / "auto" / "train_patch.yaml").exists()


def test_train_args_drop_the_top_level_flags_a_section_key_overrides(tmp_path: Path) -> None:
    cfg = AutoConfig.model_validate({"steps": 7, "lr": 0.01, "model": "tiny", "lr_gamma": 0.9,
                                     "train": {"mode": "online", "steps": 2, "lr_step": 4, "reward_fn": ["builtin:format"]}})
    args = train_args(tmp_path, cfg, "global")
    path = tmp_path / "auto" / "train_global.yaml"
    assert args[-2:] == ["--config-file", str(path)]
    assert "--steps" not in args and "--lr-step" not in args and "--online" not in args
    flags = {a: b for a, b in zip(args, args[1:]) if a.startswith("--") and not b.startswith("--")}
    assert flags["--lr"] == "0.01" and flags["--model"] == "tiny" and flags["--lr-gamma"] == "0.9"  # not overridden: kept
    assert yaml.safe_load(path.read_text()) == {"online": True, "steps": 2, "lr_step": 4, "reward_fn": ["builtin:format"]}
    train_args(tmp_path, AutoConfig(), "global")  # the section gone: no stale file beside the run
    assert not path.exists()
    preset = train_args(tmp_path, AutoConfig.model_validate({"train": {"preset": "aggressive", "lora_r": 4}}), "global")
    assert preset[preset.index("--preset") + 1] == "aggressive" and yaml.safe_load(path.read_text()) == {"lora_r": 4}


def test_train_args_forward_a_multi_process_section_to_the_trainer(tmp_path: Path) -> None:
    from grpo_tui.config import TrainConfig, load_config

    cfg = AutoConfig.model_validate({"train": {"nproc": 2, "dist_timeout": 120}})
    args = train_args(tmp_path, cfg, "signature")
    path = tmp_path / "auto" / "train_signature.yaml"
    assert args[-2:] == ["--config-file", str(path)] and "--nproc" not in args  # the file, not a flag
    assert yaml.safe_load(path.read_text()) == {"nproc": 2, "dist_timeout": 120.0}
    trained = load_config(TrainConfig, config_file=path)  # what `grpo train --config-file` builds from it
    assert (trained.nproc, trained.dist_timeout, trained.fsdp) == (2, 120.0, False)


def test_cycle_records_and_auto_status_carry_the_processes_a_level_trained_on() -> None:
    from grpo_tui.commands.auto import _quality
    from grpo_tui.cycle import _trained

    summary = {"start_step": 0, "step": 4, "val_pairwise_acc": 0.75}
    two = _trained(summary, AutoConfig.model_validate({"train": {"nproc": 2}}))
    assert (two["from_step"], two["to_step"], two["world_size"]) == (0, 4, 2) and _quality(two) == " acc 0.75 world 2"
    one = _trained(summary, AutoConfig())
    assert one["world_size"] == 1 and _quality(one) == " acc 0.75"  # one process: nothing extra in `auto status`
    assert _quality({"from_step": 0, "to_step": 4}) == ""  # a record from before world_size was kept


def test_lora_cycle_exports_the_checkpoint_and_runs_the_serving_hook(auto_home: Path) -> None:
    home = auto_home
    grpo(home, "guard", "--min-free-gb", "0", "--min-ram-gb", "0")
    marker = home.parent / "served.txt"
    config = home.parent / "auto.yaml"
    config.write_text(yaml.safe_dump({
        "period_sec": 3600, "min_groups": 5, "model": "tiny", "device": "cpu", "steps": 2, "train": {"lora_r": 4},
        "on_checkpoint": {"export": True, "dtype": "fp32",
                          "command": f'test -f "$GRPO_EXPORT_DIR/SHA256SUMS" && printf "%s %s" "$GRPO_LEVEL" "$GRPO_STEP" > {marker}'},
    }))
    grpo(home, "auto", "start", "--detach", "--config-file", str(config))
    cycle = wait_for(lambda: [c for c in status(home)["cycles"] if c["outcome"] != "skipped"])[0]
    assert ControlClient(home).request("stop")["ok"]
    assert cycle["outcome"] == "ok", cycle
    assert cycle["trained"]["global"]["to_step"] == 2
    serve = home / "serve" / "global"
    assert cycle["serve"] == {"global": {"ok": True, "step": 2, "export": str(serve / "step_000002"), "kind": "merged"}}
    assert marker.read_text() == "global 2"
    assert os.readlink(serve / "current") == "step_000002"
    assert (serve / "current" / "config.json").exists() and (serve / "current" / "model.safetensors").exists()
    assert subprocess.run(["sha256sum", "-c", "SHA256SUMS"], cwd=serve / "current", capture_output=True).returncode == 0
    assert "exported" in (home / "auto" / "logs" / f"cycle_{cycle['cycle']:05d}_export_global.log").read_text()


def test_serving_hook_failures_and_timeouts_are_reported_not_raised(tmp_path: Path) -> None:
    from grpo_tui.cycle import SubprocessCycleRunner

    runner, stop = SubprocessCycleRunner(tmp_path), threading.Event()
    env = {**os.environ, "GRPO_LEVEL": "patch"}
    assert runner._run_hook('echo "$GRPO_LEVEL"', env, 30, "ok", stop) is None
    assert (tmp_path / "auto" / "logs" / "ok.log").read_text() == "patch\n"
    assert runner._run_hook("echo nope >&2; exit 3", env, 30, "bad", stop) == "exited with code 3: nope"
    assert runner._run_hook("sleep 60", env, 0.5, "slow", stop).startswith("timed out after 0.5 s")
    with pytest.raises(ValueError, match="on_checkpoint.export serves a language model"):
        AutoConfig.model_validate({"on_checkpoint": {"export": True}})  # the default model is bow


def test_point_current_and_prune_keep_current_plus_the_newest_exports(tmp_path: Path) -> None:
    from grpo_tui.cycle import point_current, prune_exports

    for step in (1, 2, 3, 4, 5):
        (tmp_path / f"step_{step:06d}").mkdir()
    point_current(tmp_path, "step_000002")
    point_current(tmp_path, "step_000003")  # replaced in one step, no leftover temp link
    prune_exports(tmp_path, keep=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["current", "step_000003", "step_000004", "step_000005"]
    prune_exports(tmp_path, keep=0)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["current", "step_000003"]
    assert os.readlink(tmp_path / "current") == "step_000003"


def test_a_manual_mine_does_not_take_the_auto_cycles_entries(store, home: Path) -> None:
    import threading

    from grpo_tui.cli import main
    from grpo_tui.cycle import SubprocessCycleRunner

    for i in range(4):
        store.client.xadd("rl_actions", {"data": orjson.dumps({"action_type": "code_edit", "reward": i / 4,
                                                                "parameters": {"query": "Speed up the parser"},
                                                                "result": {"output": f"answer {i}"}})})
    assert main(["--home", str(home), "mine", "--since-cursor", "--out", str(home / "manual.jsonl")]) == 0
    summary = SubprocessCycleRunner(home)._mine(AutoConfig(), threading.Event(), 1)
    assert summary["entries_read"] == 4  # the cycle mines with its own `auto` cursor (cursor.json)
    assert orjson.loads((home / "cursor.json").read_bytes()) == orjson.loads((home / "cursor.manual.json").read_bytes())


def test_a_daemon_that_exits_at_start_shows_its_log(tmp_path: Path) -> None:
    import fcntl

    home = tmp_path / "h"
    (home / "auto").mkdir(parents=True)
    (home / "auto" / "daemon.log").write_text("a line from an earlier start\n")
    with open(home / "scheduler.lock", "a+") as held:  # as if another host held the home
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        proc = grpo(home, "auto", "start", "--detach", check=False)
    assert proc.returncode == 1
    assert "exited at start (code 1)" in proc.stderr and "its last lines:" in proc.stderr
    assert "another scheduler host" in proc.stderr  # the daemon's own reason, from daemon.log
    assert "earlier start" not in proc.stderr  # only what this start wrote


def test_auto_status_and_the_console_say_which_job_runs_at_which_step(auto_home: Path) -> None:
    """A long bow training inside a real cycle: `grpo auto status` (and the console's auto panel, from the
    same scheduler status and the level's files) name the job, its elapsed time, step x of y and time left."""
    from grpo_tui.console.source import LiveSource
    from grpo_tui.console.widgets import AutoPanel, View

    home = auto_home
    grpo(home, "guard", "--min-free-gb", "0", "--min-ram-gb", "0")
    grpo(home, "auto", "start", "--detach", "--period-sec", "3600", "--min-groups", "5", "--steps", "200000", "--model", "bow")
    metrics = home / "auto" / "ckpts_global" / "metrics.jsonl"
    wait_for(lambda: metrics.exists() and metrics.read_bytes().count(b"\n") >= 3)
    reply = status(home)
    assert reply["job"] == "cycle" and reply["phase"] == "train global" and reply["job_running_for"] > 0
    out = grpo(home, "auto", "status").stdout
    line = next(ln for ln in out.splitlines() if ln.startswith("running: "))
    assert line.startswith("running: cycle: train global · step ") and "/200000 · for " in line and " left" in line
    assert "none finished yet" in out  # the first cycle is still running: no empty table
    running = orjson.loads(grpo(home, "auto", "status", "--json").stdout.strip().splitlines()[-1])["running"]
    assert running["level"] == "global" and running["start_step"] == 0 and running["target_step"] == 200000
    assert 0 < running["step"] < 200000 and running["left"] > 0

    snap = LiveSource(home).poll()
    text = AutoPanel().build(snap, View()).plain
    job = next(ln for ln in text.splitlines() if ln.startswith("job"))
    assert "cycle: train global · step " in job and "/200000" in job and " left" in job
    assert ControlClient(home).request("stop")["ok"]
