"""The GRPO loss on per-token log-probs in plain torch: the baseline math for `naive` and the float64 check.

Written independently of `kernels.loss` (same TRL semantics, token-level ratio) so the bench's error
column cross-checks it. Shapes: logp, old_logp, ref_logp, mask (B, T); advantages (B,).
"""

from __future__ import annotations

import torch

# The one loss configuration every kernel case uses (bnpo: Liger's fused-linear loss computes it too).
LOSS = {"loss_type": "bnpo", "eps_low": 0.2, "eps_high": 0.2, "beta": 0.04, "temperature": 1.0}


def grpo_loss_from_logp(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    ref_logp: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    *,
    loss_type: str = "bnpo",
    eps_low: float = 0.2,
    eps_high: float = 0.2,
    beta: float = 0.04,
    temperature: float = 1.0,  # already applied to logp; accepted so LOSS can be splatted
) -> torch.Tensor:
    """Scalar loss: -min(r A, clip(r) A) + beta * k3 KL, masked, reduced by `loss_type`."""
    mask = mask.to(logp.dtype)  # (B, T)
    adv = advantages.to(logp.dtype)[:, None]  # (B, 1)
    ratio = torch.exp(logp - old_logp)  # (B, T)
    clipped = torch.clamp(ratio, 1 - eps_low, 1 + eps_high)
    per_token = -torch.minimum(ratio * adv, clipped * adv)
    if beta:
        d = ref_logp - logp
        per_token = per_token + beta * (torch.exp(d) - d - 1)
    total = (per_token * mask).sum()
    if loss_type in ("bnpo", "dapo"):
        return total / mask.sum().clamp(min=1)
    if loss_type == "grpo":
        return ((per_token * mask).sum(-1) / mask.sum(-1).clamp(min=1)).sum() / logp.shape[0]
    if loss_type == "dr_grpo":
        return total / logp.numel()
    raise ValueError(f"grpo_math supports bnpo, dapo, grpo, dr_grpo, not {loss_type!r}")
