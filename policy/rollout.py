"""Rollouts: G completions per prompt sampled from the current policy, with their sampling log-probs.

`sample_rollouts(policy, prompts, gen)` runs HF `generate` once for all prompts of a step (left-padded,
each prompt repeated G times, KV cache on, the model in eval mode), sampling with `temperature`, `top_p`
and `top_k` (0 = off). A logits processor placed before the samplers records, at each decoding step,
log_softmax(logits / temperature) of the raw logits and gathers the token that was then drawn: the
per-token log-probs of the policy that produced the sample (the "old" log-probs of the ratio), the same
quantity the trainer computes, without keeping (B * G, L, V) logits around. The generation config is
built here from these settings alone (the checkpoint's own generation_config, with a repetition penalty
or a minimum length, would change the distribution the samples come from).

A completion is the generated ids up to and including the first eos. One that reaches
`max_new_tokens` without eos is `truncated` and keeps exactly the ids it has: no eos is added, so the
model is not taught to stop where it was cut (TRL's mask_truncated_completions can then drop it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor


@dataclass(frozen=True)
class GenerationSettings:
    num_generations: int = 8  # G
    max_new_tokens: int = 64
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0


@dataclass
class Rollout:
    """One prompt's G samples."""

    prompt_ids: list[int]
    completions: list[list[int]]  # G id lists, eos included when the model stopped
    old_logp: Tensor  # (G, T) sampling log-probs, T = the longest completion, 0 past each one's end
    truncated: list[bool]  # (G,) hit max_new_tokens without eos


class _LogpRecorder:
    """LogitsProcessor: log-prob of each drawn token under softmax(raw logits / T), one (B, V) at a time."""

    def __init__(self, temperature: float) -> None:
        self.temperature, self.prev, self.steps = temperature, None, []

    def __call__(self, input_ids: Tensor, scores: Tensor) -> Tensor:
        if self.prev is not None:  # input_ids now ends with the token drawn from self.prev
            self.steps.append(self.prev.gather(1, input_ids[:, -1:]).squeeze(1))
        self.prev = torch.log_softmax(scores.float() / self.temperature, dim=-1)  # (B, V)
        return scores

    def finish(self, last_tokens: Tensor) -> Tensor:
        """(B, L) log-probs of all L drawn tokens, given the last drawn token per row."""
        if self.prev is not None:
            self.steps.append(self.prev.gather(1, last_tokens[:, None]).squeeze(1))
        return torch.stack(self.steps, dim=1)


def _left_padded(prompts: list[list[int]], repeat: int, pad: int, device: torch.device) -> tuple[Tensor, Tensor]:
    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), pad, dtype=torch.int64)  # (B, P)
    attention = torch.zeros(len(prompts), width, dtype=torch.int64)  # (B, P)
    for i, p in enumerate(prompts):
        ids[i, width - len(p) :] = torch.tensor(p)
        attention[i, width - len(p) :] = 1
    return ids.repeat_interleave(repeat, 0).to(device), attention.repeat_interleave(repeat, 0).to(device)  # (B * G, P)


def sample_rollouts(policy: Any, prompts: list[list[int]], gen: GenerationSettings) -> list[Rollout]:
    """G sampled completions (with sampling log-probs) for each prompt's token ids, from `policy` (HFPolicy)."""
    from transformers import GenerationConfig, LogitsProcessorList

    tok, net, g = policy.tokenizer, policy.net, gen.num_generations
    input_ids, attention = _left_padded(prompts, g, tok.pad_token_id, policy.device)
    recorder = _LogpRecorder(gen.temperature)
    # A config of our own, not the checkpoint's generation_config: a repetition penalty or min_new_tokens
    # there would change the distribution sampled from, and the recorded log-probs with it.
    config = GenerationConfig(
        do_sample=True, temperature=gen.temperature, top_p=gen.top_p, top_k=gen.top_k,
        max_new_tokens=gen.max_new_tokens, pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
        bos_token_id=tok.bos_token_id, use_cache=True,
    )  # fmt: skip
    was_training = net.training
    net.eval()
    try:
        with torch.no_grad(), policy._autocast():
            seqs = net.generate(
                input_ids=input_ids, attention_mask=attention, generation_config=config,
                logits_processor=LogitsProcessorList([recorder]),
                synced_gpus=getattr(policy, "synced_gpus", False),  # FSDP2: every rank steps until all are done
            )
    finally:
        net.train(was_training)
    new = seqs[:, input_ids.shape[1] :].cpu()  # (B * G, L)
    logp = recorder.finish(new[:, -1].to(policy.device)).float().cpu()  # (B * G, L)
    out = []
    for b, prompt in enumerate(prompts):
        comps, truncated, rows = [], [], []
        for r in range(b * g, (b + 1) * g):
            ids = new[r].tolist()
            stop = ids.index(tok.eos_token_id) + 1 if tok.eos_token_id in ids else None
            comps.append(ids[:stop] if stop else ids[: gen.max_new_tokens])
            truncated.append(stop is None)
            rows.append(logp[r, : len(comps[-1])])
        old = torch.zeros(g, max(len(c) for c in comps))  # (G, T)
        for i, row in enumerate(rows):
            old[i, : row.numel()] = row
        out.append(Rollout(prompt_ids=list(prompt), completions=comps, old_logp=old, truncated=truncated))
    return out
