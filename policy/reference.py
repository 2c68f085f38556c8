"""Reference log-probs, computed once per group and cached, so no reference model stays in memory.

`ReferenceCache.fill(policy, encode, groups)` runs `policy.reference_logprobs` (the base weights for a
fully trained model, which is why the trainer fills the cache before restoring a checkpoint's weights;
the base with adapters disabled under LoRA; the uniform policy for bow) for every group once and keeps
the (G, T) result on the CPU; `get(gid)` hands it back on the policy's device.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

from torch import Tensor

from policy.backends import Encoded, Policy
from policy.data import Group

log = logging.getLogger("policy")


class ReferenceCache:
    def __init__(self) -> None:
        self._logp: dict[int, Tensor] = {}

    def __contains__(self, gid: int) -> bool:
        return gid in self._logp

    def __len__(self) -> int:
        return len(self._logp)

    def fill(self, policy: Policy, encode: Callable[[Group], Encoded], groups: Iterable[Group], temperature: float = 1.0) -> int:
        """Compute and cache the reference log-probs of every group not cached yet; returns how many."""
        todo = [g for g in groups if g.gid not in self._logp]
        if todo:
            log.info("computing reference log-probs for %d groups", len(todo))
        for g in todo:
            self._logp[g.gid] = policy.reference_logprobs(encode(g), temperature).detach().cpu()  # (G, T)
        return len(todo)

    def get(self, gid: int, device: object) -> Tensor:
        """The cached (G, T) reference log-probs of group `gid` on `device`."""
        return self._logp[gid].to(device)
