"""Deterministic batch order: a fresh permutation of the dataset per epoch, from the seed alone.

Position p (the number of groups drawn so far, saved in checkpoints) maps to group
perm(epoch = p // n)[p % n], perm(e) = random.Random(seed * 1_000_003 + e).shuffle(range(n)), so the
order depends on (seed, position) only and a resumed run draws exactly what the straight run would.
`next_batch(k)` draws until it has k groups with reward variance, counting the ones it drops
(dynamic sampling); it refuses when no group has any variance.
"""

from __future__ import annotations

import random


class Sampler:
    def __init__(self, n: int, seed: int, eligible: list[bool], position: int = 0) -> None:
        if n <= 0 or len(eligible) != n:
            raise ValueError("the sampler needs one eligibility flag per group, and at least one group")
        if not any(eligible):
            raise ValueError("every group has equal rewards for all its candidates: nothing to learn from")
        self.n, self.seed, self.eligible, self.position = n, seed, eligible, position
        self._epoch, self._perm = -1, list(range(n))

    def _index(self, pos: int) -> int:
        epoch, offset = divmod(pos, self.n)
        if epoch != self._epoch:
            self._perm = list(range(self.n))
            random.Random(self.seed * 1_000_003 + epoch).shuffle(self._perm)
            self._epoch = epoch
        return self._perm[offset]

    def next_batch(self, k: int) -> tuple[list[int], int]:
        """(k group indices with reward variance, how many zero-variance groups were dropped)."""
        picked, dropped = [], 0
        while len(picked) < k:
            idx = self._index(self.position)
            self.position += 1
            if self.eligible[idx]:
                picked.append(idx)
            else:
                dropped += 1
        return picked, dropped
