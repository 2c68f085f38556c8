"""Grouping mined actions into GRPO groups, per level (DESIGN section 3).

Levels: `global` groups every action by its normalised prompt; `signature` groups actions that carry a
`signature_name` by `signature_name|prompt` (actions without one are left out of this level);
`patch` groups only `patch_generation` and `code_edit` actions by prompt.

Inside a group, candidates with the exact same text are folded into one (the best reward is kept,
with that entry's named reward axes as the candidate's `rewards` and its behaviour log-probs as the
candidate's `behavior_logprobs` when it had any, and `meta.counts`
says how many entries had it). Groups with fewer than `min_k` distinct candidates
are dropped; a larger group keeps `max_k` candidates chosen as extremes plus middles: over the
candidates sorted by reward (best first), the indices round(i * (n - 1) / (max_k - 1)) for
i = 0..max_k-1, i.e. the best, the worst and evenly spaced ones between. Ties in reward are broken by
recency (newest first), and groups come out newest first, so the output is deterministic.

Input actions arrive newest first as (stream id, `Action`) pairs; `hits_by_query` maps a normalised
query to its retrieval hits, joined into `meta.imesh_hits` when it equals the group's prompt.
"""

from __future__ import annotations

from collections import Counter
from operator import itemgetter
from typing import Any, Iterable

from miner.extract import Action
from miner.schema import BEHAVIOR_KEY, PATCH_ACTION_TYPES

LEVELS: tuple[str, ...] = ("global", "signature", "patch")
_NEG_REWARD = itemgetter(0)
MAX_HITS = 20


def select_extremes(n: int, k: int) -> list[int]:
    """Indices of `k` of `n` sorted items: both ends and evenly spaced middles (all when n <= k)."""
    if n <= k:
        return list(range(n))
    if k == 1:
        return [0]
    return [int(i * (n - 1) / (k - 1) + 0.5) for i in range(k)]


def _common(members: list[Action], field: int) -> str | None:
    """The most frequent non-null value of one Action field; on a tie the first seen, i.e. the newest."""
    counts = Counter(map(itemgetter(field), members))
    counts.pop(None, None)
    return counts.most_common(1)[0][0] if counts else None


def merge_hits(hits: Iterable[dict]) -> list[dict]:
    """Hits de-duplicated by path (best score kept), best first, at most MAX_HITS."""
    best: dict[str, dict] = {}
    for hit in hits:
        old = best.get(hit["path"])
        if old is None or hit["score"] > old["score"]:
            best[hit["path"]] = hit
    return sorted(best.values(), key=lambda h: (-h["score"], h["path"]))[:MAX_HITS]


def _candidate(c: list[Any]) -> dict[str, Any]:
    """One group JSONL candidate from a folded entry [-reward, rank, count, id, text, axes, behaviour]."""
    out: dict[str, Any] = {"text": c[4], "reward": -c[0]}
    if c[5]:
        out["rewards"] = c[5]
    if c[6]:
        out[BEHAVIOR_KEY] = c[6]
    return out


def build_groups(
    actions: list[tuple[bytes, Action]],
    level: str,
    *,
    min_k: int = 2,
    max_k: int = 8,
    hits_by_query: dict[str, list[dict]] | None = None,
    stream: str = "rl_actions",
) -> list[dict]:
    """The group records of one level, ready for JSONL (DESIGN section 3 group format)."""
    if min_k < 2 or max_k < min_k:
        raise ValueError(f"need 2 <= min_k <= max_k, got min_k={min_k}, max_k={max_k}")
    if level not in LEVELS:
        raise ValueError(f"unknown level {level!r}; choose from {', '.join(LEVELS)}")
    by_sig, patch_only = level == "signature", level == "patch"
    # key -> (candidates: text -> [-best reward, first-seen rank, count, id of best, text, axes of best,
    # behaviour log-probs of best], member actions);
    # dicts keep first-seen order, so a stable sort on -reward ranks best first, then newest first
    groups: dict[Any, tuple[dict[str, list[Any]], list[Action]]] = {}
    for sid, act in actions:
        prompt, text, reward, action_type, _env, sig, _ctx, _tool, axes, behavior = act
        if by_sig:
            if sig is None:
                continue
            key: Any = (sig, prompt)
        elif patch_only and action_type not in PATCH_ACTION_TYPES:
            continue
        else:
            key = prompt
        group = groups.get(key)
        if group is None:
            group = groups[key] = ({}, [])
        cands = group[0]
        group[1].append(act)
        cand = cands.get(text)
        if cand is None:
            cands[text] = [-reward, len(cands), 1, sid, text, axes, behavior]
        else:
            cand[2] += 1
            if -reward < cand[0]:  # newer entries come first, so a tie keeps the newest
                cand[0] = -reward
                cand[3] = sid
                cand[5] = axes  # the best entry's reward axes go with its reward
                cand[6] = behavior  # and so do the log-probs of the engine that sampled it
    hits_by_query = hits_by_query or {}
    out = []
    for cands, members in groups.values():
        n = len(cands)
        if n < min_k:
            continue
        ranked = sorted(cands.values(), key=_NEG_REWARD)  # float keys: CPython's fast compare path
        chosen = [ranked[i] for i in select_extremes(n, max_k)]
        prompt = members[0].prompt
        out.append({
            "prompt": prompt,
            "candidates": [_candidate(c) for c in chosen],
            "meta": {
                "level": level,
                "group_size": n,
                "n_entries": len(members),
                "duplicates": len(members) - n,
                "counts": [c[2] for c in chosen],
                "context_hash": _common(members, 6),
                "signature_name": _common(members, 5),
                "action_types": sorted(set(map(itemgetter(3), members))),
                "environment": _common(members, 4),
                "imesh_hits": hits_by_query.get(prompt, []),
                "stream": stream,
                "source_ids": [c[3].decode() if isinstance(c[3], bytes) else c[3] for c in chosen],
            },
        })
    return out
