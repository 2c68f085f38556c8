"""policy.tracking: `--report-to` mirrors every metrics record; a missing package fails at start."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import pytest

from policy.errors import PolicyError
from policy.settings import TrainSettings
from policy.tracking import Tracker, open_tracker, scalars
from policy.trainer import Trainer, train


def test_scalars_keep_finite_numbers_only() -> None:
    rec = {"step": 3, "timestamp": 1.0, "loss": 0.5, "kl": None, "nan_skips": 0, "ok": True, "grad_norm": float("inf"), "reward/tests_mean": 1}
    assert scalars(rec) == {"loss": 0.5, "nan_skips": 0.0, "reward/tests_mean": 1.0}


def test_none_is_a_no_op_and_unknown_kinds_fail(tmp_path: Path) -> None:
    assert type(open_tracker("none", tmp_path, {})) is Tracker
    with pytest.raises(PolicyError, match="unknown --report-to"):
        open_tracker("mlflow", tmp_path, {})


def test_tensorboard_gets_every_logged_record(topic_data: tuple[Path, Path], tmp_path: Path) -> None:
    pytest.importorskip("tensorboard", reason="--report-to tensorboard needs the tensorboard extra (pip install 'grpo-tui[tensorboard]')")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    train_path, val_path = topic_data
    out = tmp_path / "run"
    s = TrainSettings(dataset=train_path, out=out, model="bow", steps=6, lr=0.05, val_dataset=val_path, val_interval=3, report_to="tensorboard")
    train(s)
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    acc = EventAccumulator(str(out / "tensorboard"))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    assert {"loss", "reward_mean", "kl", "entropy", "val_pairwise_acc"} <= tags and "step" not in tags
    for tag in ("loss", "reward_mean"):
        events = acc.Scalars(tag)
        assert [e.step for e in events] == [r["step"] for r in records] == list(range(1, 7))
        assert [e.value for e in events] == pytest.approx([r[tag] for r in records], rel=2**-23)  # stored as float32
    assert [e.step for e in acc.Scalars("val_pairwise_acc")] == [3, 6]


def test_resumed_run_replaces_events_past_its_checkpoint(topic_data: tuple[Path, Path], tmp_path: Path) -> None:
    pytest.importorskip("tensorboard", reason="--report-to tensorboard needs the tensorboard extra (pip install 'grpo-tui[tensorboard]')")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "run"
    base = dict(dataset=topic_data[0], out=out, model="bow", lr=0.05, report_to="tensorboard", save_every=2)
    train(TrainSettings(**base, steps=4))
    shutil.rmtree(out / "checkpoints" / "step_000004")  # as if killed after step 4 was logged, before its checkpoint
    train(TrainSettings(**base, steps=3, resume=True))  # from step 2: steps 3..5
    acc = EventAccumulator(str(out / "tensorboard"))
    acc.Reload()
    steps = [e.step for e in acc.Scalars("loss")]
    assert steps == [1, 2, 3, 4, 5]  # purged at 3, not duplicated


@pytest.mark.skipif(importlib.util.find_spec("wandb") is not None, reason="wandb is installed: the missing-package error cannot happen")
def test_missing_wandb_fails_at_start(topic_data: tuple[Path, Path], tmp_path: Path) -> None:
    s = TrainSettings(dataset=topic_data[0], out=tmp_path / "run", model="bow", steps=1, report_to="wandb")
    with pytest.raises(PolicyError, match=r"pip install 'grpo-tui\[wandb\]'"):
        Trainer(s)
    assert not (tmp_path / "run" / "metrics.jsonl").exists()


@pytest.mark.skipif(importlib.util.find_spec("tensorboard") is not None, reason="tensorboard is installed: the missing-package error cannot happen")
def test_missing_tensorboard_fails_at_start(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match=r"pip install 'grpo-tui\[tensorboard\]'"):
        open_tracker("tensorboard", tmp_path, {})
