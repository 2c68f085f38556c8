"""policy.trainer: it learns (bow and the tiny HF LM), guards against non-finite steps, resumes, filters."""

from __future__ import annotations

import importlib.util
import json
import logging
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from synthetic import write_byte_groups
from kernels import LOSS_TYPES
from policy.backends import load_policy
from policy.data import load_dataset
from policy.errors import SettingsError, TrainingDiverged
from policy.evaluate import pairwise_accuracy
from policy.metrics import KEYS, read_metrics
from policy.settings import Hooks, TrainSettings
from policy.trainer import train


def settings(data: Path, out: Path, **kw) -> TrainSettings:
    kw.setdefault("model", "bow")
    kw.setdefault("bow_buckets", 1 << 12)
    return TrainSettings(dataset=data, out=out, **kw)


def test_bow_learns_prompt_dependent_preferences(topic_data: tuple[Path, Path], tmp_path: Path) -> None:
    train_path, heldout = topic_data
    start, _ = pairwise_accuracy(load_policy("bow", out=tmp_path), load_dataset(heldout).groups)
    summary = train(settings(train_path, tmp_path / "run", steps=60, lr=0.05, val_dataset=heldout, val_interval=20))
    records = read_metrics(tmp_path / "run" / "metrics.jsonl")
    accs = [r["val_pairwise_acc"] for r in records if "val_pairwise_acc" in r]
    assert start == 0.5 and len(accs) == 3
    assert summary["val_pairwise_acc"] == accs[-1] >= 0.8, accs
    assert len(records) == 60 and all(set(KEYS) <= set(r) for r in records)
    assert summary["status"] == "ok" and summary["step"] == 60 and Path(summary["checkpoint"]).name == "step_000060"


def test_tiny_hf_model_learns_a_byte_preference(byte_data: tuple[Path, Path], tmp_path: Path) -> None:
    train_path, heldout = byte_data
    out = tmp_path / "run"
    base = load_policy("tiny", out=out)  # builds <out>/models/tiny, which the trainer then loads
    start, pairs = pairwise_accuracy(base, load_dataset(heldout).groups)
    summary = train(settings(train_path, out, model="tiny", steps=20, lr=3e-3, val_dataset=heldout))
    assert pairs == 96 and summary["model"]["base"] == str((out / "models" / "tiny").absolute())
    assert summary["val_pairwise_acc"] >= max(0.8, start + 0.2), (start, summary["val_pairwise_acc"])
    rec = read_metrics(out / "metrics.jsonl")[-1]
    assert rec["entropy"] is not None and rec["kl"] is not None and rec["tokens_per_s"] > 0
    assert (Path(summary["checkpoint"]) / "model.safetensors").exists() and (Path(summary["checkpoint"]) / "tokenizer.json").exists()


def test_an_injected_inf_loss_is_skipped_and_counted(topic_data: tuple[Path, Path], tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    hit: list[int] = []

    def poison(step: int, gid: int, loss: torch.Tensor) -> torch.Tensor:
        if step == 3 and not hit:
            hit.append(gid)
            return loss * float("inf")
        return loss

    out = tmp_path / "run"
    with caplog.at_level(logging.WARNING, logger="policy"):
        summary = train(settings(topic_data[0], out, steps=4, lr=0.05, save_every=1, keep_checkpoints=5), Hooks(loss_hook=poison))
    recs = read_metrics(out / "metrics.jsonl")
    assert [r["nan_skips"] for r in recs] == [0, 0, 1, 1] and summary["nan_skips"] == 1
    assert recs[2]["loss"] is None and recs[2]["grad_norm"] is None and recs[3]["loss"] is not None
    w = {s: load_file(str(out / "checkpoints" / f"step_00000{s}" / "model.safetensors"))["weight"] for s in (2, 3, 4)}
    assert torch.equal(w[2], w[3]) and not torch.equal(w[3], w[4])  # step 3 made no update
    assert f"step 3: non-finite loss or gradient; step skipped (groups {hit[0]} (" in caplog.text


def test_k_non_finite_steps_in_a_row_stop_training(topic_data: tuple[Path, Path], tmp_path: Path) -> None:
    hooks = Hooks(loss_hook=lambda step, gid, loss: loss * float("nan") if step >= 2 else loss)
    with pytest.raises(TrainingDiverged, match=r"3 non-finite steps in a row \(last at step 4, groups \d+ \(.*train.jsonl:\d+\)"):
        train(settings(topic_data[0], tmp_path / "run", steps=10, max_nan_skips=3), hooks)
    assert [r["nan_skips"] for r in read_metrics(tmp_path / "run" / "metrics.jsonl")] == [0, 1, 2, 3]


def test_num_iterations_reuses_the_batch_with_old_logprobs(topic_data: tuple[Path, Path], tmp_path: Path) -> None:
    train(settings(topic_data[0], tmp_path / "run", steps=3, lr=0.5, num_iterations=3, eps_low=0.05, eps_high=0.05, kl_warmup=2, kl_target=0.1))
    recs = read_metrics(tmp_path / "run" / "metrics.jsonl")
    assert any(r["clip_frac_low"] > 0 or r["clip_frac_high"] > 0 for r in recs)  # ratios moved away from 1
    assert [r["kl_coef"] for r in recs] == [0.0, 0.05, 0.1]
    assert recs[0]["tokens"] == 3 * 16  # 4 groups x 4 candidates, 3 passes


@pytest.mark.parametrize("loss_type", LOSS_TYPES)
def test_every_loss_type_trains(topic_data: tuple[Path, Path], tmp_path: Path, loss_type: str) -> None:
    summary = train(settings(topic_data[0], tmp_path / "run", steps=2, loss_type=loss_type, ratio_level="sequence", adv_baseline="loo"))
    assert summary["loss"] is not None and summary["nan_skips"] == 0


def test_zero_variance_groups_are_dropped_and_counted(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    lines = []
    for i in range(12):
        rewards = [0.5, 0.5] if i % 2 else [0.0, 1.0]
        lines.append(json.dumps({"prompt": f"prompt {i}", "candidates": [{"text": f"a {i}", "reward": rewards[0]}, {"text": f"b {i}", "reward": rewards[1]}]}))
    path.write_text("\n".join(lines) + "\n")
    summary = train(settings(path, tmp_path / "run", steps=6, groups_per_step=2))
    recs = read_metrics(tmp_path / "run" / "metrics.jsonl")
    assert all(r["groups"] == 2 for r in recs) and summary["groups_filtered"] == sum(r["groups_filtered"] for r in recs) > 0


def test_resume_falls_back_from_a_truncated_newest_checkpoint(topic_data: tuple[Path, Path], tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    out = tmp_path / "run"
    train(settings(topic_data[0], out, steps=6, save_every=3))
    weights = out / "checkpoints" / "step_000006" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    with caplog.at_level(logging.WARNING, logger="policy"):
        summary = train(settings(topic_data[0], out, steps=2, resume=True))
    assert "checkpoint step_000006 is corrupt" in caplog.text
    assert summary["start_step"] == 3 and summary["step"] == 5
    assert [r["step"] for r in read_metrics(out / "metrics.jsonl")] == [1, 2, 3, 4, 5]


def test_a_fresh_run_refuses_an_out_dir_holding_a_run_and_the_guard_seam_runs_first(topic_data: tuple[Path, Path], tmp_path: Path) -> None:
    out = tmp_path / "run"

    def refuse() -> None:
        raise RuntimeError("guard says no")

    with pytest.raises(RuntimeError, match="guard says no"):
        train(settings(topic_data[0], out, steps=2), Hooks(before_train=refuse))
    assert not (out / "metrics.jsonl").exists() and not (out / "manifest.json").exists()
    train(settings(topic_data[0], out, steps=1))
    with pytest.raises(SettingsError, match="already holds a training run; pass --resume"):
        train(settings(topic_data[0], out, steps=1))
    with pytest.raises(SettingsError, match="choose one"):
        train(settings(topic_data[0], tmp_path / "other", lr_step=2, cosine=True))


def test_a_changed_dataset_on_resume_restarts_the_data_order(topic_data: tuple[Path, Path], tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    out = tmp_path / "run"
    train(settings(topic_data[0], out, steps=2))
    other = write_byte_groups(tmp_path / "other.jsonl", 8, seed=3)
    with caplog.at_level(logging.INFO, logger="policy"):
        summary = train(settings(other, out, steps=1, resume=True))
    assert "dataset changed since step_000002" in caplog.text and summary["step"] == 3
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["start_step"] == 2 and manifest["datasets"]["train"] == summary["dataset_fingerprint"]


@pytest.mark.skipif(importlib.util.find_spec("peft") is None, reason="peft not installed (the 'lora' extra)")
def test_a_lora_run_checkpoints_only_the_adapter_and_resumes_from_it(byte_data: tuple[Path, Path], tmp_path: Path) -> None:
    out = tmp_path / "run"
    summary = train(settings(byte_data[0], out, model="tiny", lora_r=4, steps=2, lr=1e-2))
    ckpt_dir = Path(summary["checkpoint"])
    assert {"adapter_config.json", "adapter_model.safetensors"} <= {p.name for p in (ckpt_dir / "adapter").iterdir()}
    assert not (ckpt_dir / "model.safetensors").exists()
    assert all("lora_" in k for k in load_file(str(ckpt_dir / "adapter" / "adapter_model.safetensors")))
    assert json.loads((ckpt_dir / "meta.json").read_text())["policy"]["lora_r"] == 4
    again = train(settings(byte_data[0], out, model="tiny", lora_r=4, steps=1, resume=True))
    assert (again["start_step"], again["step"]) == (2, 3)
