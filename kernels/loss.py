"""GRPO loss math on per-token log-probs (B, T), shared by every backend; follows TRL's GRPO loss.

Plain torch autograd on (B, T) tensors: the V-dimension work happens before, in `token_logprobs`
(`grpo_loss`) or in the fused linear path (`kernels.fused_linear`). Everything here is fp32.

    old_logp None -> logp.detach(); ref_logp None requires beta == 0
    log_ratio = logp - old_logp; ratio_level "sequence" (GSPO): masked mean per sequence, (B, 1)
    coef_1 = exp(log_ratio); coef_2 = clamp(coef_1, 1 - eps_low, 1 + eps_high); delta: coef_1 = min(coef_1, delta)
    per_token = -min(coef_1 * A, coef_2 * A)   (cispo: -min(coef_1, 1 + eps_high).detach() * A * logp)
    per_token += beta * kl,  kl = exp(ref - logp) - (ref - logp) - 1   (k3)
    grpo: sum_b [sum_t per_token * mask / max(sum_t mask, 1)] / normalizer      (default B)
    bnpo, dapo, cispo: sum(per_token * mask) / normalizer                      (default max(sum mask, 1))
    dr_grpo: sum(per_token * mask) / normalizer                                (default B * T)

Pass the whole-batch `normalizer` to each micro-batch so that the micro-batch losses sum to the
whole-batch loss (for grpo: the total number of sequences; for dapo: the total number of tokens over
micro-batches and ranks). Note: TRL caps the CISPO weight at `epsilon_high` itself; here the cap is
`1 + eps_high`, like the other loss types' upper clip (the CISPO paper's form).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from .errors import OptionError, ShapeError
from .logprobs import token_logprobs

LOSS_TYPES = ("grpo", "bnpo", "dr_grpo", "dapo", "cispo")
RATIO_LEVELS = ("token", "sequence")


@dataclass(frozen=True)
class GRPOStats:
    """Per-token statistics of one loss call, all (B, T) and detached.

    `ratio` is the importance ratio exp(log_ratio) before the delta clamp (broadcast over T at sequence
    level); `entropy` is the entropy of softmax(logits / T), or None when the loss was given log-probs only.
    """

    logp: Tensor
    kl: Tensor
    ratio: Tensor
    clipped_low: Tensor
    clipped_high: Tensor
    entropy: Tensor | None


def check_options(loss_type: str, ratio_level: str, beta: float, ref_logp: Tensor | None, eps_low: float, eps_high: float) -> None:
    """Raise OptionError for a setting the loss cannot honour."""
    if loss_type not in LOSS_TYPES:
        raise OptionError(f"unknown loss_type {loss_type!r}: use one of {', '.join(LOSS_TYPES)}")
    if ratio_level not in RATIO_LEVELS:
        raise OptionError(f"unknown ratio_level {ratio_level!r}: use 'token' or 'sequence'")
    if beta < 0:
        raise OptionError(f"beta must be >= 0, got {beta}")
    if beta > 0 and ref_logp is None:
        raise OptionError(f"beta={beta} needs ref_logp (the reference model's log-probs); pass it or set beta=0")
    if not 0 <= eps_low < 1 or eps_high < 0:
        raise OptionError(f"need 0 <= eps_low < 1 and eps_high >= 0, got eps_low={eps_low}, eps_high={eps_high}")


def _check_shapes(logp: Tensor, old_logp: Tensor | None, ref_logp: Tensor | None, advantages: Tensor, mask: Tensor) -> None:
    if logp.dim() != 2:
        raise ShapeError(f"per-token tensors must be (B, T), got logp {tuple(logp.shape)}")
    for name, t in (("old_logp", old_logp), ("ref_logp", ref_logp), ("mask", mask)):
        if t is not None and t.shape != logp.shape:
            raise ShapeError(f"{name} {tuple(t.shape)} must have the shape of logp {tuple(logp.shape)}")
    if advantages.shape != logp.shape[:1]:
        raise ShapeError(f"advantages {tuple(advantages.shape)} must be (B,) = ({logp.shape[0]},)")


def grpo_loss_from_logp(
    logp: Tensor,
    old_logp: Tensor | None,
    ref_logp: Tensor | None,
    advantages: Tensor,
    mask: Tensor,
    *,
    loss_type: str = "grpo",
    eps_low: float = 0.2,
    eps_high: float = 0.2,
    delta: float | None = None,
    beta: float = 0.0,
    ratio_level: str = "token",
    normalizer: float | Tensor | None = None,
    entropy: Tensor | None = None,
) -> tuple[Tensor, GRPOStats]:
    """The GRPO loss (scalar fp32) from per-token log-probs logp (B, T) and the per-token stats."""
    check_options(loss_type, ratio_level, beta, ref_logp, eps_low, eps_high)
    _check_shapes(logp, old_logp, ref_logp, advantages, mask)
    logp = logp.float()  # (B, T)
    m = mask.float()  # (B, T)
    adv = advantages.float().unsqueeze(1)  # (B, 1)
    old = logp.detach() if old_logp is None else old_logp.float()  # (B, T)
    log_ratio = logp - old  # (B, T)
    if ratio_level == "sequence":
        log_ratio = (log_ratio * m).sum(-1, keepdim=True) / m.sum(-1, keepdim=True).clamp(min=1.0)  # (B, 1)
    coef_1 = torch.exp(log_ratio)  # (B, T) or (B, 1)
    ratio = coef_1.detach()
    if loss_type == "cispo":
        weight = torch.clamp(coef_1, max=1.0 + eps_high).detach()
        per_token = -weight * adv * logp  # (B, T)
    else:
        coef_2 = torch.clamp(coef_1, 1.0 - eps_low, 1.0 + eps_high)
        if delta is not None:
            coef_1 = torch.clamp(coef_1, max=delta)
        per_token = -torch.min(coef_1 * adv, coef_2 * adv)  # (B, T)
    if ref_logp is not None:
        diff = ref_logp.float() - logp  # (B, T)
        kl = torch.exp(diff) - diff - 1.0  # (B, T) k3
        if beta != 0.0:
            per_token = per_token + beta * kl
        kl = kl.detach()
    else:
        kl = torch.zeros_like(logp)
    per_token = per_token.expand_as(logp) * m  # (B, T)
    if loss_type == "grpo":
        total = (per_token.sum(-1) / m.sum(-1).clamp(min=1.0)).sum()
        default = float(logp.shape[0])
    elif loss_type == "dr_grpo":
        total, default = per_token.sum(), float(logp.numel())
    else:
        total, default = per_token.sum(), m.sum().clamp(min=1.0)
    loss = total / (default if normalizer is None else normalizer)
    coef = coef_1.detach()
    stats = GRPOStats(
        logp=logp.detach(),
        kl=kl,
        ratio=ratio.expand_as(logp),
        clipped_low=((coef < 1.0 - eps_low) & (adv < 0)).expand_as(logp),
        clipped_high=((coef > 1.0 + eps_high) & (adv > 0)).expand_as(logp),
        entropy=None if entropy is None else entropy.detach(),
    )
    return loss, stats


def grpo_loss(
    logits: Tensor,
    ids: Tensor,
    old_logp: Tensor | None,
    ref_logp: Tensor | None,
    advantages: Tensor,
    mask: Tensor,
    *,
    loss_type: str = "grpo",
    eps_low: float = 0.2,
    eps_high: float = 0.2,
    delta: float | None = None,
    beta: float = 0.0,
    temperature: float = 1.0,
    ratio_level: str = "token",
    normalizer: float | Tensor | None = None,
    inplace_backward: bool = False,
) -> tuple[Tensor, GRPOStats]:
    """GRPO loss on logits (B, T, V) for chosen ids (B, T): (loss scalar fp32, GRPOStats).

    The log-probs come from `token_logprobs` (online LSE, no (N, V) fp32 in the forward); with
    `inplace_backward=True` the backward writes dlogits into the logits buffer (opt-in).
    """
    check_options(loss_type, ratio_level, beta, ref_logp, eps_low, eps_high)
    if logits.dim() != 3:
        raise ShapeError(f"logits must be (B, T, V), got {tuple(logits.shape)}")
    logp, entropy = token_logprobs(logits, ids, temperature, with_entropy=True, inplace_backward=inplace_backward)
    return grpo_loss_from_logp(
        logp, old_logp, ref_logp, advantages, mask,
        loss_type=loss_type, eps_low=eps_low, eps_high=eps_high, delta=delta, beta=beta,
        ratio_level=ratio_level, normalizer=normalizer, entropy=entropy,
    )  # fmt: skip
