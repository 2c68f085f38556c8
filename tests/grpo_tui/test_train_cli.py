"""`grpo train` / `grpo eval` end to end: JSON summaries, errors and exit codes, exact resume after
SIGKILL (bow and the tiny HF model), graceful stop on SIGTERM."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest
import torch
from safetensors.torch import load_file

from grpo_tui.config import TrainConfig
from policy.metrics import TIMING_KEYS
from policy.settings import TrainSettings

ROOT = Path(__file__).resolve().parents[2]
WORDS = "sorted open loads requests pytest archive".split()


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def dataset(path: Path, n: int = 24) -> Path:
    """Groups whose best candidate names the word the prompt asks for."""
    lines = []
    for i in range(n):
        want = WORDS[i % len(WORDS)]
        cands = [{"text": f"use {w} here", "reward": 1.0 if w == want else 0.1 * j} for j, w in enumerate(WORDS[:4] if want in WORDS[:4] else WORDS[2:])]
        lines.append(json.dumps({"prompt": f"task {i}: we need {want}", "candidates": cands}))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def last_json(out: str) -> dict:
    return orjson.loads(out.strip().splitlines()[-1])


def test_trainer_defaults_agree_with_train_config() -> None:
    own = {f.name: f for f in dataclasses.fields(TrainSettings)}
    assert set(own) - set(TrainConfig.model_fields) == {"resume"}  # dataset and out are fields of both
    assert set(TrainConfig.model_fields) <= set(own)
    cfg = TrainConfig()
    for name, field in own.items():
        if name in ("dataset", "out", "resume"):
            continue
        default = field.default_factory() if field.default_factory is not dataclasses.MISSING else field.default
        assert default == getattr(cfg, name), name


def test_train_then_eval_with_json_summaries(grpo, home: Path, tmp_path: Path) -> None:
    data = dataset(tmp_path / "d.jsonl")
    code, out, err = grpo("train", "--dataset", str(data), "--steps", "12", "--lr", "0.05", "--preset", "aggressive",
                          "--val-dataset", str(data), "--val-interval", "6", "--save-every", "6", "--json")
    assert code == 0, err
    summary = last_json(out)
    assert summary["status"] == "ok" and summary["step"] == 12 and summary["val_pairwise_acc"] > 0.5
    assert Path(summary["checkpoint"]) == home / "checkpoints" / "step_000012"
    meta = json.loads((home / "checkpoints" / "step_000012" / "meta.json").read_text())
    assert meta["config"]["loss_type"] == "dapo" and meta["config"]["lr"] == 0.05  # preset under the flags
    assert len((home / "metrics.jsonl").read_text().splitlines()) == 12 and (home / "manifest.json").exists()
    code, out, err = grpo("eval", "--dataset", str(data), "--checkpoint", str(home), "--json")
    assert code == 0, err
    result = last_json(out)
    assert result["step"] == 12 and result["pairs"] > 0 and result["pairwise_acc"] == summary["val_pairwise_acc"]
    code, out, _ = grpo("eval", "--dataset", str(data), "--model", "bow", "--json")
    assert code == 0 and last_json(out)["pairwise_acc"] == 0.5


def test_errors_and_exit_codes(grpo, home: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "p", "candidates": [{"text": "a", "reward": 1}]}\n{"prompt": "q", "candidates": [{"text": "a", "reward": "lots"}]}\n')
    code, _, err = grpo("train", "--dataset", str(bad), "--steps", "1")
    assert code == 1 and f"error: {bad}:2: candidates[0].reward is not a finite number: 'lots'" in err
    code, _, err = grpo("train", "--dataset", str(bad), "--reward-weights", "tests", "--steps", "1")
    assert code == 2 and "not name=weight" in err
    code, _, err = grpo("train", "--steps", "1")
    assert code == 2 and "no dataset" in err
    data = dataset(tmp_path / "d.jsonl")
    assert grpo("train", "--dataset", str(data), "--steps", "1")[0] == 0
    code, _, err = grpo("train", "--dataset", str(data), "--steps", "1")
    assert code == 2 and "already holds a training run; pass --resume" in err
    code, out, _ = grpo("train", "--dataset", str(data), "--steps", "2", "--resume", "--json")
    assert code == 0 and (last_json(out)["start_step"], last_json(out)["step"]) == (1, 3)


def grpo_proc(home: Path, *args: str, env: dict[str, str] | None = None, **kw) -> subprocess.Popen:
    full = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "GRPO_HOME": str(home), **(env or {})}
    return subprocess.Popen([sys.executable, "-m", "grpo_tui.cli", "--home", str(home), *args], cwd=ROOT, env=full,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def comparable(path: Path) -> list[dict]:
    return [{k: v for k, v in json.loads(line).items() if k not in TIMING_KEYS} for line in path.read_text().splitlines()]


@pytest.mark.parametrize(
    ("model", "steps", "extra"),
    [
        ("bow", 20, ["--lr", "0.05", "--warmup-steps", "3", "--cosine", "--kl-adaptive", "--num-iterations", "2"]),
        ("tiny", 6, ["--lr", "0.003", "--lr-step", "2", "--kl-warmup", "3", "--kl-target", "0.05", "--num-iterations", "2"]),
    ],
)
def test_killed_and_resumed_equals_straight(grpo, home: Path, tmp_path: Path, model: str, steps: int, extra: list[str]) -> None:
    data = dataset(tmp_path / "d.jsonl")
    half = steps // 2
    common = ["train", "--dataset", str(data), "--model", model, "--deterministic", "--save-every", str(half), *extra]
    straight, broken = tmp_path / "straight", tmp_path / "broken"
    code, _, err = grpo(*common, "--out", str(straight), "--steps", str(steps))
    assert code == 0, err
    killed = grpo_proc(home, *common, "--out", str(broken), "--steps", str(steps), env={"GRPO_TEST_KILL_AFTER_SAVE": str(half)})
    _, err = killed.communicate(timeout=300)
    assert killed.returncode == -signal.SIGKILL, err
    assert [p.name for p in sorted((broken / "checkpoints").iterdir())] == [f"step_{half:06d}"]
    resumed = grpo_proc(home, *common, "--out", str(broken), "--steps", str(steps - half), "--resume", "--json")
    out, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err
    assert (last_json(out)["start_step"], last_json(out)["step"]) == (half, steps)
    resumed_recs, straight_recs = comparable(broken / "metrics.jsonl"), comparable(straight / "metrics.jsonl")
    diff = [(a["step"], k, a[k], b.get(k)) for a, b in zip(resumed_recs, straight_recs) for k in a if a[k] != b.get(k)]
    assert resumed_recs == straight_recs, diff
    final = f"checkpoints/step_{steps:06d}"
    name = "model.safetensors"
    a, b = load_file(str(straight / final / name)), load_file(str(broken / final / name))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    sa = torch.load(straight / final / "trainer_state.pt", weights_only=True)
    sb = torch.load(broken / final / "trainer_state.pt", weights_only=True)
    assert sa["data"] == sb["data"] and sa["kl_controller"] == sb["kl_controller"]
    for pa, pb in zip(sa["optimizer"]["state"].values(), sb["optimizer"]["state"].values()):
        assert torch.equal(pa["exp_avg"], pb["exp_avg"]) and torch.equal(pa["exp_avg_sq"], pb["exp_avg_sq"])


def test_sigterm_stops_after_the_step_with_a_checkpoint(home: Path, tmp_path: Path) -> None:
    data = dataset(tmp_path / "d.jsonl")
    proc = grpo_proc(home, "train", "--dataset", str(data), "--steps", "100000", "--save-every", "100000", "--json")
    metrics = home / "metrics.jsonl"
    deadline = time.monotonic() + 120
    while not (metrics.exists() and metrics.read_text().count("\n") >= 2):
        assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read() if proc.stderr else ""
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    summary = last_json(out)
    assert summary["status"] == "stopped" and 2 <= summary["step"] < 100000
    assert Path(summary["checkpoint"]).name == f"step_{summary['step']:06d}" and Path(summary["checkpoint"]).is_dir()


def test_eval_sweep_scores_every_kept_checkpoint(grpo, home: Path, tmp_path: Path) -> None:
    data, run = dataset(tmp_path / "d.jsonl"), tmp_path / "run"
    code, _, err = grpo("train", "--dataset", str(data), "--steps", "6", "--lr", "0.05", "--out", str(run),
                        "--save-every", "1", "--keep-checkpoints", "5", "--json")
    assert code == 0, err
    code, out, err = grpo("eval", "--sweep", str(run), "--dataset", str(data), "--json")
    assert code == 0, err
    result = last_json(out)
    assert result["run"] == str(run) and result["dataset"] == str(data)
    steps = [p["step"] for p in result["points"]]
    assert steps == [2, 3, 4, 5, 6]  # the newest 5 of 6 checkpoints were kept
    assert all(0 <= p["pairwise_acc"] <= 1 and p["pairs"] > 0 for p in result["points"])
    assert [Path(p["checkpoint"]).name for p in result["points"]] == [f"step_{s:06d}" for s in steps]
    code, out, err = grpo("eval", "--checkpoint", str(run / "checkpoints" / "step_000006"), "--dataset", str(data), "--json")
    assert code == 0, err
    single = last_json(out)
    assert single["pairwise_acc"] == result["points"][-1]["pairwise_acc"] and single["pairs"] == result["points"][-1]["pairs"]
    code, out, err = grpo("eval", "--sweep", str(run), "--dataset", str(data))  # the table
    assert code == 0, err
    assert "step" in out and "pairwise acc" in out and "0." in out
    code, _, err = grpo("eval", "--sweep", str(run), "--model", "bow", "--dataset", str(data))
    assert code == 2 and "--sweep" in err
    code, _, err = grpo("eval", "--sweep", str(tmp_path), "--dataset", str(data))
    assert code == 1 and "no checkpoints" in err


def test_eval_sweep_plot(grpo, home: Path, tmp_path: Path) -> None:
    pytest.importorskip("matplotlib", reason="--plot needs the plot extra (matplotlib)")
    data, run = dataset(tmp_path / "d.jsonl"), tmp_path / "run"
    assert grpo("train", "--dataset", str(data), "--steps", "2", "--out", str(run), "--save-every", "1", "--json")[0] == 0
    png = tmp_path / "sweep.png"
    code, _, err = grpo("eval", "--sweep", str(run), "--dataset", str(data), "--plot", str(png), "--json")
    assert code == 0, err
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
