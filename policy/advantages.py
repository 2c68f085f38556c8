"""Group-relative advantages from per-candidate rewards.

For each group's rewards r (G,): optionally clip r to [-reward_clip, reward_clip]; subtract a baseline
(`mean`, `median`, or `loo` leave-one-out: r_i - mean_{j != i} r_j); scale by the group's std + eps (`group`),
the whole batch's std + eps (`batch`) or not at all (`none`); clamp to [-adv_clip, adv_clip]. The std
is the unbiased one (`adv_std="unbiased"`, correction 1, as TRL) or the population one
(`"population"`, correction 0, this project's former default). A group of one candidate has no
unbiased std: its advantages are zeros (it has no variance, so the trainer never trains on it). Groups whose (clipped) rewards are all equal carry no signal: `has_variance`
says so and the sampler drops and counts them (dynamic sampling).
"""

from __future__ import annotations

import torch
from torch import Tensor

EPS = 1e-4
BASELINES = ("mean", "median", "loo")
SCALES = ("group", "batch", "none")
STDS = {"unbiased": 1, "population": 0}  # adv_std -> torch's std correction


def clip_rewards(rewards: Tensor, reward_clip: float | None) -> Tensor:
    """rewards (G,) clamped to [-reward_clip, reward_clip] when a clip is set."""
    return rewards if reward_clip is None else rewards.clamp(-reward_clip, reward_clip)


def has_variance(rewards: list[float], reward_clip: float | None = None) -> bool:
    """True when the (clipped) rewards of a group are not all equal."""
    r = clip_rewards(torch.tensor(rewards, dtype=torch.float64), reward_clip)
    return bool(r.numel() > 1 and (r.max() - r.min()) > 0)


def _centered(r: Tensor, baseline: str) -> Tensor:
    if baseline == "mean":
        return r - r.mean()
    if baseline == "median":
        return r - r.quantile(0.5)
    if baseline == "loo":
        g = r.numel()
        return (r - r.mean()) * (g / (g - 1)) if g > 1 else torch.zeros_like(r)
    raise ValueError(f"unknown baseline {baseline!r}: use one of {', '.join(BASELINES)}")


def group_advantages(
    rewards: list[list[float]],
    *,
    baseline: str = "mean",
    scale_rewards: str = "group",
    adv_clip: float | None = 5.0,
    reward_clip: float | None = None,
    adv_std: str = "unbiased",
) -> list[Tensor]:
    """One fp32 advantage tensor (G_i,) per group of rewards, computed in float64."""
    if scale_rewards not in SCALES:
        raise ValueError(f"unknown scale_rewards {scale_rewards!r}: use one of {', '.join(SCALES)}")
    if adv_std not in STDS:
        raise ValueError(f"unknown adv_std {adv_std!r}: use one of {', '.join(STDS)}")
    correction = STDS[adv_std]
    rs = [clip_rewards(torch.tensor(r, dtype=torch.float64), reward_clip) for r in rewards]  # each (G_i,)
    flat = torch.cat(rs) if rs else torch.zeros(0, dtype=torch.float64)  # (sum G_i,)
    batch_std = flat.std(correction=correction) if flat.numel() > correction else torch.tensor(0.0, dtype=torch.float64)
    out = []
    for r in rs:
        adv = _centered(r, baseline)  # (G,)
        if r.numel() <= correction:  # one candidate: no unbiased std (NaN); no variance, so no signal either
            adv = torch.zeros_like(r)
        elif scale_rewards == "group":
            adv = adv / (r.std(correction=correction) + EPS)
        elif scale_rewards == "batch":
            adv = adv / (batch_std + EPS)
        if adv_clip is not None:
            adv = adv.clamp(-adv_clip, adv_clip)
        out.append(adv.float())
    return out
