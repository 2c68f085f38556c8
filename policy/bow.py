"""`bow`: a bag-of-words listwise scorer over a group's candidates, trainable without transformers.

score(prompt, text) = sum of weights at hashed features of the text, each of value 1/sqrt(#features):
`c:<word>` for each distinct candidate word and `x:<prompt word>|<word>` for each (prompt word,
candidate word) pair, so prompt-dependent preferences can be learnt. Words are lower-cased [a-z0-9_]+
runs (at most PROMPT_WORDS / TEXT_WORDS distinct ones); the hash is zlib.crc32 (stable across runs and
machines, unlike Python's hash()). The policy over a group is softmax(scores / T); it trains through
`kernels.grpo_loss` with each candidate as a one-token sequence: logits (G, 1, G), ids arange(G).
Weights start at zero (uniform policy; the reference is that uniform policy).
"""

from __future__ import annotations

import json
import re
import zlib
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor

from kernels import GRPOStats, grpo_loss
from policy.backends import Encoded, LossOptions
from policy.errors import CheckpointError

WORD = re.compile(r"[a-z0-9_]+")
PROMPT_WORDS, TEXT_WORDS = 32, 256
WEIGHTS, CONFIG = "model.safetensors", "bow.json"


def _words(text: str, limit: int) -> list[str]:
    return list(dict.fromkeys(WORD.findall(text.lower())))[:limit]


def features(prompt: str, text: str, buckets: int) -> list[int]:
    """Distinct hashed feature buckets of one candidate given its prompt."""
    pw, cw = _words(prompt, PROMPT_WORDS), _words(text, TEXT_WORDS)
    keys = [f"c:{w}" for w in cw] + [f"x:{p}|{w}" for p in pw for w in cw]
    return sorted({zlib.crc32(k.encode()) % buckets for k in keys})


class BowPolicy:
    kind = "bow"
    max_tokens = 1

    def __init__(self, buckets: int = 1 << 16, device: torch.device | str = "cpu") -> None:
        self.buckets = int(buckets)
        self.device = torch.device(device)
        self.weight = torch.nn.Parameter(torch.zeros(self.buckets, device=self.device))  # (D,)

    def encode(self, prompt: str, texts: list[str]) -> Encoded:
        g = len(texts)
        idx, seg, val = [], [], []
        for i, text in enumerate(texts):
            feats = features(prompt, text, self.buckets)
            idx += feats
            seg += [i] * len(feats)
            val += [1.0 / max(len(feats), 1) ** 0.5] * len(feats)
        inputs = {
            "idx": torch.tensor(idx, dtype=torch.int64, device=self.device),  # (F,)
            "seg": torch.tensor(seg, dtype=torch.int64, device=self.device),  # (F,)
            "val": torch.tensor(val, dtype=torch.float32, device=self.device),  # (F,)
        }
        ids = torch.arange(g, device=self.device).unsqueeze(1)  # (G, 1)
        return Encoded(ids=ids, mask=torch.ones(g, 1, device=self.device), inputs=inputs)

    def sequence_logprobs(self, enc: Encoded) -> Tensor:
        """(G,) log-probability of each candidate under the listwise softmax of the scores."""
        return torch.log_softmax(self.scores(enc), dim=0)

    def split(self, enc: Encoded, size: int | None) -> list[tuple[slice, Encoded]]:
        """Listwise: a group is one micro-batch whatever the size."""
        return [(slice(0, enc.ids.shape[0]), enc)]

    def _scores(self, enc: Encoded, weight: Tensor) -> Tensor:
        x = enc.inputs
        g = enc.ids.shape[0]
        return torch.zeros(g, device=self.device).index_add(0, x["seg"], weight[x["idx"]] * x["val"])  # (G,)

    def scores(self, enc: Encoded) -> Tensor:
        with torch.no_grad():
            return self._scores(enc, self.weight)

    def _logits(self, scores: Tensor) -> Tensor:
        g = scores.shape[0]
        return scores.unsqueeze(0).expand(g, g).reshape(g, 1, g).contiguous()  # (G, 1, G)

    def loss(
        self, enc: Encoded, old_logp: Tensor | None, ref_logp: Tensor | None, advantages: Tensor, *,
        beta: float, normalizer: float, opts: LossOptions, behavior_logp: Tensor | None = None,
    ) -> tuple[Tensor, GRPOStats]:  # fmt: skip
        # behavior_logp is ignored: bow scores candidates, it has no tokens a sampling engine logged
        logits = self._logits(self._scores(enc, self.weight))  # (G, 1, G)
        return grpo_loss(
            logits, enc.ids, old_logp, ref_logp, advantages.to(self.device), enc.mask,
            loss_type=opts.loss_type, eps_low=opts.eps_low, eps_high=opts.eps_high, delta=opts.delta,
            beta=beta, temperature=opts.temperature, ratio_level=opts.ratio_level, normalizer=normalizer,
        )  # fmt: skip

    def logprobs(self, enc: Encoded, temperature: float = 1.0) -> Tensor:
        with torch.no_grad():
            return torch.log_softmax(self._scores(enc, self.weight) / temperature, -1).unsqueeze(1)  # (G, 1)

    def reference_logprobs(self, enc: Encoded, temperature: float = 1.0) -> Tensor:
        g = enc.ids.shape[0]
        return torch.full((g, 1), -float(torch.log(torch.tensor(float(g)))), device=self.device)  # uniform

    def trainable_parameters(self) -> list[torch.nn.Parameter]:
        return [self.weight]

    def train(self, mode: bool = True) -> None:
        pass

    def save(self, directory: Path) -> None:
        directory = Path(directory)
        save_file({"weight": self.weight.detach().cpu().contiguous()}, str(directory / WEIGHTS))
        (directory / CONFIG).write_text(json.dumps(self.describe()), encoding="utf-8")

    def load_weights(self, directory: Path) -> None:
        weight = load_file(str(Path(directory) / WEIGHTS))["weight"]
        if weight.shape != self.weight.shape:
            raise CheckpointError(f"{directory}: bow weights have {weight.shape[0]} buckets, this run uses {self.buckets}; pass the same --bow-buckets")
        with torch.no_grad():
            self.weight.copy_(weight.to(self.device))

    def describe(self) -> dict[str, Any]:
        return {"kind": "bow", "buckets": self.buckets}
