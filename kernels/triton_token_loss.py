"""Triton launchers for the token-level GRPO loss fused into the vocabulary pass (CUDA backend).

Contract (shared with `kernels/torch_token_loss.py`; the math is `kernels.loss`'s, TRL's GRPO loss):

    token_loss_forward(logits (N, V), ids (N,), rows: LossRows, spec: TokenLossSpec) -> TokenLossOut
        logp, lse, entropy, ratio, pg, kl, loss (N,) fp32 and flags (N,) int8 (bit 0 clipped low, bit 1 high)
    token_loss_backward(logits, ids, lse, logp, rows, spec, grad_loss (scalar), out=None) -> dlogits (N, V)

One program per token row, as in `kernels/triton_logprobs.py`, whose row helpers (online max / sum-exp /
entropy over the vocabulary, dlogits, zero rows) both kernels call. Per row the forward then computes, in
fp32 registers, ratio r = exp(logp - old), the clipped surrogate pg = -min(min(r, delta) A, clamp(r, 1 - eps_low,
1 + eps_high) A) (cispo: pg = -min(r, eps_high) A logp), times the off-policy weight w, the k3 KL
kl = exp(ref - logp) - (ref - logp) - 1 and the row's share of the loss, loss = scale (pg + beta kl), with
scale = mask / normaliser (grpo: also / the sequence's length). The backward recomputes the per-token
coefficient from what the forward saved (logp, lse) and the same inputs,

    coef = g * scale * (keep * w * dpg/dlogp + beta * (1 - exp(ref - logp)))
    dpg/dlogp = -A r [branch of the min that is active, halved on a tie: torch.minimum's rule] (cispo: -min(r, eps_high) A)

and writes dlogits = coef * (onehot - softmax(z)) / T. A row with mask 0 (scale 0) or a negative id is
skipped: no logits read, zeros out (logp, entropy, kl, pg, loss 0, ratio 1, no flags) and a zero dlogits
row (also in place). Optional inputs (old, ref, weight, keep) are runtime flags, not constexprs: one
compiled kernel per (dtype, BLOCK_V) whatever the options. Importing this module imports triton.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import triton
import triton.language as tl

from .errors import ShapeError
from .triton_logprobs import CONFIGS as tlp_CONFIGS
from .triton_logprobs import FP_FUSION, _check, _config, _row_dlogits, _row_logp, _row_softmax_stats, _rows, _zero_row

if TYPE_CHECKING:
    from .token_loss import LossRows, TokenLossOut, TokenLossSpec

CONFIGS = tlp_CONFIGS  # (BLOCK_V, num_warps) pairs `_config` picks: the logprob kernels'


@triton.jit
def _surrogate(row, logp, old_ptr, adv_ptr, weight_ptr, lo, hi, delta, cispo, has_old, has_weight):
    """(ratio, A, pg, dpg/dlogp) of one row: r = exp(logp - old) (old = logp without old_ptr), the clipped
    surrogate pg = -min(min(r, delta) A, clamp(r, lo, hi) A) and its derivative (the active branch of the min,
    halved on a tie: torch.minimum's rule; a clamp passes its bounds), or CISPO's pg = -min(r, hi) A logp with
    its detached weight; pg and dpg times the off-policy weight. The forward uses pg, the backward dpg."""
    adv = tl.load(adv_ptr + row)
    old = logp
    if has_old != 0:
        old = tl.load(old_ptr + row)
    ratio = tl.exp(logp - old)
    if cispo != 0:
        dpg = -tl.minimum(ratio, hi) * adv
        pg = dpg * logp
    else:
        d1 = tl.where(ratio <= delta, ratio, 0.0)  # d min(r, delta) / d logp
        d2 = tl.where((ratio >= lo) & (ratio <= hi), ratio, 0.0)  # d clamp(r, lo, hi) / d logp
        a1 = tl.minimum(ratio, delta) * adv
        a2 = tl.minimum(tl.maximum(ratio, lo), hi) * adv
        pg = -tl.minimum(a1, a2)
        dpg = -tl.where(a1 < a2, adv * d1, tl.where(a2 < a1, adv * d2, 0.5 * adv * (d1 + d2)))
    if has_weight != 0:
        w = tl.load(weight_ptr + row)
        pg = pg * w
        dpg = dpg * w
    return ratio, adv, pg, dpg


@triton.jit
def _token_loss_fwd_kernel(
    logits_ptr,  # (N, V) fp32/bf16/fp16, last dim contiguous
    stride_row,  # elements between rows of logits (runtime)
    ids_ptr,  # (N,) int64; < 0: ignored row
    scale_ptr,  # (N,) fp32 mask / normaliser (0: masked row, skipped)
    old_ptr,  # (N,) fp32 old log-probs (read when has_old)
    ref_ptr,  # (N,) fp32 reference log-probs (read when has_ref)
    adv_ptr,  # (N,) fp32 advantage of the row's sequence
    weight_ptr,  # (N,) fp32 off-policy weight (read when has_weight)
    logp_ptr,  # (N,) fp32 out
    lse_ptr,  # (N,) fp32 out
    entropy_ptr,  # (N,) fp32 out
    ratio_ptr,  # (N,) fp32 out: exp(logp - old)
    pg_ptr,  # (N,) fp32 out: w * clipped surrogate (the policy term of TRL's per-token loss)
    kl_ptr,  # (N,) fp32 out: k3 KL (0 without a reference)
    loss_ptr,  # (N,) fp32 out: scale * (pg + beta * kl)
    flags_ptr,  # (N,) int8 out: 1 clipped low, 2 clipped high
    V,  # vocabulary size (runtime)
    inv_temperature,  # fp32 1 / T
    lo,  # fp32 1 - eps_low
    hi,  # fp32 1 + eps_high (cispo: its cap, eps_high)
    delta,  # fp32 upper clamp of the ratio (+inf: none)
    beta,  # fp32 KL coefficient
    cispo,  # i32 1: CISPO's loss
    has_old,  # i32 flags for the optional inputs
    has_ref,
    has_weight,
    BLOCK_V: tl.constexpr,
):
    row = tl.program_id(0).to(tl.int64)
    tok = tl.load(ids_ptr + row)
    scale = tl.load(scale_ptr + row)
    if (tok < 0) | (scale == 0.0):  # masked or ignored row: no logits read
        tl.store(logp_ptr + row, 0.0)
        tl.store(lse_ptr + row, 0.0)
        tl.store(entropy_ptr + row, 0.0)
        tl.store(ratio_ptr + row, 1.0)
        tl.store(pg_ptr + row, 0.0)
        tl.store(kl_ptr + row, 0.0)
        tl.store(loss_ptr + row, 0.0)
        tl.store(flags_ptr + row, tl.zeros((), dtype=tl.int8))
        return
    row_ptr = logits_ptr + row * stride_row
    m, log_s, u_over_s = _row_softmax_stats(row_ptr, V, inv_temperature, BLOCK_V)
    logp = _row_logp(row_ptr, tok, m, log_s, V, inv_temperature)
    ratio, adv, pg, _ = _surrogate(row, logp, old_ptr, adv_ptr, weight_ptr, lo, hi, delta, cispo, has_old, has_weight)
    flags = tl.where((ratio > hi) & (adv > 0.0), 2, 0)
    if cispo == 0:
        flags += tl.where((ratio < lo) & (adv < 0.0), 1, 0)
    kl = tl.zeros((), dtype=tl.float32)
    if has_ref != 0:
        d = tl.load(ref_ptr + row) - logp
        kl = tl.exp(d) - d - 1.0
    tl.store(logp_ptr + row, logp)
    tl.store(lse_ptr + row, m + log_s)
    tl.store(entropy_ptr + row, log_s - u_over_s)
    tl.store(ratio_ptr + row, ratio)
    tl.store(pg_ptr + row, pg)
    tl.store(kl_ptr + row, kl)
    tl.store(loss_ptr + row, scale * (pg + beta * kl))
    tl.store(flags_ptr + row, flags.to(tl.int8))


@triton.jit
def _token_loss_bwd_kernel(
    logits_ptr,  # (N, V) fp32/bf16/fp16, last dim contiguous
    stride_row,  # elements between rows of logits (runtime)
    dlogits_ptr,  # (N, V) out, logits dtype; may be logits_ptr itself (in place)
    stride_out_row,  # elements between rows of dlogits (runtime)
    ids_ptr,  # (N,) int64
    scale_ptr,  # (N,) fp32 mask / normaliser
    lse_ptr,  # (N,) fp32 from the forward
    logp_ptr,  # (N,) fp32 from the forward
    old_ptr,  # (N,) fp32 (read when has_old)
    ref_ptr,  # (N,) fp32 (read when has_ref)
    adv_ptr,  # (N,) fp32
    weight_ptr,  # (N,) fp32 (read when has_weight)
    keep_ptr,  # (N,) fp32 top-entropy mask, 0 or 1 (read when has_keep)
    grad_ptr,  # () fp32 upstream gradient of the loss (read on the device: no host sync)
    V,  # vocabulary size (runtime)
    inv_temperature,  # fp32 1 / T
    lo,  # fp32 1 - eps_low
    hi,  # fp32 1 + eps_high (cispo: its cap, eps_high)
    delta,  # fp32 upper clamp of the ratio (+inf: none)
    beta,  # fp32 KL coefficient
    cispo,  # i32
    has_old,  # i32 flags for the optional inputs
    has_ref,
    has_weight,
    has_keep,
    BLOCK_V: tl.constexpr,
):
    row = tl.program_id(0).to(tl.int64)
    out_ptr = dlogits_ptr + row * stride_out_row
    tok = tl.load(ids_ptr + row)
    scale = tl.load(scale_ptr + row)
    if (tok < 0) | (scale == 0.0):  # masked or ignored row: a zero dlogits row, no logits read
        _zero_row(out_ptr, V, BLOCK_V)
        return
    logp = tl.load(logp_ptr + row)
    _, _, _, dpg = _surrogate(row, logp, old_ptr, adv_ptr, weight_ptr, lo, hi, delta, cispo, has_old, has_weight)
    if has_keep != 0:
        dpg = dpg * tl.load(keep_ptr + row)
    dkl = tl.zeros((), dtype=tl.float32)
    if has_ref != 0:
        dkl = beta * (1.0 - tl.exp(tl.load(ref_ptr + row) - logp))
    coef = tl.load(grad_ptr) * scale * (dpg + dkl) * inv_temperature  # dloss/dlogp, then dz/dx = 1 / T
    _row_dlogits(logits_ptr + row * stride_row, out_ptr, tok, tl.load(lse_ptr + row), coef, V, inv_temperature, BLOCK_V)


# Every @triton.jit function these kernels reach, by its name in this module (the test harness swaps them
# all between interpreted and compiled objects; see tests/kernels/test_triton_logprobs.py).
# The row helpers live in kernels.triton_logprobs (a harness swaps its JIT_FUNCTIONS too: their callees
# resolve there).
JIT_FUNCTIONS = (
    "_row_softmax_stats", "_row_logp", "_row_dlogits", "_zero_row", "_surrogate", "_token_loss_fwd_kernel", "_token_loss_bwd_kernel",
)  # fmt: skip


def _scalars(spec: TokenLossSpec) -> tuple:
    """The kernels' shared scalar arguments after inv_temperature: lo, hi, delta, beta, cispo."""
    return 1.0 - spec.eps_low, spec.cap, spec.delta, spec.beta, int(spec.cispo)


def _side(t: torch.Tensor | None, n: int, fallback: torch.Tensor) -> tuple[torch.Tensor, int]:
    """(a contiguous fp32 (N,) tensor or `fallback` as a never-read placeholder, its has_* flag)."""
    if t is None:
        return fallback, 0
    if t.shape != (n,):
        raise ShapeError(f"per-row inputs must be (N,) = ({n},), got {tuple(t.shape)}")
    return _rows(t, torch.float32), 1


def token_loss_forward(logits: torch.Tensor, ids: torch.Tensor, rows: LossRows, spec: TokenLossSpec) -> TokenLossOut:
    """See the module docstring; never materialises (N, V) fp32."""
    from .token_loss import TokenLossOut

    _check(logits, ids, spec.temperature)
    n, v = logits.shape
    f32 = dict(dtype=torch.float32, device=logits.device)
    out = TokenLossOut(*(torch.empty(n, **f32) for _ in range(7)), flags=torch.empty(n, dtype=torch.int8, device=logits.device))
    if n == 0:
        return out
    if v == 0:
        raise ShapeError("logits has an empty vocabulary (V == 0)")
    scale, _ = _side(rows.scale, n, out.loss)
    adv, _ = _side(rows.adv, n, out.loss)
    old, has_old = _side(rows.old, n, out.loss)
    ref, has_ref = _side(rows.ref, n, out.loss)
    weight, has_weight = _side(rows.weight, n, out.loss)
    block_v, num_warps = _config(v)
    _token_loss_fwd_kernel[(n,)](
        logits, logits.stride(0), _rows(ids, torch.int64), scale, old, ref, adv, weight,
        out.logp, out.lse, out.entropy, out.ratio, out.pg, out.kl, out.loss, out.flags,
        v, 1.0 / float(spec.temperature), *_scalars(spec), has_old, has_ref, has_weight,
        BLOCK_V=block_v, num_warps=num_warps, enable_fp_fusion=FP_FUSION,
    )  # fmt: skip
    return out


def token_loss_backward(
    logits: torch.Tensor,
    ids: torch.Tensor,
    lse: torch.Tensor,
    logp: torch.Tensor,
    rows: LossRows,
    spec: TokenLossSpec,
    grad_loss: torch.Tensor,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """dlogits (N, V) in logits.dtype (see the module docstring), into `out` when given (may be `logits`)."""
    _check(logits, ids, spec.temperature)
    n, v = logits.shape
    if out is None:
        out = torch.empty((n, v), dtype=logits.dtype, device=logits.device)  # (N, V)
    elif out.shape != logits.shape or out.dtype != logits.dtype or (v > 0 and out.stride(1) != 1):
        raise ShapeError(f"out must be {tuple(logits.shape)} {logits.dtype} with a contiguous last dim")
    if n == 0 or v == 0:
        return out
    lse_rows, _ = _side(lse, n, lse)
    logp_rows, _ = _side(logp, n, lse)
    scale, _ = _side(rows.scale, n, lse)
    adv, _ = _side(rows.adv, n, lse)
    old, has_old = _side(rows.old, n, lse)
    ref, has_ref = _side(rows.ref, n, lse)
    weight, has_weight = _side(rows.weight, n, lse)
    keep, has_keep = _side(rows.keep, n, lse)
    block_v, num_warps = _config(v)
    _token_loss_bwd_kernel[(n,)](
        logits, logits.stride(0), out, out.stride(0), _rows(ids, torch.int64), scale, lse_rows, logp_rows,
        old, ref, adv, weight, keep, grad_loss.detach().to(torch.float32).reshape(()),
        v, 1.0 / float(spec.temperature), *_scalars(spec), has_old, has_ref, has_weight, has_keep,
        BLOCK_V=block_v, num_warps=num_warps, enable_fp_fusion=FP_FUSION,
    )  # fmt: skip
    return out
