"""Torch launchers for the token-level GRPO loss: the reference backend and the fallback off CUDA.

Same contract as `kernels/triton_token_loss.py` (see there for the math): the vocabulary pass is
`kernels.torch_logprobs` (chunked, float64 sums, no (N, V) fp32 in the forward), with masked rows passed
as ignored ids (-100) so they give zeros and zero dlogits rows; the per-row terms (ratio, clipped
surrogate, k3 KL, the row's loss share, clip flags) and the backward's per-row coefficient are fp32 torch
ops on (N,) tensors, the same operations in the same order as the Triton kernels. On CPU the masked rows
still pass through the vocabulary chunks (then zeroed); on CUDA nothing syncs with the host.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor

from . import torch_logprobs

if TYPE_CHECKING:
    from .token_loss import LossRows, TokenLossOut, TokenLossSpec


def _live_ids(ids: Tensor, rows: LossRows) -> Tensor:
    """ids with every skipped row (mask 0, i.e. scale 0, or an id < 0) set to the ignore index -100."""
    return ids.masked_fill(rows.scale == 0, -100)


def surrogate(logp: Tensor, rows: LossRows, spec: TokenLossSpec) -> tuple[Tensor, Tensor, Tensor]:
    """(ratio, pg, dpg/dlogp), each (N,) fp32, as the Triton kernels' `_surrogate`: r = exp(logp - old), the
    clipped surrogate -min(min(r, delta) A, clamp(r, lo, hi) A) and its derivative (the active branch of the
    min, halved on a tie: torch.minimum's rule), or CISPO's -min(r, cap) A logp with its detached weight;
    pg and dpg times the off-policy weight."""
    adv = rows.adv.float()
    ratio = torch.exp(logp - (logp if rows.old is None else rows.old.float()))  # (N,)
    hi = spec.cap
    if spec.cispo:
        dpg = -ratio.clamp(max=hi) * adv
        pg = dpg * logp
    else:
        lo = 1.0 - spec.eps_low
        d1 = torch.where(ratio <= spec.delta, ratio, 0.0)  # d min(r, delta) / d logp
        d2 = torch.where((ratio >= lo) & (ratio <= hi), ratio, 0.0)  # d clamp(r, lo, hi) / d logp
        a1, a2 = ratio.clamp(max=spec.delta) * adv, ratio.clamp(lo, hi) * adv
        pg = -torch.minimum(a1, a2)
        dpg = -torch.where(a1 < a2, adv * d1, torch.where(a2 < a1, adv * d2, 0.5 * adv * (d1 + d2)))
    if rows.weight is not None:
        pg, dpg = pg * rows.weight.float(), dpg * rows.weight.float()
    return ratio, pg, dpg


def token_loss_forward(logits: Tensor, ids: Tensor, rows: LossRows, spec: TokenLossSpec) -> TokenLossOut:
    """logp, lse, entropy, ratio, pg, kl, loss (N,) fp32 and flags (N,) int8 (kernels/triton_token_loss.py)."""
    from .token_loss import TokenLossOut

    live_ids = _live_ids(ids, rows)
    logp, lse, entropy = torch_logprobs.logprobs_forward(logits, live_ids, spec.temperature)  # (N,) zeros when skipped
    ratio, pg, _ = surrogate(logp, rows, spec)
    adv = rows.adv.float()
    flags = ((ratio > spec.cap) & (adv > 0)).to(torch.int8) * 2
    if not spec.cispo:
        flags += ((ratio < 1.0 - spec.eps_low) & (adv < 0)).to(torch.int8)
    kl = torch.zeros_like(logp)
    if rows.ref is not None:
        d = rows.ref.float() - logp
        kl = torch.exp(d) - d - 1.0
    dead = live_ids < 0  # (N,)
    out = TokenLossOut(logp, lse, entropy, ratio, pg, kl, rows.scale.float() * (pg + spec.beta * kl), flags)
    for t, fill in ((out.ratio, 1.0), (out.pg, 0.0), (out.kl, 0.0), (out.loss, 0.0), (out.flags, 0)):
        t.masked_fill_(dead, fill)
    return out


def token_coef(logp: Tensor, rows: LossRows, spec: TokenLossSpec, grad_loss: Tensor) -> Tensor:
    """(N,) fp32 d loss / d logp: g * scale * (keep * w * dpg/dlogp + beta * (1 - exp(ref - logp)))."""
    _, _, dpg = surrogate(logp, rows, spec)
    if rows.keep is not None:
        dpg = dpg * rows.keep.float()
    dkl = torch.zeros_like(logp) if rows.ref is None else spec.beta * (1.0 - torch.exp(rows.ref.float() - logp))
    return grad_loss.float() * rows.scale.float() * (dpg + dkl)


def token_loss_backward(
    logits: Tensor,
    ids: Tensor,
    lse: Tensor,
    logp: Tensor,
    rows: LossRows,
    spec: TokenLossSpec,
    grad_loss: Tensor,
    out: Tensor | None = None,
) -> Tensor:
    """dlogits (N, V) in logits.dtype = coef * (onehot - softmax(logits / T)) / T, into `out` when given."""
    coef = token_coef(logp, rows, spec, grad_loss.detach().reshape(()))  # (N,)
    return torch_logprobs.logprobs_backward(logits, _live_ids(ids, rows), lse, coef, spec.temperature, out=out)
