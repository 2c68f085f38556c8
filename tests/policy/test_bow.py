"""policy.bow: stable hashed features, a listwise softmax policy trained through kernels.grpo_loss."""

from __future__ import annotations

from pathlib import Path

import torch

from policy.backends import LossOptions
from policy.bow import BowPolicy, features


def test_features_are_a_stable_hash_not_pythons_salted_hash() -> None:
    # crc32 of "c:sorted", "x:sort|sorted", "x:it|sorted" mod 2**16: the same in every process and on
    # every machine (Python's hash() of a str changes per process unless PYTHONHASHSEED is set)
    assert features("Sort it", "sorted!", 1 << 16) == [4010, 36838, 40876]


def test_features_include_prompt_word_crosses() -> None:
    a = set(features("sort it", "sorted", 1 << 16))
    b = set(features("read it", "sorted", 1 << 16))
    assert a & b and a - b  # the candidate word is shared, the (prompt word, candidate word) crosses are not


def test_a_gradient_step_raises_the_probability_of_the_better_candidate() -> None:
    policy = BowPolicy(buckets=1 << 10)
    enc = policy.encode("sort the list", ["use sorted", "use a loop", "print it"])
    assert enc.ids.tolist() == [[0], [1], [2]] and enc.mask.shape == (3, 1)
    before = policy.logprobs(enc)
    assert torch.allclose(before, torch.full((3, 1), -torch.log(torch.tensor(3.0)))) and torch.equal(before, policy.reference_logprobs(enc))
    opt = torch.optim.SGD(policy.trainable_parameters(), lr=1.0)
    loss, stats = policy.loss(enc, None, None, torch.tensor([1.0, -0.5, -0.5]), beta=0.0, normalizer=3.0, opts=LossOptions())
    loss.backward()
    opt.step()
    after = policy.logprobs(enc)
    assert after[0, 0] > before[0, 0] and after[1, 0] < before[1, 0]
    assert stats.logp.shape == (3, 1) and stats.entropy is not None


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    policy = BowPolicy(buckets=64)
    with torch.no_grad():
        policy.weight.copy_(torch.arange(64.0))
    policy.save(tmp_path)
    other = BowPolicy(buckets=64)
    other.load_weights(tmp_path)
    assert torch.equal(other.weight, policy.weight)
