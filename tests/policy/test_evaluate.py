"""policy.evaluate: pairwise accuracy over candidate pairs with different rewards."""

from __future__ import annotations

import torch

from policy.bow import BowPolicy, features
from policy.data import Candidate, Group


def group(prompt: str, *pairs: tuple[str, float]) -> Group:
    return Group(gid=0, line=1, prompt=prompt, candidates=tuple(Candidate(t, r) for t, r in pairs))


def test_pairs_with_equal_rewards_are_ignored_and_ties_count_half() -> None:
    from policy.evaluate import pairwise_accuracy

    policy = BowPolicy(buckets=1 << 12)
    g = group("q", ("good", 1.0), ("bad", 0.0), ("also bad", 0.0))
    acc, pairs = pairwise_accuracy(policy, [g])
    assert pairs == 2 and acc == 0.5  # all scores tie at zero weights
    with torch.no_grad():
        policy.weight[features("q", "good", policy.buckets)] = 1.0
    assert pairwise_accuracy(policy, [g]) == (1.0, 2)
    with torch.no_grad():
        policy.weight.neg_()
    assert pairwise_accuracy(policy, [g]) == (0.0, 2)
    assert pairwise_accuracy(policy, [group("q", ("a", 1.0), ("b", 1.0))]) == (None, 0)
