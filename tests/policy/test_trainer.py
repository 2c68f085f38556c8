"""policy.trainer: it learns (bow and the tiny HF LM), guards against non-finite steps, resumes, filters."""

from __future__ import annotations

import importlib.util
import json
import math
import statistics
import logging
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from synthetic import write_byte_groups
from kernels import LOSS_TYPES
from policy.backends import DEFAULT_LR, load_policy
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
    eps = {"eps_high": 5.0} if loss_type == "cispo" else {}  # CISPO caps its weight at eps_high itself (TRL's 5)
    summary = train(settings(topic_data[0], tmp_path / "run", steps=2, loss_type=loss_type, ratio_level="sequence", adv_baseline="loo", **eps))
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


def _trl_step_loss(groups: list[list[float]], order: list[int], micro: int, loss_type: str) -> float:
    """float64 re-implementation of TRL's GRPOTrainer._compute_loss for one on-policy step without KL
    (ratio exp(logp - logp.detach()) = 1, so the per-token loss is -A_i on each token of candidate i),
    with bow's one token per candidate and TRL's unbiased group std (eps 1e-4). The baseline is the
    group's median (a mean baseline makes every group's advantages sum to 0, and so every loss 0). bnpo:
    each micro-batch's sum / its own token count / the number of micro-batches; dapo: the step's sum /
    the step's tokens."""
    def advantages(r: list[float]) -> list[float]:
        mean, median = math.fsum(r) / len(r), statistics.median(r)
        std = math.sqrt(math.fsum((x - mean) ** 2 for x in r) / (len(r) - 1))
        return [(x - median) / (std + 1e-4) for x in r]

    batches = [order[i : i + micro] for i in range(0, len(order), micro)]
    per_token = [[-a for g in mb for a in advantages(groups[g])] for mb in batches]  # one token per candidate
    if loss_type == "bnpo":
        return math.fsum(math.fsum(t) / len(t) / len(batches) for t in per_token)
    return math.fsum(x for t in per_token for x in t) / sum(len(t) for t in per_token)


@pytest.mark.parametrize("loss_type", ["bnpo", "dapo"])
def test_bnpo_normalises_each_micro_batch_by_its_own_tokens_as_trl(tmp_path: Path, loss_type: str) -> None:
    """Two micro-batches of two groups (grad_accum 2) whose token counts differ: the trainer's step loss
    equals TRL's formula; bnpo and dapo then differ (they agree only with one micro-batch)."""
    groups = [[0.9, 0.1], [0.0, 0.2, 1.0], [0.3, 0.5, 0.6, 1.0], [1.0, 0.0, 0.0, 0.1, 0.4]]
    data = tmp_path / "g.jsonl"
    data.write_text("".join(json.dumps({"prompt": f"prompt number {i} about things",
                                        "candidates": [{"text": f"answer {i} {j}", "reward": r} for j, r in enumerate(rs)]}) + "\n"
                            for i, rs in enumerate(groups)))
    order: list[int] = []

    def record(step: int, index: int, loss: torch.Tensor) -> torch.Tensor:
        order.append(index)
        return loss

    train(settings(data, tmp_path / "run", steps=1, groups_per_step=2, grad_accum=2, beta=0.0, loss_type=loss_type,
                   adv_baseline="median", adv_clip=None), Hooks(loss_hook=record))
    (rec,) = read_metrics(tmp_path / "run" / "metrics.jsonl")
    assert sorted(order) == [0, 1, 2, 3]
    expected = _trl_step_loss(groups, order, 2, loss_type)
    other = _trl_step_loss(groups, order, 2, "dapo" if loss_type == "bnpo" else "bnpo")
    # fp32 error model: each group loss is a sum of <= 5 fp32 terms |A| <= 3 over a normaliser, the step
    # sums 4 of them: |error| <~ 14 terms * 3 * 2**-24 * a few, far below 1e-5; the two formulas differ by > 1e-2.
    assert abs(rec["loss"] - expected) < 1e-5, (rec["loss"], expected)
    assert abs(expected - other) > 1e-2


def test_micro_batches_split_a_group_but_not_its_loss(byte_data: tuple[Path, Path], tmp_path: Path) -> None:
    """--micro-batch-size 1: one forward/backward per candidate, the same step loss as the whole group.

    The losses differ only by the fp32 rounding of GEMMs over other row counts (a few ulps of each logit on
    this 64-wide model, about 1e-6 relative of the loss): 1e-5 relative is ten times that.
    """
    train_path, _ = byte_data
    losses = []
    for name, mbs in (("whole", None), ("micro", 1)):
        train(settings(train_path, tmp_path / name, model="tiny", steps=2, lr=3e-3, micro_batch_size=mbs))
        losses.append([r["loss"] for r in read_metrics(tmp_path / name / "metrics.jsonl")])
    for whole, micro in zip(*losses):
        assert abs(whole - micro) <= 1e-5 * max(abs(whole), 1e-3), losses


def test_val_split_holds_out_prompts_and_quality_metrics_rise(tmp_path: Path) -> None:
    """--val-split: a held-out split by prompt hash; held-out pairwise accuracy and the expected reward
    under the policy are logged and beat the untrained (uniform) policy's."""
    from policy.data import split_holdout
    from policy.evaluate import expected_reward
    from test_judge import write_demo_groups  # mined demo groups without a store

    data = load_dataset(write_demo_groups(tmp_path / "global.jsonl"))
    train_part, held = split_holdout(data, 0.2)
    again, _ = split_holdout(data, 0.2)
    assert [g.gid for g in again.groups] == [g.gid for g in train_part.groups] and held.groups
    assert not {g.prompt for g in train_part.groups} & {g.prompt for g in held.groups}
    assert len(train_part) + len(held) == len(data)
    uniform = expected_reward(load_policy("bow", out=tmp_path), held.groups)  # zero weights: each candidate 1/G
    assert abs(uniform - sum(sum(g.rewards) / len(g.rewards) for g in held.groups) / len(held)) < 1e-12
    summary = train(settings(data.path, tmp_path / "run", steps=60, lr=0.05, val_split=0.2, val_interval=20))
    recs = [r for r in read_metrics(tmp_path / "run" / "metrics.jsonl") if r.get("val_pairwise_acc") is not None]
    assert [r["step"] for r in recs] == [20, 40, 60]
    first = read_metrics(tmp_path / "run" / "metrics.jsonl")[0]  # the untrained policy's, logged at step 1
    assert first["val_pairwise_acc_start"] == 0.5 and abs(first["policy_expected_reward_start"] - uniform) < 1e-12
    assert summary["val_pairwise_acc"] >= 0.75 and summary["policy_expected_reward"] > uniform + 0.02, (summary, uniform)


def test_bow_with_the_default_lr_learns_the_demo_preferences(tmp_path: Path) -> None:
    """No lr set: bow trains at its backend default (policy.backends.DEFAULT_LR) and, within the default
    steps, ranks held-out demo groups (every 4th group of the mined demo data) at >= 0.75; at the old
    global default 1e-4 it barely moves (measured 0.72 on this split)."""
    from test_judge import write_demo_groups

    lines = write_demo_groups(tmp_path / "all.jsonl").read_text().splitlines()
    train_path, heldout = tmp_path / "train.jsonl", tmp_path / "heldout.jsonl"
    train_path.write_text("".join(line + "\n" for i, line in enumerate(lines) if i % 4))
    heldout.write_text("".join(line + "\n" for i, line in enumerate(lines) if i % 4 == 0))
    summary = train(TrainSettings(dataset=train_path, out=tmp_path / "run", val_dataset=heldout))
    assert TrainSettings(dataset=None, out=tmp_path).lr is None and summary["step"] == 200
    assert read_metrics(tmp_path / "run" / "metrics.jsonl")[0]["lr"] == DEFAULT_LR["bow"]
    assert summary["val_pairwise_acc"] >= 0.75, summary["val_pairwise_acc"]
    slow = train(TrainSettings(dataset=train_path, out=tmp_path / "slow", val_dataset=heldout, lr=1e-4))
    assert slow["val_pairwise_acc"] < summary["val_pairwise_acc"]


def test_logged_behavior_logprobs_weight_the_loss_and_mismatches_fall_back(tmp_path: Path) -> None:
    """Issue 12: candidates whose logged token ids equal their encoded ids get IS weights from their
    behaviour log-probs (is_mode mask with a tiny cap zeroes their loss: the loss changes vs no behaviour
    log-probs); a candidate with other ids falls back to weight 1 and is counted in behavior_missing."""
    import json

    from policy.backends import load_policy

    out = tmp_path / "run"
    policy = load_policy("tiny", out=out)
    texts = ["return a + b", "return a - b", "pass", "raise ValueError"]
    lines = []
    for k in range(2):
        cands = []
        for j, text in enumerate(texts):
            ids = policy.completion_ids(text)
            if j == 3:  # mismatched ids: falls back
                ids = ids[:-1]
            cands.append({"text": text, "reward": float(j == k), "behavior_logprobs": {"token_ids": ids, "logprobs": [-9.0] * len(ids)}})
        lines.append(json.dumps({"prompt": f"write the function number {k}", "candidates": cands}))
    with_b = tmp_path / "with.jsonl"
    with_b.write_text("\n".join(lines) + "\n")
    plain = tmp_path / "plain.jsonl"
    plain.write_text("\n".join(json.dumps({**json.loads(l), "candidates": [{"text": c["text"], "reward": c["reward"]} for c in json.loads(l)["candidates"]]}) for l in lines) + "\n")

    def run(data: Path, name: str) -> list[dict]:
        train(settings(data, out / name, model="tiny", steps=2, groups_per_step=1, beta=0.0, is_mode="mask", is_cap=1.5, seed=0))
        return [json.loads(x) for x in (out / name / "metrics.jsonl").read_text().splitlines()]

    base, weighted = run(plain, "plain"), run(with_b, "with")
    assert all("behavior_used" not in r and "behavior_missing" not in r for r in base)  # no field in the data: no counts
    assert [r["behavior_used"] for r in weighted] == [3, 3] and [r["behavior_missing"] for r in weighted] == [1, 1]
    assert weighted[0]["loss"] != pytest.approx(base[0]["loss"], abs=1e-6)


def test_cispo_with_a_cap_below_1_is_refused_up_front(tmp_path: Path) -> None:
    """CISPO caps the importance weight at eps_high itself (TRL): the default 0.2 would be a cap below 1."""
    from policy.errors import SettingsError
    from policy.trainer import check_settings

    with pytest.raises(SettingsError, match="--eps-high"):
        check_settings(TrainSettings(dataset=tmp_path / "d.jsonl", out=tmp_path, loss_type="cispo"))
    check_settings(TrainSettings(dataset=tmp_path / "d.jsonl", out=tmp_path, loss_type="cispo", eps_high=5.0))
