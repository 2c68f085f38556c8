"""GRPO loss math on per-token log-probs (B, T), shared by every backend; follows TRL's GRPO loss.

Plain torch autograd on (B, T) tensors: the V-dimension work happens before, in `token_logprobs`
(`grpo_loss`) or in the fused linear path (`kernels.fused_linear`). Everything here is fp32.

    old_logp None -> logp.detach(); ref_logp None requires beta == 0 (and then stats.kl is None)
    log_ratio = logp - old_logp; ratio_level "sequence" (GSPO): masked mean per sequence, (B, 1)
    coef_1 = exp(log_ratio); coef_2 = clamp(coef_1, 1 - eps_low, 1 + eps_high); delta: coef_1 = min(coef_1, delta)
    per_token = -min(coef_1 * A, coef_2 * A)
    cispo: per_token = -min(coef_1, eps_high).detach() * A * logp   (TRL/Liger: the cap is eps_high itself,
           ScaleRL recommends 5; eps_high < 1 is refused)
    top_entropy_quantile q < 1: per_token *= (entropy >= quantile(entropy[mask], 1 - q)) & mask
    behavior_logp given (off-policy correction): per_token *= w, w detached,
        d = (old_logp - behavior_logp) * mask; is_level token: w = exp(d) (B, T); sequence: w = exp(sum_t d) (B, 1)
        is_mode truncate: w = min(w, is_cap); mask: w = 0 where w > is_cap
    per_token += beta * kl,  kl = exp(ref - logp) - (ref - logp) - 1   (k3; after the two masks, as in TRL)
    grpo: sum_b [sum_t per_token * mask / max(sum_t mask, 1)] / normalizer      (default B)
    bnpo, dapo, cispo: sum(per_token * mask) / normalizer                      (default max(sum mask, 1))
    dr_grpo: sum(per_token * mask) / normalizer                                (default B * T)

The order (entropy mask, then IS weight, then + beta * KL) and the IS formula are TRL's
`GRPOTrainer._compute_loss` and its vLLM importance-sampling correction (`vllm_importance_sampling_mode`
`token_truncate | token_mask | sequence_truncate | sequence_mask` = is_level x is_mode, `is_cap` =
`vllm_importance_sampling_clip_max`, default 3.0; no lower bound). The masks do not change the
normalisers. The entropy quantile (linear interpolation, torch.quantile's rule) is taken in float64 over
the valid tokens of this call; TRL gathers them over ranks first, so with several micro-batches or ranks
the kept set is per call.

Pass the whole-batch `normalizer` to each micro-batch so that the micro-batch losses sum to the
whole-batch loss (for grpo: the total number of sequences; for dapo: the total number of tokens over
micro-batches and ranks).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from .errors import OptionError, ShapeError
from .logprobs import check_ids, token_logprobs
from .token_loss import LossRows, TokenLossSpec, token_level_loss

LOSS_TYPES = ("grpo", "bnpo", "dr_grpo", "dapo", "cispo")
RATIO_LEVELS = ("token", "sequence")
IS_LEVELS = ("token", "sequence")
IS_MODES = ("truncate", "mask")
IS_CAP = 3.0  # TRL's vllm_importance_sampling_clip_max default


@dataclass(frozen=True)
class GRPOStats:
    """Per-token statistics of one loss call, all (B, T) and detached.

    `ratio` is the importance ratio exp(log_ratio) before the delta clamp (broadcast over T at sequence
    level); `kl` is the k3 KL to the reference, None when no ref_logp was given; `entropy` is the entropy
    of softmax(logits / T), or None when the loss was given log-probs only; `is_weight` is the off-policy
    weight after truncation or masking (broadcast over T at sequence level), None without behavior_logp;
    `entropy_mask` (bool) marks the tokens the top-entropy rule kept, None when top_entropy_quantile == 1.
    For cispo, `clipped_high` is (ratio > eps_high) & (A > 0) and `clipped_low` is all False (TRL's metric).
    """

    logp: Tensor
    kl: Tensor | None
    ratio: Tensor
    clipped_low: Tensor
    clipped_high: Tensor
    entropy: Tensor | None
    is_weight: Tensor | None = None
    entropy_mask: Tensor | None = None


def check_options(
    loss_type: str,
    ratio_level: str,
    beta: float,
    ref_logp: Tensor | None,
    eps_low: float,
    eps_high: float,
    *,
    is_level: str = "token",
    is_mode: str = "truncate",
    is_cap: float = IS_CAP,
    top_entropy_quantile: float = 1.0,
) -> None:
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
    if loss_type == "cispo" and eps_high < 1:
        raise OptionError(
            f"CISPO caps the importance weight at eps_high itself (as TRL and Liger do), not at 1 + eps_high: "
            f"eps_high={eps_high} would cap it below 1; use TRL's recommended value, e.g. eps_high=5"
        )
    if is_level not in IS_LEVELS:
        raise OptionError(f"unknown is_level {is_level!r}: use one of {', '.join(IS_LEVELS)}")
    if is_mode not in IS_MODES:
        raise OptionError(f"unknown is_mode {is_mode!r}: use one of {', '.join(IS_MODES)}")
    if not is_cap > 0:
        raise OptionError(f"is_cap must be > 0, got {is_cap}")
    if not 0.0 <= top_entropy_quantile <= 1.0:
        raise OptionError(f"top_entropy_quantile must be in [0, 1], got {top_entropy_quantile}")


def _check_shapes(logp: Tensor, old_logp: Tensor | None, ref_logp: Tensor | None, advantages: Tensor, mask: Tensor, **more: Tensor | None) -> None:
    if logp.dim() != 2:
        raise ShapeError(f"per-token tensors must be (B, T), got logp {tuple(logp.shape)}")
    for name, t in (("old_logp", old_logp), ("ref_logp", ref_logp), ("mask", mask), *more.items()):
        if t is not None and t.shape != logp.shape:
            raise ShapeError(f"{name} {tuple(t.shape)} must be (B, T) = {tuple(logp.shape)}, the shape of the per-token log-probs")
    if advantages.shape != logp.shape[:1]:
        raise ShapeError(f"advantages {tuple(advantages.shape)} must be (B,) = ({logp.shape[0]},)")


def high_entropy_mask(entropy: Tensor, mask: Tensor, top_entropy_quantile: float) -> Tensor:
    """TRL's get_high_entropy_mask: (B, T) bool, valid tokens whose entropy >= the (1 - q) quantile of the
    valid tokens' entropies (linear interpolation, in float64; no size limit unlike torch.quantile)."""
    valid = mask.bool()  # (B, T)
    local = entropy.detach()[valid].double().sort().values  # (K,)
    if local.numel() == 0:
        return torch.zeros_like(valid)
    pos = (1.0 - top_entropy_quantile) * (local.numel() - 1)
    lo = int(pos)
    hi = min(lo + 1, local.numel() - 1)
    threshold = torch.lerp(local[lo], local[hi], torch.tensor(pos - lo, dtype=torch.float64, device=local.device))
    return (entropy.detach().double() * valid >= threshold) & valid


def importance_weight(old_logp: Tensor, behavior_logp: Tensor, mask: Tensor, is_level: str, is_mode: str, is_cap: float) -> Tensor:
    """TRL's vLLM importance-sampling correction: detached (B, T) (token) or (B, 1) (sequence) weights."""
    diff = (old_logp.detach().float() - behavior_logp.float()) * mask  # (B, T)
    if is_level == "sequence":
        diff = diff.sum(-1, keepdim=True)  # (B, 1)
    weight = torch.exp(diff)
    if is_mode == "truncate":
        return torch.clamp(weight, max=is_cap)
    return weight.masked_fill(weight > is_cap, 0.0)


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
    behavior_logp: Tensor | None = None,
    is_level: str = "token",
    is_mode: str = "truncate",
    is_cap: float = IS_CAP,
    top_entropy_quantile: float = 1.0,
) -> tuple[Tensor, GRPOStats]:
    """The GRPO loss (scalar fp32) from per-token log-probs logp (B, T) and the per-token stats."""
    check_options(
        loss_type, ratio_level, beta, ref_logp, eps_low, eps_high,
        is_level=is_level, is_mode=is_mode, is_cap=is_cap, top_entropy_quantile=top_entropy_quantile,
    )  # fmt: skip
    _check_shapes(logp, old_logp, ref_logp, advantages, mask, behavior_logp=behavior_logp, entropy=entropy)
    if top_entropy_quantile < 1.0 and entropy is None:
        raise OptionError(f"top_entropy_quantile={top_entropy_quantile} needs the per-token entropy: pass entropy= (grpo_loss and fused_linear_grpo_loss have it)")
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
        weight = torch.clamp(coef_1, max=eps_high).detach()
        per_token = -weight * adv * logp  # (B, T)
    else:
        coef_2 = torch.clamp(coef_1, 1.0 - eps_low, 1.0 + eps_high)
        if delta is not None:
            coef_1 = torch.clamp(coef_1, max=delta)
        per_token = -torch.min(coef_1 * adv, coef_2 * adv)  # (B, T)
    keep = None
    if top_entropy_quantile < 1.0:
        keep = high_entropy_mask(entropy, m, top_entropy_quantile)  # (B, T) bool
        per_token = per_token * keep
    is_weight = None
    if behavior_logp is not None:
        is_weight = importance_weight(old, behavior_logp, m, is_level, is_mode, is_cap)  # (B, T) or (B, 1)
        per_token = per_token * is_weight
    kl = None
    if ref_logp is not None:
        diff = ref_logp.float() - logp  # (B, T)
        kl = torch.exp(diff) - diff - 1.0  # (B, T) k3
        if beta != 0.0:
            per_token = per_token + beta * kl
        kl = kl.detach()
    loss = (per_token.expand_as(logp) * row_scale(m, loss_type, normalizer)).sum()  # row_scale carries the mask
    if loss_type == "cispo":
        clipped_low = torch.zeros_like(logp, dtype=torch.bool)
        clipped_high = ((ratio > eps_high) & (adv > 0)).expand_as(logp)
    else:
        clipped_low = ((ratio < 1.0 - eps_low) & (adv < 0)).expand_as(logp)
        clipped_high = ((ratio > 1.0 + eps_high) & (adv > 0)).expand_as(logp)
    stats = GRPOStats(
        logp=logp.detach(),
        kl=kl,
        ratio=ratio.expand_as(logp),
        clipped_low=clipped_low,
        clipped_high=clipped_high,
        entropy=None if entropy is None else entropy.detach(),
        is_weight=None if is_weight is None else is_weight.expand_as(logp),
        entropy_mask=keep,
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
    behavior_logp: Tensor | None = None,
    is_level: str = "token",
    is_mode: str = "truncate",
    is_cap: float = IS_CAP,
    top_entropy_quantile: float = 1.0,
) -> tuple[Tensor, GRPOStats]:
    """GRPO loss on logits (B, T, V) for chosen ids (B, T): (loss scalar fp32, GRPOStats).

    The log-probs come from `token_logprobs` (online LSE, no (N, V) fp32 in the forward); with
    `inplace_backward=True` the backward writes dlogits into the logits buffer (opt-in). The off-policy
    (`behavior_logp`, `is_*`) and `top_entropy_quantile` options are those of `grpo_loss_from_logp`.
    """
    check_options(
        loss_type, ratio_level, beta, ref_logp, eps_low, eps_high,
        is_level=is_level, is_mode=is_mode, is_cap=is_cap, top_entropy_quantile=top_entropy_quantile,
    )  # fmt: skip
    if logits.dim() != 3:
        raise ShapeError(f"logits must be (B, T, V), got {tuple(logits.shape)}")
    if ratio_level == "token" and not (behavior_logp is not None and old_logp is None):
        return _token_level(
            logits, ids, old_logp, ref_logp, advantages, mask, TokenLossSpec.of(loss_type, eps_low, eps_high, delta, beta, temperature),
            loss_type=loss_type, normalizer=normalizer, inplace_backward=inplace_backward, behavior_logp=behavior_logp,
            is_level=is_level, is_mode=is_mode, is_cap=is_cap, top_entropy_quantile=top_entropy_quantile,
        )  # fmt: skip
    # GSPO (a ratio over whole sequences), or an off-policy weight that needs the current log-probs as old_logp
    logp, entropy = token_logprobs(logits, ids, temperature, with_entropy=True, inplace_backward=inplace_backward)
    return grpo_loss_from_logp(
        logp, old_logp, ref_logp, advantages, mask,
        loss_type=loss_type, eps_low=eps_low, eps_high=eps_high, delta=delta, beta=beta,
        ratio_level=ratio_level, normalizer=normalizer, entropy=entropy, behavior_logp=behavior_logp,
        is_level=is_level, is_mode=is_mode, is_cap=is_cap, top_entropy_quantile=top_entropy_quantile,
    )  # fmt: skip


def row_scale(mask: Tensor, loss_type: str, normalizer: float | Tensor | None) -> Tensor:
    """(B, T) fp32 weight of each token's per-token loss in the total: mask / normaliser, and for grpo also
    / the sequence's length (max(sum_t mask, 1)); the default normalisers are grpo_loss_from_logp's."""
    m = mask.float()  # (B, T)
    if loss_type == "grpo":
        m = m / m.sum(-1, keepdim=True).clamp(min=1.0)
        default: float | Tensor = float(m.shape[0])
    elif loss_type == "dr_grpo":
        default = float(m.numel())
    else:
        default = m.sum().clamp(min=1.0)
    return m / (default if normalizer is None else normalizer)


def _token_level(logits, ids, old_logp, ref_logp, advantages, mask, spec: TokenLossSpec, *, loss_type, normalizer, inplace_backward,
                 behavior_logp, is_level, is_mode, is_cap, top_entropy_quantile) -> tuple[Tensor, GRPOStats]:  # fmt: skip
    """grpo_loss at token level through the fused vocabulary pass (kernels.token_loss)."""
    check_ids(logits, ids)
    _check_shapes(ids, old_logp, ref_logp, advantages, mask, behavior_logp=behavior_logp)
    bsz, seq = ids.shape
    m = mask.float()  # (B, T)
    flat = lambda t: None if t is None else t.float().expand(bsz, seq).reshape(-1)  # noqa: E731  (N,)
    is_weight = None if behavior_logp is None else importance_weight(old_logp, behavior_logp, m, is_level, is_mode, is_cap)
    rows = LossRows(
        scale=flat(row_scale(m, loss_type, normalizer)), adv=flat(advantages.float()[:, None]),
        old=flat(None if old_logp is None else old_logp.detach()), ref=flat(ref_logp), weight=flat(is_weight),
    )  # fmt: skip
    keep_fn = None
    if top_entropy_quantile < 1.0:
        keep_fn = lambda entropy: high_entropy_mask(entropy.view(bsz, seq), m, top_entropy_quantile).reshape(-1)  # noqa: E731
    loss, out, keep = token_level_loss(logits, ids, rows, spec, keep_fn, inplace_backward)
    view = lambda t: t.view(bsz, seq)  # noqa: E731
    stats = GRPOStats(
        logp=view(out.logp), kl=None if ref_logp is None else view(out.kl), ratio=view(out.ratio),
        clipped_low=view(out.flags & 1).bool(), clipped_high=view(out.flags & 2).bool(), entropy=view(out.entropy),
        is_weight=None if is_weight is None else is_weight.expand(bsz, seq), entropy_mask=None if keep is None else view(keep),
    )  # fmt: skip
    return loss, stats
