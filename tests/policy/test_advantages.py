"""policy.advantages: baselines, scaling, clipping, zero-variance detection."""

from __future__ import annotations

import pytest
import torch

from policy.advantages import EPS, group_advantages, has_variance


def test_group_z_score_uses_population_std() -> None:
    (adv,) = group_advantages([[0.0, 1.0, 2.0, 5.0]], adv_clip=None)
    r = torch.tensor([0.0, 1.0, 2.0, 5.0], dtype=torch.float64)
    expected = (r - r.mean()) / (r.std(correction=0) + EPS)
    assert torch.allclose(adv.double(), expected, atol=1e-6)
    assert adv.dtype == torch.float32 and abs(float(adv.mean())) < 1e-6


def test_median_and_leave_one_out_baselines_without_scaling() -> None:
    (med,) = group_advantages([[0.0, 1.0, 10.0]], baseline="median", scale_rewards="none", adv_clip=None)
    assert med.tolist() == [-1.0, 0.0, 9.0]
    (loo,) = group_advantages([[1.0, 2.0, 6.0]], baseline="loo", scale_rewards="none", adv_clip=None)
    assert torch.allclose(loo, torch.tensor([1 - 4.0, 2 - 3.5, 6 - 1.5]))  # r_i - mean of the others


def test_batch_scaling_divides_every_group_by_the_batch_std() -> None:
    groups = [[0.0, 2.0], [10.0, 30.0]]
    advs = group_advantages(groups, scale_rewards="batch", adv_clip=None)
    std = torch.tensor([0.0, 2.0, 10.0, 30.0], dtype=torch.float64).std(correction=0)
    assert torch.allclose(advs[0].double(), torch.tensor([-1.0, 1.0], dtype=torch.float64) / (std + EPS), atol=1e-6)
    assert torch.allclose(advs[1].double(), torch.tensor([-10.0, 10.0], dtype=torch.float64) / (std + EPS), atol=1e-5)


def test_advantage_and_reward_clipping() -> None:
    (adv,) = group_advantages([[0.0, 0.0, 0.0, 100.0]], scale_rewards="none", adv_clip=5.0)
    assert adv.tolist() == [-5.0, -5.0, -5.0, 5.0]
    (clipped,) = group_advantages([[-9.0, 0.0, 9.0]], scale_rewards="none", adv_clip=None, reward_clip=1.0)
    assert clipped.tolist() == [-1.0, 0.0, 1.0]


def test_zero_variance_groups_are_recognised_after_reward_clipping() -> None:
    assert has_variance([0.1, 0.5])
    assert not has_variance([0.5, 0.5, 0.5]) and not has_variance([1.0])
    assert not has_variance([5.0, 9.0], reward_clip=1.0)


def test_unknown_options_fail() -> None:
    with pytest.raises(ValueError, match="scale_rewards"):
        group_advantages([[0.0, 1.0]], scale_rewards="rank")
    with pytest.raises(ValueError, match="baseline"):
        group_advantages([[0.0, 1.0]], baseline="max")
