"""token_level_loss: the token-level GRPO loss in one pass over the vocabulary, differentiable w.r.t. logits.

`TokenLossFunction` calls the active backend's token-loss launchers (`kernels.dispatch.launchers(device,
"token_loss")`: `kernels/triton_token_loss.py` on CUDA, `kernels/torch_token_loss.py` elsewhere). The
forward computes per row logp, LSE, entropy, the ratio, the clipped surrogate, the k3 KL, the row's share
of the loss and the clip flags in the pass that reads the logits, and saves only (logits, ids, lse,
logp); the backward re-reads the logits once and writes dlogits = coef * (onehot - softmax) / T with the
per-row coefficient computed inline, into the logits buffer itself with `inplace_backward=True`.

What stays outside the vocabulary pass, on (N,) tensors: the per-row normaliser `scale` (mask / normaliser,
/ the sequence length for grpo), the off-policy weight (a function of old_logp and behavior_logp only),
the top-entropy keep mask (a quantile over every valid token's entropy, so it needs the whole forward
first: the loss is then re-summed from the kernel's pg and kl with the mask, and the mask goes to the
backward), and the final sum, in float64. Sequence-level ratios (GSPO) need a sum over tokens inside the
ratio and take `kernels.loss`'s two-stage path instead.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace

import torch
from torch import Tensor

from .dispatch import launchers
from .logprobs import blockwise_backward, blockwise_forward


@dataclass(frozen=True)
class TokenLossSpec:
    """The scalar options: cap is the upper clip 1 + eps_high (cispo: eps_high itself); delta is +inf when off."""

    cispo: bool
    eps_low: float
    cap: float
    delta: float
    beta: float
    temperature: float

    @classmethod
    def of(cls, loss_type: str, eps_low: float, eps_high: float, delta: float | None, beta: float, temperature: float) -> TokenLossSpec:
        cispo = loss_type == "cispo"
        return cls(cispo, eps_low, eps_high if cispo else 1.0 + eps_high, math.inf if delta is None else delta, beta, temperature)


@dataclass(frozen=True)
class LossRows:
    """Per-row inputs, each (N,) fp32: scale = mask / normaliser (0 skips the row), adv the row's sequence
    advantage; optional old and ref log-probs, off-policy weight w and top-entropy keep mask (0 / 1)."""

    scale: Tensor
    adv: Tensor
    old: Tensor | None = None
    ref: Tensor | None = None
    weight: Tensor | None = None
    keep: Tensor | None = None

    def part(self, start: int, stop: int) -> LossRows:
        return LossRows(**{f.name: None if (t := getattr(self, f.name)) is None else t[start:stop] for f in fields(self)})


@dataclass(frozen=True)
class TokenLossOut:
    """The forward's per-row outputs, (N,) fp32 except flags (N,) int8 (1: clipped low, 2: clipped high)."""

    logp: Tensor
    lse: Tensor
    entropy: Tensor
    ratio: Tensor
    pg: Tensor
    kl: Tensor
    loss: Tensor
    flags: Tensor

    @classmethod
    def cat(cls, parts: list[TokenLossOut]) -> TokenLossOut:
        if len(parts) == 1:
            return parts[0]
        return cls(**{f.name: torch.cat([getattr(p, f.name) for p in parts]) for f in fields(cls)})


class TokenLossFunction(torch.autograd.Function):
    """(logits (..., V), ids (...), rows: LossRows, spec, keep_fn, inplace) -> (loss () fp32, TokenLossOut, keep).

    Only the loss is differentiable (w.r.t. logits). `keep_fn(entropy (N,)) -> (N,) bool | None` gives the
    top-entropy keep mask from the forward's entropy (None: keep all).
    """

    @staticmethod
    def forward(ctx, logits: Tensor, ids: Tensor, rows: LossRows, spec: TokenLossSpec, keep_fn, inplace: bool):  # type: ignore[override]
        ops = launchers(logits.device, "token_loss")
        flat_ids = ids.reshape(-1)  # (N,)
        out = TokenLossOut.cat(blockwise_forward(logits, lambda block, start, stop: ops.token_loss_forward(block, flat_ids[start:stop], rows.part(start, stop), spec)))
        keep = keep_fn(out.entropy)  # (N,) bool | None
        per_row = out.loss  # (N,) scale * (pg + beta * kl)
        if keep is not None:
            rows = replace(rows, keep=keep.float())
            per_row = rows.scale * (rows.keep * out.pg + spec.beta * out.kl)
        loss = per_row.sum(dtype=torch.float64).float()  # one rounding of an order-free sum
        ctx.save_for_backward(logits, ids, out.lse, out.logp)
        ctx.rows, ctx.spec, ctx.inplace = rows, spec, inplace
        return loss, out, keep

    @staticmethod
    def backward(ctx, grad_loss: Tensor, *_):  # type: ignore[override]
        logits, ids, lse, logp = ctx.saved_tensors
        ops = launchers(logits.device, "token_loss")
        flat_ids = ids.reshape(-1)

        def write(block: Tensor, out: Tensor, start: int, stop: int) -> None:
            part = ctx.rows.part(start, stop)
            ops.token_loss_backward(block, flat_ids[start:stop], lse[start:stop], logp[start:stop], part, ctx.spec, grad_loss, out=out)

        return blockwise_backward(logits, ctx.inplace, write), None, None, None, None, None


def token_level_loss(logits: Tensor, ids: Tensor, rows: LossRows, spec: TokenLossSpec, keep_fn=None, inplace_backward: bool = False):
    """(loss () fp32, TokenLossOut of (N,) rows, keep (N,) bool | None): see the module docstring.

    logits (..., V) with ids (...) (N = ids.numel()); `kernels.loss.grpo_loss` builds `rows` and `spec`.
    """
    keep_fn = keep_fn or (lambda entropy: None)
    loss, out, keep = TokenLossFunction.apply(logits, ids, rows, spec, keep_fn, bool(inplace_backward))
    return loss, out, keep
