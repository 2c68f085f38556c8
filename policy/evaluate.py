"""Held-out pairwise accuracy of a policy over group JSONL.

Over every pair of candidates of a group with different rewards, the fraction where the policy's
score (mean completion-token log-prob for hf, the BoW score for bow) ranks the better one higher; a
tie in score counts one half. None when the dataset has no such pair.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from policy.backends import Encoded, Policy
from policy.data import Group


def pairwise_accuracy(policy: Policy, groups: Iterable[Group], encode: Callable[[Group], Encoded] | None = None) -> tuple[float | None, int]:
    """(accuracy, number of pairs) of `policy` over `groups`."""
    encode = encode or (lambda g: policy.encode(g.prompt, [c.text for c in g.candidates]))
    policy.train(False)
    hits, pairs = 0.0, 0
    try:
        for g in groups:
            rewards = g.rewards
            if len(set(rewards)) < 2:
                continue
            scores = policy.scores(encode(g)).tolist()  # (G,)
            for i in range(len(rewards)):
                for j in range(i + 1, len(rewards)):
                    if rewards[i] == rewards[j]:
                        continue
                    pairs += 1
                    agree = (scores[i] - scores[j]) * (rewards[i] - rewards[j])
                    hits += 1.0 if agree > 0 else 0.5 if scores[i] == scores[j] else 0.0
    finally:
        policy.train(True)
    return (hits / pairs if pairs else None), pairs
