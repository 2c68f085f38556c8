"""`train_judge`: learn a pairwise (Bradley-Terry) judge from the logged candidates of group JSONL.

Pairs are every two candidates of one group with different rewards, as (better, worse); the loss is the
mean over pairs of -logsigmoid(s_better - s_worse). Groups are split into train and held-out by prompt:
groups are ranked by sha256(f"{seed}|{prompt}") and the first ceil(val_fraction * n) distinct prompts are
held out (at least one group stays for training), so the split is deterministic, groups of the same
prompt stay together, and a group's side does not depend on the others. The summary reports pairwise
accuracy on both sides (a tie in score counts one half; None without pairs).

Models: "bow" (policy.judge.BowFeatures, a hashed linear scorer, full-batch Adam with an L2 penalty,
seconds on a CPU), "tiny" (policy.tiny.build_tiny_scorer: a small random Llama with a one-score head
and the byte tokenizer), or an HF checkpoint DIR loaded with AutoModelForSequenceClassification
(num_labels=1; a causal-LM checkpoint gets a new, seeded score head). HF judges train with AdamW on
`groups_per_step` sampled train groups per step (gradient norm clipped to 1), with dropout off. The
judge is written to `<out>.tmp` and renamed to `out` (any old `out` is moved aside first and removed
after), so `out` is a complete judge or the previous one; `policy.judge.load_judge(out)` reads it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import Tensor

from policy.backends import resolve_device
from policy.data import Group, load_dataset
from policy.errors import DatasetError, PolicyError
from policy.metrics import clean
from policy.judge import (
    BOW_FEATURES, JUDGE_JSON, WEIGHTS, BowFeatures, default_max_length, default_text_format, encode_texts, fix_pad_token,
)  # fmt: skip

log = logging.getLogger("policy")

# model kind -> (steps, lr) when not given
DEFAULTS: dict[str, tuple[int, float]] = {"bow": (200, 0.05), "tiny": (100, 1e-3), "hf": (100, 2e-5)}
BOW_BUCKETS = 1 << 18
BOW_L2 = 1e-4  # penalty on mean(weight^2) * buckets, i.e. on sum(weight^2)


@dataclass
class Split:
    """Candidates of some groups flattened into rows, and their (better, worse) row pairs."""

    prompts: list[str]
    texts: list[str]
    pairs: Tensor  # (P, 2) int64 row indices: better, worse
    group_rows: list[list[int]]  # rows of each group
    group_pairs: list[Tensor]  # (P_g, 2) pairs of each group

    @property
    def groups(self) -> int:
        return len(self.group_rows)


def split_groups(groups: Sequence[Group], val_fraction: float, seed: int) -> tuple[list[Group], list[Group]]:
    """(train, held-out) groups: the first ceil(val_fraction * prompts) prompts by seeded hash are held out."""
    if not 0.0 <= val_fraction < 1.0:
        raise PolicyError(f"val_fraction must be in [0, 1), got {val_fraction}")
    prompts = sorted({g.prompt for g in groups}, key=lambda p: hashlib.sha256(f"{seed}|{p}".encode()).hexdigest())
    n_val = min(math.ceil(val_fraction * len(prompts)), len(prompts) - 1)
    held = set(prompts[:n_val])
    return [g for g in groups if g.prompt not in held], [g for g in groups if g.prompt in held]


def flatten(groups: Sequence[Group]) -> Split:
    prompts: list[str] = []
    texts: list[str] = []
    all_pairs: list[tuple[int, int]] = []
    group_rows: list[list[int]] = []
    group_pairs: list[Tensor] = []
    for g in groups:
        base = len(texts)
        rewards = g.rewards
        prompts += [g.prompt] * len(rewards)
        texts += [c.text for c in g.candidates]
        pairs = [
            (base + i, base + j) if rewards[i] > rewards[j] else (base + j, base + i)
            for i in range(len(rewards)) for j in range(i + 1, len(rewards)) if rewards[i] != rewards[j]
        ]  # fmt: skip
        all_pairs += pairs
        group_rows.append(list(range(base, len(texts))))
        group_pairs.append(torch.tensor(pairs, dtype=torch.int64).reshape(-1, 2))
    return Split(prompts, texts, torch.tensor(all_pairs, dtype=torch.int64).reshape(-1, 2), group_rows, group_pairs)


def bt_loss(scores: Tensor, pairs: Tensor) -> Tensor:
    """Mean -logsigmoid(s_better - s_worse) over `pairs` (P, 2) of `scores` (B,)."""
    return -F.logsigmoid(scores[pairs[:, 0]] - scores[pairs[:, 1]]).mean()


def pair_accuracy(scores: Tensor, pairs: Tensor) -> float | None:
    """Fraction of pairs whose better row scores higher (a tie counts one half); None without pairs."""
    if pairs.shape[0] == 0:
        return None
    diff = scores[pairs[:, 0]] - scores[pairs[:, 1]]  # (P,)
    return float(((diff > 0).double() + 0.5 * (diff == 0).double()).mean())


def train_judge(
    dataset: Path | str, out: Path | str, *, model: str = "bow", steps: int | None = None, lr: float | None = None,
    seed: int = 0, val_fraction: float = 0.2, device: str = "auto", groups_per_step: int = 8,
    buckets: int = BOW_BUCKETS, max_length: int = 512, skip_bad_lines: bool = False,
) -> dict[str, Any]:  # fmt: skip
    """Train a judge on `dataset`, write it to `out`; returns the summary (see the module docstring)."""
    t0 = time.perf_counter()
    data = load_dataset(Path(dataset), skip_bad_lines=skip_bad_lines)
    train_groups, val_groups = split_groups(data.groups, val_fraction, seed)
    train, val = flatten(train_groups), flatten(val_groups)
    if train.pairs.shape[0] == 0:
        raise DatasetError(f"{dataset}: no training pairs (candidates of one group with different rewards); nothing to learn from")
    kind = model if model in ("bow", "tiny") else "hf"
    d_steps, d_lr = DEFAULTS[kind]
    steps, lr = d_steps if steps is None else int(steps), d_lr if lr is None else float(lr)
    if steps < 0 or not lr > 0:
        raise PolicyError(f"need steps >= 0 and lr > 0, got steps={steps}, lr={lr}")
    dev = resolve_device(device)
    log.info("train-judge %s: %d train groups (%d pairs), %d held-out groups (%d pairs), %d steps at lr %g on %s",
             model, train.groups, train.pairs.shape[0], val.groups, val.pairs.shape[0], steps, lr, dev)  # fmt: skip
    trainer = _BowTrainer(buckets, dev) if kind == "bow" else _HFTrainer(model, seed, dev, max_length)
    loss = trainer.fit(train, steps=steps, lr=lr, seed=seed, groups_per_step=groups_per_step)
    train_acc = pair_accuracy(trainer.scores(train), train.pairs)
    val_acc = pair_accuracy(trainer.scores(val), val.pairs) if val.groups else None
    summary = {
        "out": str(Path(out).absolute()), "model": model, "kind": kind, "steps": steps, "lr": lr, "seed": seed,
        "val_fraction": val_fraction, "groups": len(data.groups), "train_groups": train.groups, "val_groups": val.groups,
        "pairs": int(train.pairs.shape[0] + val.pairs.shape[0]), "train_pairs": int(train.pairs.shape[0]),
        "val_pairs": int(val.pairs.shape[0]), "train_pairwise_acc": train_acc, "val_pairwise_acc": val_acc,
        "final_loss": loss, "bad_lines": data.bad_lines, "dataset": str(dataset), "dataset_fingerprint": data.fingerprint,
        "device": str(dev),
    }  # fmt: skip
    _save_atomic(Path(out), lambda tmp: trainer.save(tmp, summary))
    summary["seconds"] = round(time.perf_counter() - t0, 3)
    return summary


def _save_atomic(out: Path, write: Any) -> None:
    tmp, old = out.with_name(out.name + ".tmp"), out.with_name(out.name + ".old")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir(parents=True)
        write(tmp)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise PolicyError(f"cannot write the judge to {tmp} ({exc}); check free space and permissions") from exc
    shutil.rmtree(old, ignore_errors=True)
    if out.exists():
        out.rename(old)
    tmp.rename(out)
    shutil.rmtree(old, ignore_errors=True)


def _write_json(path: Path, obj: dict[str, Any]) -> None:
    (path / JUDGE_JSON).write_text(json.dumps(clean(obj), indent=2, sort_keys=True) + "\n", encoding="utf-8")


class _BowTrainer:
    def __init__(self, buckets: int, device: torch.device) -> None:
        self.features = BowFeatures(buckets)
        self.device = device
        self.weight = torch.zeros(buckets, device=device)  # (D,)

    def fit(self, split: Split, *, steps: int, lr: float, seed: int, groups_per_step: int) -> float | None:
        """Full-batch Adam (deterministic, no sampling) over the U buckets the training rows use: the
        others get no gradient and stay zero, so this equals training all D of them, only faster."""
        enc = self.features.encode(split.prompts, split.texts, self.device)
        used, local = torch.unique(enc.idx, return_inverse=True)  # (U,), (F,)
        enc = replace(enc, idx=local)
        weight = torch.zeros(used.shape[0], device=self.device, requires_grad=True)  # (U,)
        pairs = split.pairs.to(self.device)
        opt = torch.optim.Adam([weight], lr=lr)
        loss = None
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # latency-bound small sparse ops: extra threads only add sync cost
        try:
            for _ in range(steps):
                opt.zero_grad(set_to_none=True)
                bt = bt_loss(self.features.scores(weight, enc), pairs)
                (bt + BOW_L2 * weight.square().sum()).backward()
                opt.step()
                loss = float(bt.detach())
        finally:
            torch.set_num_threads(threads)
        self.weight = torch.zeros_like(self.weight).index_copy(0, used, weight.detach())
        return loss

    def scores(self, split: Split) -> Tensor:
        return self.features.scores(self.weight, self.features.encode(split.prompts, split.texts, self.device)).cpu()

    def save(self, path: Path, summary: dict[str, Any]) -> None:
        save_file({"weight": self.weight.cpu().contiguous()}, str(path / WEIGHTS))
        _write_json(path, {"kind": "bow", "features": BOW_FEATURES, "buckets": self.features.buckets, "train": summary})


class _HFTrainer:
    def __init__(self, model: str, seed: int, device: torch.device, max_length: int) -> None:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        self.device = device
        devices = [torch.cuda.current_device()] if torch.cuda.is_available() else []
        with torch.random.fork_rng(devices=devices):  # a new score head is seeded; the caller's RNG is untouched
            torch.manual_seed(seed)
            self.net, self.tokenizer = self._load(model, seed)
        fix_pad_token(self.net, self.tokenizer)
        self.net.to(device)
        self.net.eval()  # dropout off while training too: the judge is scored as it was trained
        self.text_format = default_text_format(self.tokenizer)
        self.max_length = min(int(max_length), default_max_length(self.tokenizer, self.net.config))

    @staticmethod
    def _load(model: str, seed: int) -> tuple[Any, Any]:
        if model == "tiny":
            from policy.tiny import build_tiny_scorer

            return build_tiny_scorer(seed=seed)
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        path = Path(model).expanduser()
        if not path.is_dir():
            raise PolicyError(f"--model {model!r} is neither bow, tiny nor a local HF checkpoint folder")
        try:
            tokenizer = AutoTokenizer.from_pretrained(path)
            net = AutoModelForSequenceClassification.from_pretrained(path, num_labels=1, ignore_mismatched_sizes=True, dtype=torch.float32)
        except (OSError, ValueError) as exc:
            raise PolicyError(f"cannot load {path} as a sequence-classification model ({exc}); pass an HF checkpoint folder") from exc
        return net, tokenizer

    def _scores(self, split: Split, rows: list[int]) -> Tensor:
        batch = encode_texts(self.tokenizer, [split.prompts[i] for i in rows], [split.texts[i] for i in rows], self.text_format, self.max_length)
        return self.net(**{k: v.to(self.device) for k, v in batch.items()}).logits[:, 0].float()  # (B,)

    def fit(self, split: Split, *, steps: int, lr: float, seed: int, groups_per_step: int) -> float | None:
        params = [p for p in self.net.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
        useful = [i for i, p in enumerate(split.group_pairs) if p.shape[0]]
        gen = torch.Generator().manual_seed(seed)
        loss = None
        for _ in range(steps):
            pick = [useful[int(i)] for i in torch.randperm(len(useful), generator=gen)[: max(1, groups_per_step)]]
            rows = [r for g in pick for r in split.group_rows[g]]
            local = {r: k for k, r in enumerate(rows)}
            pairs = torch.cat([split.group_pairs[g] for g in pick]).apply_(lambda r: local[r]).to(self.device)  # (P, 2)
            opt.zero_grad(set_to_none=True)
            bt = bt_loss(self._scores(split, rows), pairs)
            if not torch.isfinite(bt):
                raise PolicyError("judge training diverged (non-finite loss); lower --lr")
            bt.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            loss = float(bt.detach())
        return loss

    def scores(self, split: Split, batch_size: int = 16) -> Tensor:
        out = []
        with torch.no_grad():
            for start in range(0, len(split.texts), batch_size):
                out.append(self._scores(split, list(range(start, min(start + batch_size, len(split.texts))))).cpu())
        return torch.cat(out) if out else torch.zeros(0)

    def save(self, path: Path, summary: dict[str, Any]) -> None:
        self.net.save_pretrained(path)
        self.tokenizer.save_pretrained(path)
        _write_json(path, {"kind": "hf", "text_format": self.text_format, "max_length": self.max_length, "train": summary})
