"""policy.reference: reference log-probs computed once per group, from the weights at fill time."""

from __future__ import annotations

from pathlib import Path

import torch

from policy.data import Candidate, Group
from policy.hf import HFPolicy
from policy.reference import ReferenceCache
from policy.tiny import build_tiny


def group(gid: int, prompt: str, *texts: str) -> Group:
    return Group(gid=gid, line=gid + 1, prompt=prompt, candidates=tuple(Candidate(t, float(i)) for i, t in enumerate(texts)))


def test_reference_is_computed_once_and_survives_training(tmp_path: Path) -> None:
    policy = HFPolicy.load(str(build_tiny(tmp_path / "tiny")), device=torch.device("cpu"))
    groups = [group(0, "a:", "x", "yy"), group(1, "b:", "zzz", "w")]
    calls: list[int] = []

    def encode(g: Group):
        calls.append(g.gid)
        return policy.encode(g.prompt, [c.text for c in g.candidates])

    cache = ReferenceCache()
    assert cache.fill(policy, encode, groups) == 2 and cache.fill(policy, encode, groups) == 0
    assert calls == [0, 1] and len(cache) == 2 and 1 in cache
    before = cache.get(0, "cpu").clone()
    with torch.no_grad():  # the policy moves on; the cached reference does not
        for p in policy.net.parameters():
            p.add_(0.05)
    assert torch.equal(cache.get(0, "cpu"), before)
    assert not torch.allclose(policy.logprobs(encode(groups[0])), before)
