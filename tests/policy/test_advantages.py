"""policy.advantages: baselines, scaling, clipping, zero-variance detection."""

from __future__ import annotations

import math

import pytest
import torch

from policy.advantages import EPS, group_advantages, has_variance


# The advantages are computed in float64 and rounded once to float32: relative error <= 2**-24 each,
# so 2**-23 relative is a safe bound (the float64 hand computation's own error is ~1e-16, negligible).
RTOL = 2.0**-23


def _hand_std(xs: list[float], correction: int) -> float:
    mean = math.fsum(xs) / len(xs)
    return math.sqrt(math.fsum((x - mean) ** 2 for x in xs) / (len(xs) - correction))


@pytest.mark.parametrize("adv_std,correction", [("unbiased", 1), ("population", 0)])
def test_group_z_score_against_a_float64_hand_computation(adv_std: str, correction: int) -> None:
    r = [0.0, 1.0, 2.0, 5.0]
    kwargs = {} if adv_std == "unbiased" else {"adv_std": adv_std}  # unbiased is the default
    (adv,) = group_advantages([r], adv_clip=None, **kwargs)
    mean, std = math.fsum(r) / len(r), _hand_std(r, correction)
    expected = torch.tensor([(x - mean) / (std + EPS) for x in r], dtype=torch.float64)
    torch.testing.assert_close(adv.double(), expected, rtol=RTOL, atol=0.0)
    assert adv.dtype == torch.float32


def test_two_candidates_differ_by_sqrt2_between_the_stds() -> None:
    """G=2: the unbiased std is sqrt(2) x the population std, so the unbiased (TRL) advantages are
    ±1/sqrt(2) where the population ones are ±1: the population version is sqrt(2) larger."""
    (unbiased,) = group_advantages([[0.25, 0.75]], adv_clip=None)
    (population,) = group_advantages([[0.25, 0.75]], adv_clip=None, adv_std="population")
    # population std 0.25, unbiased 0.25 * sqrt(2); with eps the ratio is (0.25 sqrt(2) + EPS) / (0.25 + EPS)
    ratio = (0.25 * math.sqrt(2) + EPS) / (0.25 + EPS)
    torch.testing.assert_close(population.double() / unbiased.double(), torch.full((2,), ratio, dtype=torch.float64), rtol=2 * RTOL, atol=0.0)
    assert abs(ratio - math.sqrt(2)) < 1e-3


def test_a_single_candidate_group_gets_zero_advantages() -> None:
    for scale in ("group", "batch", "none"):
        for std in ("unbiased", "population"):
            advs = group_advantages([[0.7], [0.0, 1.0]], scale_rewards=scale, adv_std=std, adv_clip=None)
            assert advs[0].tolist() == [0.0] and torch.isfinite(advs[1]).all()
    assert group_advantages([[0.7]], scale_rewards="batch")[0].tolist() == [0.0]  # a batch of one reward


def test_median_and_leave_one_out_baselines_without_scaling() -> None:
    (med,) = group_advantages([[0.0, 1.0, 10.0]], baseline="median", scale_rewards="none", adv_clip=None)
    assert med.tolist() == [-1.0, 0.0, 9.0]
    (loo,) = group_advantages([[1.0, 2.0, 6.0]], baseline="loo", scale_rewards="none", adv_clip=None)
    assert torch.allclose(loo, torch.tensor([1 - 4.0, 2 - 3.5, 6 - 1.5]))  # r_i - mean of the others


@pytest.mark.parametrize("adv_std,correction", [("unbiased", 1), ("population", 0)])
def test_batch_scaling_divides_every_group_by_the_batch_std(adv_std: str, correction: int) -> None:
    groups = [[0.0, 2.0], [10.0, 30.0]]
    advs = group_advantages(groups, scale_rewards="batch", adv_clip=None, adv_std=adv_std)
    std = _hand_std([0.0, 2.0, 10.0, 30.0], correction)
    torch.testing.assert_close(advs[0].double(), torch.tensor([-1.0, 1.0], dtype=torch.float64) / (std + EPS), rtol=RTOL, atol=0.0)
    torch.testing.assert_close(advs[1].double(), torch.tensor([-10.0, 10.0], dtype=torch.float64) / (std + EPS), rtol=RTOL, atol=0.0)


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
    with pytest.raises(ValueError, match="adv_std"):
        group_advantages([[0.0, 1.0]], adv_std="sample")
