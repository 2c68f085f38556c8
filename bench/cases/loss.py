"""Case `loss`: GRPO loss forward + backward on (B, T, V) logits (bnpo, beta 0.04, eps 0.2, token level).

Providers: ours (kernels.grpo_loss), naive (log_softmax in fp32 + gather, then bench.grpo_math),
liger (liger_kernel.transformers.grpo_loss.triton_grpo_loss, CUDA only, not in place). Outputs the
loss and d loss / d logits; the check recomputes both in float64 by autograd, one row chunk at a time.
"""

from __future__ import annotations

import inspect
from typing import Any

import torch

from bench.cases.common import (
    CHECK_CHUNK_ELEMS,
    TORCH_DTYPES,
    abs_err,
    batch_shape,
    chunked_logp,
    grpo_side_inputs,
    random_logits,
    reference_dlogp,
    row_chunks,
    third_party_skip,
)
from bench.grpo_math import LOSS, grpo_loss_from_logp
from bench.registry import Case, Size, register


def build(size: Size, provider: str) -> dict[str, Any]:
    b, t = batch_shape(size.tokens)
    v = size.vocab
    # Liger reads (B, T+1, V) logits and drops the last position; everyone else gets exactly (B, T, V).
    logits = random_logits(b, t, v, size, extra_rows=1 if provider == "liger" else 0)
    ids = torch.randint(0, v, (b, t), device=size.device)  # (B, T)
    logp = chunked_logp(lambda i, t0, t1: logits[i, t0:t1], ids, v)  # (B, T) fp32
    return {"logits": logits.requires_grad_(True), "ids": ids, **grpo_side_inputs(logp, size.device)}


def _liger_loss(inputs: dict[str, Any]) -> torch.Tensor:
    from liger_kernel.transformers.grpo_loss import triton_grpo_loss

    args = (inputs["logits"], inputs["old_logp"], inputs["ref_logp"], inputs["ids"], inputs["advantages"], inputs["mask"])
    kw = {"temperature": LOSS["temperature"], "beta": LOSS["beta"], "eps_low": LOSS["eps_low"], "eps_high": LOSS["eps_high"], "inplace": False}
    params = inspect.signature(triton_grpo_loss).parameters
    if "reduce" in params and "loss_type" in params:
        loss, _ = triton_grpo_loss(*args, **kw, loss_type=LOSS["loss_type"], reduce=True)
        return loss
    per_token, _, _ = triton_grpo_loss(*args, **kw)  # older Liger: per-token loss, reduce as bnpo here
    mask = inputs["mask"]
    return (per_token * mask).sum() / mask.sum().clamp(min=1)


def run(provider: str, inputs: dict[str, Any]) -> dict[str, Any]:
    logits, ids = inputs["logits"], inputs["ids"]
    side = (inputs["old_logp"], inputs["ref_logp"], inputs["advantages"], inputs["mask"])
    if provider == "ours":
        from kernels import grpo_loss

        loss, _stats = grpo_loss(logits, ids, *side, **LOSS)
    elif provider == "naive":
        temp = LOSS["temperature"]
        z = logits.float() if temp == 1.0 else logits.float() / temp  # (B, T, V)
        logp = torch.log_softmax(z, dim=-1).gather(-1, ids[..., None]).squeeze(-1)  # (B, T)
        loss = grpo_loss_from_logp(logp, *side, **LOSS)
    elif provider == "liger":
        loss = _liger_loss(inputs)
    else:
        raise ValueError(f"loss has no provider {provider!r}")
    loss.backward()
    return {"loss": loss.detach(), "grad_logits": logits.grad}


def check(inputs: dict[str, Any], outputs: dict[str, Any]) -> dict[str, float]:
    ids = inputs["ids"]
    b, t = ids.shape
    logits = inputs["logits"].detach()[:, :t]  # (B, T, V), a view when Liger's buffer has T+1 rows
    grad = outputs["grad_logits"][:, :t]
    v, temp = logits.shape[-1], LOSS["temperature"]
    loss64, dlogp = reference_dlogp(chunked_logp(lambda i, t0, t1: logits[i, t0:t1], ids, v, torch.float64), inputs)
    grad_err = 0.0
    for i in range(b):
        for t0, t1 in row_chunks(t, v, CHECK_CHUNK_ELEMS):
            x = logits[i, t0:t1].double().requires_grad_(True)  # (rows, V)
            lp = torch.log_softmax(x / temp, dim=-1).gather(-1, ids[i, t0:t1, None]).squeeze(-1)
            (g,) = torch.autograd.grad(lp, x, dlogp[i, t0:t1])
            grad_err = max(grad_err, abs_err(grad[i, t0:t1], g))
    return {"loss": abs_err(outputs["loss"], loss64), "grad_logits": grad_err}


# Per-token bytes of the fused token loss besides the logits (kernels/triton_token_loss.py): the forward reads
# the id (8) and scale, old, ref, advantage (4 x 4) and writes logp, lse, entropy, ratio, pg, kl, loss (7 x 4)
# and the flags (1); the backward reads the id (8) and scale, lse, logp, old, ref, advantage (6 x 4).
ROW_BYTES = (8 + 4 * 4 + 7 * 4 + 1) + (8 + 6 * 4)


def bytes_moved(size: Size) -> int:
    es = TORCH_DTYPES[size.dtype].itemsize
    n, v = size.tokens, size.vocab
    return 3 * n * v * es + n * ROW_BYTES  # the minimum: read the logits twice (forward, backward), write dlogits once


register(
    Case(
        name="loss",
        summary="grpo_loss forward + backward on logits",
        providers=("ours", "naive", "liger"),
        tokens=(1024,),
        cuda_tokens=(8192,),  # enough rows to fill an H100/H200
        vocabs=(50257, 128256, 151936),
        hidden=None,
        build=build,
        run=run,
        check=check,
        bytes_moved=bytes_moved,
        skip_reason=third_party_skip,
        order=2,
    )
)
