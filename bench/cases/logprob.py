"""Case `logprob`: `token_logprobs` forward without grad on (N, V) logits.

Providers: ours (kernels.token_logprobs, whichever backend kernels.backend() chose), naive
(log_softmax in fp32 + gather), trl (trl.trainer.utils.selective_log_softmax, when installed).
"""

from __future__ import annotations

from typing import Any

import torch

from bench.cases.common import TORCH_DTYPES, abs_err, chunked_logp, random_logits, third_party_skip
from bench.grpo_math import LOSS
from bench.registry import Case, Size, register


def build(size: Size, provider: str) -> dict[str, Any]:
    n, v = size.tokens, size.vocab
    return {
        "logits": random_logits(1, n, v, size)[0],  # (N, V)
        "ids": torch.randint(0, v, (n,), device=size.device),  # (N,)
    }


@torch.no_grad()
def run(provider: str, inputs: dict[str, Any]) -> dict[str, Any]:
    logits, ids, temp = inputs["logits"], inputs["ids"], LOSS["temperature"]
    if provider == "ours":
        from kernels import token_logprobs

        logp = token_logprobs(logits, ids, temp)
    elif provider == "naive":
        z = logits.float() if temp == 1.0 else logits.float() / temp
        logp = torch.log_softmax(z, dim=-1).gather(-1, ids[:, None]).squeeze(-1)
    elif provider == "trl":
        from trl.trainer.utils import selective_log_softmax

        logp = selective_log_softmax(logits if temp == 1.0 else logits / temp, ids)
    else:
        raise ValueError(f"logprob has no provider {provider!r}")
    return {"logp": logp}  # (N,)


def check(inputs: dict[str, Any], outputs: dict[str, Any]) -> dict[str, float]:
    logits, ids = inputs["logits"], inputs["ids"]
    logp64 = chunked_logp(lambda _, t0, t1: logits[t0:t1], ids[None], logits.shape[-1], torch.float64)[0]
    return {"logp": abs_err(outputs["logp"], logp64)}


def bytes_moved(size: Size) -> int:
    es = TORCH_DTYPES[size.dtype].itemsize
    return size.tokens * size.vocab * es + size.tokens * (8 + 4)  # read logits and ids, write logp


register(
    Case(
        name="logprob",
        summary="token_logprobs forward, no grad",
        providers=("ours", "naive", "trl"),
        tokens=(1024,),
        cuda_tokens=(8192,),  # enough rows to fill an H100/H200
        vocabs=(50257, 128256, 151936),
        hidden=None,
        build=build,
        run=run,
        check=check,
        bytes_moved=bytes_moved,
        skip_reason=third_party_skip,
        order=1,
    )
)
