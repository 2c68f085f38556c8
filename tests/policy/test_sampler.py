"""policy.sampler: the batch order depends on (seed, position) only; zero-variance groups are dropped."""

from __future__ import annotations

import pytest

from policy.sampler import Sampler


def draws(sampler: Sampler, steps: int, k: int) -> list[list[int]]:
    return [sampler.next_batch(k)[0] for _ in range(steps)]


def test_a_resumed_sampler_draws_what_the_straight_one_would() -> None:
    straight = Sampler(7, seed=3, eligible=[True] * 7)
    first = draws(straight, 10, 3)
    half = Sampler(7, seed=3, eligible=[True] * 7)
    draws(half, 5, 3)
    resumed = Sampler(7, seed=3, eligible=[True] * 7, position=half.position)
    assert draws(resumed, 5, 3) == first[5:]
    assert sorted(sum(first, [])[:7]) == list(range(7))  # each epoch is a permutation
    assert first != draws(Sampler(7, seed=4, eligible=[True] * 7), 10, 3)


def test_zero_variance_groups_are_dropped_and_counted() -> None:
    eligible = [True, False, True, False]
    sampler = Sampler(4, seed=0, eligible=eligible)
    picked, dropped = [], 0
    for _ in range(4):
        batch, d = sampler.next_batch(2)
        picked += batch
        dropped += d
    assert set(picked) == {0, 2} and dropped == sampler.position - 8 and dropped > 0


def test_nothing_to_learn_is_refused() -> None:
    with pytest.raises(ValueError, match="equal rewards"):
        Sampler(2, seed=0, eligible=[False, False])
