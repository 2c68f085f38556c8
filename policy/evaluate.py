"""Quality of a policy on held-out groups: pairwise accuracy and the reward it expects.

`pairwise_accuracy`: over every pair of candidates of a group with different rewards, the fraction where
the policy's score (mean completion-token log-prob for hf, the BoW score for bow) ranks the better one
higher; a tie in score counts one half. None when the dataset has no such pair.
`expected_reward`: per group, the reward expected when the policy picks among the group's candidates in
proportion to how likely it is to write each one, sum_i softmax(log pi(c_i | prompt)) r_i (the sequence
log-prob for hf, the listwise score for bow), averaged over groups: it rises as the policy's mass moves
to the better candidates, in the reward's own units.
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


def expected_reward(policy: Policy, groups: Iterable[Group], encode: Callable[[Group], Encoded] | None = None) -> float | None:
    """Mean over groups of sum_i softmax(sequence log-prob)_i * reward_i (None without groups)."""
    import torch

    encode = encode or (lambda g: policy.encode(g.prompt, [c.text for c in g.candidates]))
    policy.train(False)
    values = []
    try:
        for g in groups:
            p = torch.softmax(policy.sequence_logprobs(encode(g)).double().cpu(), dim=0)  # (G,)
            values.append(float((p * torch.tensor(g.rewards, dtype=torch.float64)).sum()))
    finally:
        policy.train(True)
    return sum(values) / len(values) if values else None
