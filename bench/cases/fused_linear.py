"""Case `fused-linear`: GRPO loss forward + backward from hidden states (B, T, H) and an LM head (V, H).

Providers: ours (kernels.fused_linear_grpo_loss: chunked, never builds (N, V) logits), naive
(logits = hidden @ W.T, log_softmax in fp32 + gather, bench.grpo_math), liger
(liger_kernel.chunked_loss.LigerFusedLinearGRPOLoss, CUDA only). Outputs the loss and the gradients
for hidden and weight; the check recomputes them in float64, one token chunk at a time.
"""

from __future__ import annotations

import inspect
import math
from typing import Any

import torch

from bench.cases.common import (
    BUILD_CHUNK_ELEMS,
    CHECK_CHUNK_ELEMS,
    TORCH_DTYPES,
    abs_err,
    batch_shape,
    chunked_logp,
    grpo_side_inputs,
    reference_dlogp,
    row_chunks,
    third_party_skip,
)
from bench.grpo_math import LOSS, grpo_loss_from_logp
from bench.registry import Case, Size, register


def build(size: Size, provider: str) -> dict[str, Any]:
    b, t = batch_shape(size.tokens)
    v, h, dtype = size.vocab, size.hidden, TORCH_DTYPES[size.dtype]
    hidden = torch.randn(b, t, h, dtype=dtype, device=size.device)  # (B, T, H)
    weight = torch.empty(v, h, dtype=dtype, device=size.device).normal_(0.0, 3.0 / math.sqrt(h))  # (V, H): logits std ~3
    ids = torch.randint(0, v, (b, t), device=size.device)  # (B, T)
    with torch.no_grad():
        w32 = weight.float()
        logp = chunked_logp(lambda i, t0, t1: hidden[i, t0:t1].float() @ w32.T, ids, v)  # (B, T) fp32
        del w32
    inputs = {"hidden": hidden.requires_grad_(True), "weight": weight.requires_grad_(True), "ids": ids}
    inputs.update(grpo_side_inputs(logp, size.device))
    if provider == "liger":
        from liger_kernel.chunked_loss import LigerFusedLinearGRPOLoss

        kw = {"beta": LOSS["beta"], "epsilon_low": LOSS["eps_low"], "epsilon_high": LOSS["eps_high"], "temperature": LOSS["temperature"], "use_ref_model": True}
        if "loss_type" in inspect.signature(LigerFusedLinearGRPOLoss.__init__).parameters:
            kw["loss_type"] = LOSS["loss_type"]  # older versions compute bnpo without the argument
        inputs["liger_loss"] = LigerFusedLinearGRPOLoss(**kw)
    return inputs


def run(provider: str, inputs: dict[str, Any]) -> dict[str, Any]:
    hidden, weight, ids = inputs["hidden"], inputs["weight"], inputs["ids"]
    old, ref, adv, mask = inputs["old_logp"], inputs["ref_logp"], inputs["advantages"], inputs["mask"]
    if provider == "ours":
        from kernels import fused_linear_grpo_loss

        loss, _stats = fused_linear_grpo_loss(hidden, weight, ids, old, ref, adv, mask, **LOSS)
    elif provider == "naive":
        temp = LOSS["temperature"]
        logits = hidden @ weight.T  # (B, T, V) in the input dtype
        z = logits.float() if temp == 1.0 else logits.float() / temp
        logp = torch.log_softmax(z, dim=-1).gather(-1, ids[..., None]).squeeze(-1)  # (B, T)
        loss = grpo_loss_from_logp(logp, old, ref, adv, mask, **LOSS)
    elif provider == "liger":
        loss, _metrics = inputs["liger_loss"](hidden, weight, ids, mask, adv, None, ref, old)
    else:
        raise ValueError(f"fused-linear has no provider {provider!r}")
    loss.backward()
    return {"loss": loss.detach(), "grad_hidden": hidden.grad, "grad_weight": weight.grad}


def check(inputs: dict[str, Any], outputs: dict[str, Any]) -> dict[str, float]:
    ids = inputs["ids"]
    b, t = ids.shape
    hidden = inputs["hidden"].detach()
    w64 = inputs["weight"].detach().double().requires_grad_(True)  # (V, H); its grad accumulates dW
    v, temp = w64.shape[0], LOSS["temperature"]
    with torch.no_grad():
        logp64 = chunked_logp(lambda i, t0, t1: hidden[i, t0:t1].double() @ w64.T, ids, v, torch.float64)
    loss64, dlogp = reference_dlogp(logp64, inputs)
    grad_hidden = outputs["grad_hidden"]
    hidden_err = 0.0
    for i in range(b):
        for t0, t1 in row_chunks(t, v, CHECK_CHUNK_ELEMS):
            x = hidden[i, t0:t1].double().requires_grad_(True)  # (rows, H)
            lp = torch.log_softmax((x @ w64.T) / temp, dim=-1).gather(-1, ids[i, t0:t1, None]).squeeze(-1)
            lp.backward(dlogp[i, t0:t1])
            hidden_err = max(hidden_err, abs_err(grad_hidden[i, t0:t1], x.grad))
    return {
        "loss": abs_err(outputs["loss"], loss64),
        "grad_hidden": hidden_err,
        "grad_weight": abs_err(outputs["grad_weight"], w64.grad),
    }


def logits_bytes(size: Size) -> int:
    """Traffic of the (C, V) fp32 chunk buffer summed over the chunks (N rows in all): the forward GEMM writes
    it and logprobs_forward reads it; the backward's recompute GEMM writes it again and logprobs_backward
    reads and rewrites it in place (dlogits): 5 N V fp32 accesses. The two backward GEMMs (d_hidden, d_weight)
    each read dlogits in the operand dtype; a low-precision operand first costs one fp32 read + one
    operand-dtype write of the copy."""
    es = TORCH_DTYPES[size.dtype].itemsize
    nv = size.tokens * size.vocab
    copy = nv * (4 + es) if es < 4 else 0
    return 5 * nv * 4 + 2 * nv * es + copy


def bytes_moved(size: Size) -> int:
    es = TORCH_DTYPES[size.dtype].itemsize
    nh, vh = size.tokens * size.hidden, size.vocab * size.hidden
    # operands: read hidden and W in forward and again in backward, write dhidden and dW; per-token inputs;
    # plus the chunked logits traffic
    return 2 * (nh + vh) * es + (nh + vh) * es + size.tokens * (8 + 4 * 4) + logits_bytes(size)


def flops(size: Size) -> int:
    """4 GEMMs of 2 N V H FLOPs: the forward logits, the backward's recompute of them, d_hidden = dlogits @ W
    and d_weight = dlogits.T @ h (the elementwise softmax work is negligible next to them)."""
    return 4 * 2 * size.tokens * size.vocab * size.hidden


register(
    Case(
        name="fused-linear",
        summary="fused_linear_grpo_loss forward + backward from hidden states",
        providers=("ours", "naive", "liger"),
        tokens=(4096,),
        vocabs=(50257, 128256, 151936),
        hidden=256,
        build=build,
        run=run,
        check=check,
        bytes_moved=bytes_moved,
        flops=flops,
        cuda_tokens=(8192,),
        skip_reason=third_party_skip,
        order=3,
    )
)
