"""Read and validate a group JSONL dataset (DESIGN section 3) into `Group`s.

One object per line: {"prompt": str, "candidates": [{"text": str, "reward": number, "rewards": {axis:
number}}], "meta": {...}}; `meta` may be missing and extra keys are ignored; blank lines are skipped.
A bad line raises `DatasetError("file:line: reason")`, or with `skip_bad_lines` is counted and skipped.

Rewards: with `reward_weights` ({axis: weight}) a candidate's reward is sum(w * rewards[axis]) (a missing
axis is a bad line); without, it is `reward`, else the mean of its `rewards` axes. A candidate whose
text contains a blocklisted substring (case-insensitive) gets the dataset's minimum reward. A prompt
longer than `max_prompt_chars` is a bad line unless `truncate_prompts` cuts it. The fingerprint is
the sha256 of the file's bytes.

Behaviour log-probs: a candidate's optional `behavior_logprobs` {"token_ids": [int], "logprobs":
[float]} (the sampling engine's per-token log-probs, `miner.schema.behavior_error` checks the shape; a
bad one is a bad line) is kept as `Candidate.behavior` for the trainer's off-policy correction.
"""

from __future__ import annotations

import hashlib
import logging
import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import orjson

from miner.schema import BEHAVIOR_KEY, behavior_error
from policy.errors import DatasetError

log = logging.getLogger("policy")


@dataclass(frozen=True)
class Candidate:
    text: str
    reward: float  # the mixed reward the trainer uses (after the blocklist)
    rewards: dict[str, float] = field(default_factory=dict)  # named axes as given
    blocked: bool = False
    # (token ids, log-probs) the sampling engine logged for this text, or None (no off-policy correction)
    behavior: tuple[tuple[int, ...], tuple[float, ...]] | None = None


@dataclass(frozen=True)
class Group:
    gid: int  # index in the dataset
    line: int  # 1-based line in the file
    prompt: str
    candidates: tuple[Candidate, ...]
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def rewards(self) -> list[float]:
        return [c.reward for c in self.candidates]


@dataclass
class Dataset:
    path: Path
    groups: list[Group]
    fingerprint: str  # sha256 of the file bytes
    bad_lines: int = 0
    truncated_prompts: int = 0
    blocked: int = 0
    axis_means: dict[str, float] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.groups)


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _candidate(raw: Any, i: int, weights: dict[str, float]) -> Candidate:
    where = f"candidates[{i}]"
    if not isinstance(raw, dict):
        raise ValueError(f"{where} must be an object with text and reward, got {type(raw).__name__}")
    text = raw.get("text")
    if not isinstance(text, str):
        raise ValueError(f"{where}.text must be a string, got {type(text).__name__}")
    axes: dict[str, float] = {}
    if "rewards" in raw:
        if not isinstance(raw["rewards"], dict):
            raise ValueError(f"{where}.rewards must be an object of axis: number")
        for name, value in raw["rewards"].items():
            num = _number(value)
            if num is None:
                raise ValueError(f"{where}.rewards.{name} is not a finite number: {value!r}")
            axes[str(name)] = num
    if weights:
        missing = [name for name in weights if name not in axes]
        if missing:
            raise ValueError(f"{where}.rewards has no axis {missing[0]!r} named in --reward-weights")
        reward = sum(w * axes[name] for name, w in weights.items())
    elif "reward" in raw:
        reward = _number(raw["reward"])
        if reward is None:
            raise ValueError(f"{where}.reward is not a finite number: {raw['reward']!r}")
    elif axes:
        reward = sum(axes.values()) / len(axes)
    else:
        raise ValueError(f"{where} has no reward (give 'reward' or a 'rewards' object)")
    behavior = None
    if raw.get(BEHAVIOR_KEY) is not None:
        why = behavior_error(raw[BEHAVIOR_KEY])
        if why is not None:
            raise ValueError(f"{where}.{BEHAVIOR_KEY}: {why}")
        behavior = (tuple(raw[BEHAVIOR_KEY]["token_ids"]), tuple(float(x) for x in raw[BEHAVIOR_KEY]["logprobs"]))
    return Candidate(text=text, reward=reward, rewards=axes, behavior=behavior)


def parse_line(line: bytes, *, weights: dict[str, float], max_prompt_chars: int | None, truncate: bool) -> tuple[str, list[Candidate], dict[str, Any], bool]:
    """(prompt, candidates, meta, truncated) of one JSONL line; ValueError with the reason when invalid."""
    try:
        obj = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"not valid JSON ({exc})") from None
    if not isinstance(obj, dict):
        raise ValueError(f"expected a JSON object, got {type(obj).__name__}")
    prompt = obj.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise ValueError("prompt must be a non-empty string")
    truncated = False
    if max_prompt_chars is not None and len(prompt) > max_prompt_chars:
        if not truncate:
            raise ValueError(f"prompt has {len(prompt)} characters, more than --max-prompt-chars {max_prompt_chars} (pass --truncate-prompts to cut it)")
        prompt, truncated = prompt[:max_prompt_chars], True
    raw = obj.get("candidates")
    if not isinstance(raw, list) or not raw:
        raise ValueError("candidates must be a non-empty list")
    candidates = [_candidate(c, i, weights) for i, c in enumerate(raw)]
    meta = obj.get("meta") if isinstance(obj.get("meta"), dict) else {}
    return prompt, candidates, meta, truncated


def read_blocklist(path: Path) -> list[str]:
    """Blocked substrings, one per line (blank lines and lines starting with # ignored), lower-cased."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise DatasetError(f"{path}: cannot read blocklist ({exc.strerror}); check the path") from exc
    return [s.strip().lower() for s in text.splitlines() if s.strip() and not s.strip().startswith("#")]


def load_dataset(
    path: Path,
    *,
    skip_bad_lines: bool = False,
    max_prompt_chars: int | None = None,
    truncate_prompts: bool = False,
    blocklist: Path | None = None,
    reward_weights: dict[str, float] | None = None,
) -> Dataset:
    """Read, validate and fingerprint a group JSONL file."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DatasetError(f"{path}: cannot read dataset ({exc.strerror}); check the path") from exc
    weights = dict(reward_weights or {})
    groups: list[Group] = []
    bad = truncated = 0
    for lineno, line in enumerate(data.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            prompt, candidates, meta, cut = parse_line(line, weights=weights, max_prompt_chars=max_prompt_chars, truncate=truncate_prompts)
        except ValueError as exc:
            if not skip_bad_lines:
                raise DatasetError(f"{path}:{lineno}: {exc}") from None
            bad += 1
            log.warning("%s:%d: skipped: %s", path, lineno, exc)
            continue
        truncated += cut
        groups.append(Group(gid=len(groups), line=lineno, prompt=prompt, candidates=tuple(candidates), meta=meta))
    if not groups:
        raise DatasetError(f"{path}: no valid groups ({bad} bad lines); check the file is group JSONL (DESIGN section 3)")
    blocked = 0
    if blocklist is not None:
        groups, blocked = _apply_blocklist(groups, read_blocklist(blocklist))
    means = axis_means(groups)
    if means:
        log.info("%s: reward axis means %s", path.name, ", ".join(f"{k}={v:.4g}" for k, v in means.items()))
    return Dataset(
        path=path, groups=groups, fingerprint=hashlib.sha256(data).hexdigest(), bad_lines=bad,
        truncated_prompts=truncated, blocked=blocked, axis_means=means,
    )  # fmt: skip


def _apply_blocklist(groups: list[Group], blocked_words: list[str]) -> tuple[list[Group], int]:
    if not blocked_words:
        return groups, 0
    floor = min(c.reward for g in groups for c in g.candidates)
    out, count = [], 0
    for g in groups:
        cands = []
        for c in g.candidates:
            low = c.text.lower()
            if any(word in low for word in blocked_words):
                c, count = replace(c, reward=floor, blocked=True), count + 1
            cands.append(c)
        out.append(replace(g, candidates=tuple(cands)))
    return out, count


def axis_means(groups: list[Group]) -> dict[str, float]:
    """Mean of each named reward axis over the candidates that carry it."""
    sums: dict[str, float] = {}
    counts: dict[str, int] = {}
    for g in groups:
        for c in g.candidates:
            for name, value in c.rewards.items():
                sums[name] = sums.get(name, 0.0) + value
                counts[name] = counts.get(name, 0) + 1
    return {name: sums[name] / counts[name] for name in sorted(sums)}


def split_holdout(data: Dataset, fraction: float) -> tuple[Dataset, Dataset]:
    """(train, held-out) groups of `data`: a group is held out when the sha256 of its prompt falls in the first
    `fraction` of the hash range, so a prompt lands on the same side whatever else the file holds (auto
    mode's datasets change every cycle) and no prompt is in both. At least one group stays for training."""
    def side(g: Group) -> float:
        return int.from_bytes(hashlib.sha256(g.prompt.encode("utf-8")).digest()[:8], "big") / 2.0**64

    held = [g for g in data.groups if side(g) < fraction]
    train = [g for g in data.groups if side(g) >= fraction]
    if not train and held:
        train, held = [held[-1]], held[:-1]
    common = dict(path=data.path, bad_lines=data.bad_lines, truncated_prompts=data.truncated_prompts, blocked=data.blocked)
    return (replace(data, groups=train), Dataset(groups=held, fingerprint=f"{data.fingerprint}:val{fraction:g}", **common))
