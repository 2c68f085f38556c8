"""Frozen judges (reward models) that score (prompt, completion) pairs, for online GRPO.

`load_judge(path, device="auto", batch_size=16)` -> `Judge`, a TRL-style reward function:
`judge(prompts, completions, **kwargs) -> list[float]`, one score per pair, higher = better, computed
in eval mode under torch.no_grad() in batches of `batch_size`. `Judge.name == "judge"`. A judge dir is

- an HF `AutoModelForSequenceClassification` checkpoint with exactly one label (num_labels == 1; any
  other count is a PolicyError), loaded with from_pretrained with its tokenizer (no pad token: eos is
  used as pad and written to model.config.pad_token_id, so the last-token pooling of decoder models
  finds the end of each row). A `judge.json` beside it (written by `grpo train-judge`) may pin the
  text format and max length;
- a bag-of-words judge written by `grpo train-judge --model bow`: `judge.json` {"kind": "bow",
  "buckets", "features", ...} + `model.safetensors` {"weight": (D,)}.

Text fed to an HF judge (`TEXT_FORMATS`): "pair" = tokenizer(prompts, completions) as a text pair,
used when the tokenizer has a separator token (BERT/DeBERTa-style reward models are trained on
(question, answer) pairs); otherwise "newline" = the single text `prompt + "\\n" + completion` (decoder
tokenizers have no separator, and their pair template would glue the two texts together). Both are
truncated to `max_length` tokens (the judge.json value, else min(tokenizer.model_max_length,
config.max_position_embeddings, 1024)); with "newline" the end of a long completion is what is cut.
Prompts and completions in TRL's conversational form (lists of {"role", "content"} messages) go
through the tokenizer's chat template when it has one (prompt messages, then the completion's; plain
text becomes one user / assistant message), as TRL formats conversational samples for a reward model;
without a template, and always for bow judges, message contents are joined by newlines.

BoW judge features (`BowFeatures`): distinct hashed keys (zlib.crc32, stable across machines) of the
completion's words `c:w` and word bigrams `b:w1 w2`, its length bucket `l:k` (k = bit length of the
word count), the prompt's first word (the instruction verb: fix, explain, find...) crossed with each
completion word `v:verb|w` and with the length bucket `z:verb|k`, and every prompt word crossed with
every completion word `x:p|w`. Each family has value scale/sqrt(#keys of the family) (scale 1, and
CROSS_SCALE for `x`), so long texts do not dominate; score = sum of weight * value. Words are
lower-cased [a-z0-9_]+ runs; the first 32 distinct prompt words and 256 distinct completion words
(and bigrams) count.
"""

from __future__ import annotations

import json
import math
import re
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file
from torch import Tensor

from policy.backends import resolve_device
from policy.errors import PolicyError

JUDGE_JSON, WEIGHTS = "judge.json", "model.safetensors"
TEXT_FORMATS = ("pair", "newline")
DEFAULT_MAX_LENGTH = 1024
WORD = re.compile(r"[a-z0-9_]+")
PROMPT_WORDS, TEXT_WORDS = 32, 256
CROSS_SCALE = 0.5  # the all-prompt-words cross family is noisier than the instruction-verb one
BOW_FEATURES = "judge-bow-1"  # the feature set written to judge.json; a judge with another is refused


def as_text(item: Any) -> str:
    """A prompt or completion as plain text (TRL conversational lists of messages are joined)."""
    if isinstance(item, str):
        return item
    if isinstance(item, dict) and "content" in item:
        return str(item["content"])
    if isinstance(item, (list, tuple)):
        return "\n".join(as_text(m) for m in item)
    raise PolicyError(f"judge input must be text or a list of chat messages, got {type(item).__name__}")


def _words(text: str, limit: int) -> list[str]:
    """The first `limit` lower-cased words of `text`, in order (repeats kept)."""
    return [m.group() for _, m in zip(range(limit), WORD.finditer(text.lower()))]


@dataclass
class Sparse:
    """Encoded rows: feature bucket `idx`, row `seg` and value `val` of every (row, feature)."""

    idx: Tensor  # (F,) int64
    seg: Tensor  # (F,) int64
    val: Tensor  # (F,) float32
    rows: int  # B


class BowFeatures:
    """Hashed sparse features of (prompt, completion) pairs, shared by training and scoring."""

    def __init__(self, buckets: int) -> None:
        self.buckets = int(buckets)

    def keys(self, prompt: str, text: str) -> list[tuple[float, list[str]]]:
        """Feature keys of one pair by family, with the family's scale (each family is normalised on its own)."""
        pw = list(dict.fromkeys(_words(prompt, 4 * PROMPT_WORDS)))[:PROMPT_WORDS]
        seq = _words(text, 4 * TEXT_WORDS)
        cw = list(dict.fromkeys(seq))[:TEXT_WORDS]
        bigrams = list(dict.fromkeys(f"{a} {b}" for a, b in zip(seq, seq[1:])))[:TEXT_WORDS]
        length = str(len(seq).bit_length())
        verb = pw[0] if pw else ""
        return [
            (1.0, [f"c:{w}" for w in cw]), (1.0, [f"b:{b}" for b in bigrams]), (1.0, [f"l:{length}"]),
            (1.0, [f"v:{verb}|{w}" for w in cw]), (1.0, [f"z:{verb}|{length}"]),
            (CROSS_SCALE, [f"x:{p}|{w}" for p in pw for w in cw]),
        ]  # fmt: skip

    def encode(self, prompts: Sequence[str], texts: Sequence[str], device: torch.device) -> Sparse:
        """The sparse feature rows of (prompt, completion) pairs."""
        idx: list[int] = []
        seg: list[int] = []
        val: list[float] = []
        for row, (prompt, text) in enumerate(zip(prompts, texts)):
            feats: dict[int, float] = {}
            for scale, family in self.keys(prompt, text):
                if not family:
                    continue
                v = scale / math.sqrt(len(family))
                for key in family:
                    b = zlib.crc32(key.encode()) % self.buckets
                    feats[b] = feats.get(b, 0.0) + v
            idx += feats
            seg += [row] * len(feats)
            val += feats.values()
        return Sparse(
            idx=torch.tensor(idx, dtype=torch.int64, device=device),
            seg=torch.tensor(seg, dtype=torch.int64, device=device),
            val=torch.tensor(val, dtype=torch.float32, device=device),
            rows=len(texts),
        )  # fmt: skip

    @staticmethod
    def scores(weight: Tensor, enc: Sparse) -> Tensor:
        """(B,) scores of the encoded rows under `weight` (D,); differentiable in `weight`."""
        return torch.zeros(enc.rows, device=weight.device, dtype=weight.dtype).index_add(0, enc.seg, weight[enc.idx] * enc.val)


class Judge:
    """A frozen scorer of (prompt, completion) pairs; call it like a TRL reward function."""

    name = "judge"
    __name__ = "judge"  # TRL names reward functions by __name__

    def __init__(self, path: Path, device: torch.device, batch_size: int) -> None:
        if batch_size < 1:
            raise PolicyError(f"judge batch_size must be >= 1, got {batch_size}")
        self.path, self.device, self.batch_size = Path(path), device, int(batch_size)

    def __call__(self, prompts: Sequence[Any], completions: Sequence[Any], **kwargs: Any) -> list[float]:
        """One float score per (prompt, completion); extra TRL columns in `kwargs` are ignored."""
        if len(prompts) != len(completions):
            raise PolicyError(f"judge got {len(prompts)} prompts but {len(completions)} completions; pass one prompt per completion")
        out: list[float] = []
        with torch.no_grad():
            for start in range(0, len(completions), self.batch_size):
                stop = start + self.batch_size
                out += self.score_batch(list(prompts[start:stop]), list(completions[start:stop])).float().cpu().tolist()
        return out

    def score_batch(self, prompts: list[Any], completions: list[Any]) -> Tensor:  # (B,)
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        return {"path": str(self.path), "device": str(self.device), "batch_size": self.batch_size}


class BowJudge(Judge):
    """A judge written by `grpo train-judge --model bow`: weight (D,) over BowFeatures buckets."""

    def __init__(self, path: Path, weight: Tensor, features: BowFeatures, *, device: torch.device, batch_size: int) -> None:
        super().__init__(path, device, batch_size)
        self.weight, self.features = weight.to(device), features  # (D,)

    def score_batch(self, prompts: list[Any], completions: list[Any]) -> Tensor:
        enc = self.features.encode([as_text(p) for p in prompts], [as_text(c) for c in completions], self.device)
        return self.features.scores(self.weight, enc)

    def describe(self) -> dict[str, Any]:
        return {"kind": "bow", "buckets": self.features.buckets, **super().describe()}


class HFJudge(Judge):
    """An AutoModelForSequenceClassification judge with one label, frozen, in eval mode."""

    def __init__(
        self, path: Path, model: Any, tokenizer: Any, *, text_format: str, max_length: int, device: torch.device, batch_size: int,
    ) -> None:  # fmt: skip
        super().__init__(path, device, batch_size)
        self.model, self.tokenizer, self.text_format, self.max_length = model, tokenizer, text_format, int(max_length)
        self.model.eval()

    def encode(self, prompts: list[Any], completions: list[Any]) -> dict[str, Tensor]:
        """input_ids / attention_mask (B, T): the chat template for chat messages when the tokenizer
        has one, else `text_format` (see the module docstring)."""
        chat = any(not isinstance(x, str) for x in (*prompts, *completions))
        if chat and getattr(self.tokenizer, "chat_template", None):
            texts = [self.tokenizer.apply_chat_template(_messages(p, "user") + _messages(c, "assistant"), tokenize=False) for p, c in zip(prompts, completions)]
            return dict(self.tokenizer(texts, add_special_tokens=False, truncation=True, max_length=self.max_length, padding=True, return_tensors="pt"))
        return encode_texts(self.tokenizer, [as_text(p) for p in prompts], [as_text(c) for c in completions], self.text_format, self.max_length)

    def score_batch(self, prompts: list[Any], completions: list[Any]) -> Tensor:
        batch = {k: v.to(self.device) for k, v in self.encode(prompts, completions).items()}
        return self.model(**batch).logits[:, 0]  # (B,)

    def describe(self) -> dict[str, Any]:
        return {"kind": "hf", "text_format": self.text_format, "max_length": self.max_length, **super().describe()}


def _messages(item: Any, role: str) -> list[dict[str, Any]]:
    """Chat messages of a prompt or completion (plain text becomes one message of `role`)."""
    if isinstance(item, str):
        return [{"role": role, "content": item}]
    if isinstance(item, dict):
        return [item]
    return list(item)


def default_text_format(tokenizer: Any) -> str:
    """'pair' for tokenizers with a separator token (encoder reward models), else 'newline'."""
    return "pair" if getattr(tokenizer, "sep_token", None) else "newline"


def default_max_length(tokenizer: Any, config: Any) -> int:
    limits = [DEFAULT_MAX_LENGTH, getattr(config, "max_position_embeddings", None), getattr(tokenizer, "model_max_length", None)]
    return min(int(n) for n in limits if isinstance(n, int) and n > 0)


def encode_texts(tokenizer: Any, prompts: Sequence[str], completions: Sequence[str], text_format: str, max_length: int) -> dict[str, Tensor]:
    """Padded input_ids / attention_mask (B, T) of (prompt, completion) pairs in `text_format`."""
    if text_format == "pair":
        return dict(tokenizer(list(prompts), list(completions), truncation=True, max_length=max_length, padding=True, return_tensors="pt"))
    texts = [f"{p}\n{c}" for p, c in zip(prompts, completions)]
    return dict(tokenizer(texts, truncation=True, max_length=max_length, padding=True, return_tensors="pt"))


def fix_pad_token(model: Any, tokenizer: Any) -> None:
    """A tokenizer without a pad token pads with eos; the model learns which id that is."""
    if tokenizer.pad_token_id is None:
        if tokenizer.eos_token_id is None:
            raise PolicyError("the judge's tokenizer has neither a pad nor an eos token; add a pad token to the checkpoint")
        tokenizer.pad_token = tokenizer.eos_token
    if tokenizer.padding_side != "right":
        tokenizer.padding_side = "right"
    model.config.pad_token_id = tokenizer.pad_token_id


def read_judge_json(path: Path) -> dict[str, Any] | None:
    file = Path(path) / JUDGE_JSON
    if not file.exists():
        return None
    try:
        meta = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise PolicyError(f"{file}: unreadable judge description ({exc}); retrain with grpo train-judge") from exc
    if not isinstance(meta, dict) or meta.get("kind") not in ("bow", "hf"):
        raise PolicyError(f"{file}: 'kind' must be 'bow' or 'hf'; retrain with grpo train-judge")
    return meta


def load_judge(path: Path | str, device: str | torch.device = "auto", batch_size: int = 16, dtype: str = "auto") -> Judge:
    """The judge stored in `path` (see the module docstring), on `device` ("auto": cuda if available).

    `dtype` of an HF judge: "auto" (bfloat16 on CUDA, float32 on CPU), "float32" or "bfloat16".
    """
    path = Path(path).expanduser()
    if not path.is_dir():
        raise PolicyError(f"{path}: no judge there; pass a folder written by grpo train-judge or an HF sequence-classification checkpoint")
    dev = resolve_device(device) if isinstance(device, str) else device
    meta = read_judge_json(path) or {"kind": "hf"}
    if meta["kind"] == "bow":
        return _load_bow(path, meta, dev, batch_size)
    return _load_hf(path, meta, dev, batch_size, dtype)


def _load_bow(path: Path, meta: dict[str, Any], device: torch.device, batch_size: int) -> BowJudge:
    if meta.get("features") != BOW_FEATURES:
        raise PolicyError(f"{path}: bow judge features {meta.get('features')!r}, this version reads {BOW_FEATURES!r}; retrain with grpo train-judge")
    try:
        weight = load_file(str(path / WEIGHTS))["weight"].float()
    except (OSError, KeyError, ValueError) as exc:
        raise PolicyError(f"{path}: cannot read the bow judge weights {WEIGHTS} ({exc}); retrain with grpo train-judge") from exc
    if weight.ndim != 1 or weight.shape[0] != int(meta.get("buckets", -1)):
        raise PolicyError(f"{path}: bow judge weights {tuple(weight.shape)} do not match buckets={meta.get('buckets')}")
    return BowJudge(path, weight, BowFeatures(weight.shape[0]), device=device, batch_size=batch_size)


def _load_hf(path: Path, meta: dict[str, Any], device: torch.device, batch_size: int, dtype: str) -> HFJudge:
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    try:
        config = AutoConfig.from_pretrained(path)
    except (OSError, ValueError) as exc:
        raise PolicyError(f"{path}: not a judge ({exc}); pass a folder written by grpo train-judge or an HF sequence-classification checkpoint") from exc
    if config.num_labels != 1:
        raise PolicyError(
            f"{path}: the checkpoint has num_labels={config.num_labels}; a judge needs one score per sample (num_labels=1). "
            "Train a one-label head with grpo train-judge --model DIR"
        )  # fmt: skip
    if dtype == "auto":
        dtype = "bfloat16" if device.type == "cuda" else "float32"
    if dtype not in ("float32", "bfloat16"):
        raise PolicyError(f"judge dtype must be auto, float32 or bfloat16, got {dtype!r}")
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
        model = AutoModelForSequenceClassification.from_pretrained(path, dtype=getattr(torch, dtype))
    except (OSError, ValueError) as exc:
        raise PolicyError(f"{path}: cannot load the judge ({exc}); it must be an AutoModelForSequenceClassification checkpoint with its tokenizer") from exc
    fix_pad_token(model, tokenizer)
    text_format = meta.get("text_format") or default_text_format(tokenizer)
    if text_format not in TEXT_FORMATS:
        raise PolicyError(f"{path / JUDGE_JSON}: text_format {text_format!r} is not one of {', '.join(TEXT_FORMATS)}")
    max_length = int(meta.get("max_length") or default_max_length(tokenizer, config))
    for p in model.parameters():
        p.requires_grad_(False)
    return HFJudge(path, model.to(device), tokenizer, text_format=text_format, max_length=max_length, device=device, batch_size=batch_size)
