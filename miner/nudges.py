"""Policy nudges (`grpo apply-policy`): tool preferences mined from rewards into `.dspy_policy.yaml`.

Over the actions of the last `hours` (same parsing and skip rules as mining; tool name per
`miner.extract.tool_name`): `prefer_tools` = the `top_k` tools by mean reward among tools seen at
least `min_count` times; `deny_tools` = the `bottom_k` lowest-mean such tools, kept only when their
mean reward is <= `deny_max_mean` (0.05). Rules: for each frequent prompt keyword (seen in at least
`min_count` actions), the same prefer/deny choice over the actions whose prompt holds it; a keyword
whose best tool differs from the global best (by at least `min_gain` mean reward there) joins the
rule of that best tool, whose regex is `(?i)\\b(kw1|kw2|kw3)\\b` (its three most frequent keywords,
each `re.escape`d, so `c++` or `(.*)` match only themselves). Keywords are lowercase tokens that
start and end with a word character.

Writing: `<workspace>/.dspy_policy.yaml` as `policy: {prefer_tools, deny_tools, rules: [{regex,
prefer_tools, deny_tools}]}`. Every other key of the file (top level and inside `policy`) is kept;
rules are de-duplicated by regex; rules written by an earlier run (listed under
`grpo_tui.managed_rules`) are replaced, hand-written ones kept. The write is atomic and skipped when
nothing changed, so a second run on the same data leaves the file byte-identical. The workspace must
resolve (symlinks included) inside one of `allowed_roots`, and the file must resolve inside the
workspace; anything else raises `PolicyPathError`.
"""

from __future__ import annotations

import re
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from miner.atomic import write_atomic
from miner.errors import MinerError, PolicyPathError
from miner.extract import DEFAULT_MAX_ENTRY_BYTES, parse_action
from miner.mine import MAX_SEQ, read_pages
from miner.store import Store

POLICY_FILE = ".dspy_policy.yaml"
MANAGED_KEY = "grpo_tui"
TOKEN = re.compile(r"\w(?:[\w.+#-]*\w)?")
STOPWORDS = frozenset(
    "the and for with from into onto that this these those its it's are was were has have had not but "
    "all any can could should would will when then than them they their there here what which who "
    "does did doing done about after before over under out off per via use using used make sure "
    "please also just only some more most very such each other".split()
)


@dataclass(frozen=True)
class NudgeParams:
    hours: float = 24.0
    top_k: int = 3
    bottom_k: int = 1
    min_count: int = 5
    deny_max_mean: float = 0.05
    keywords_per_rule: int = 3
    min_gain: float = 0.05
    max_keywords: int = 40
    max_rules: int = 10
    actions_stream: str = "rl_actions"
    page_size: int = 1000
    max_entry_bytes: int = DEFAULT_MAX_ENTRY_BYTES


@dataclass
class PolicyChange:
    """What `apply_policy` did: the file, whether it changed, and the lines that say how."""

    path: Path
    changed: bool
    actions: int
    policy: dict[str, Any]
    lines: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        return {"path": str(self.path), "changed": self.changed, "actions": self.actions,
                "changes": self.lines, **self.policy}


def keywords(prompt: str) -> set[str]:
    """The distinct keyword tokens of a prompt (lowercase, >= 3 chars, a letter, not a stopword)."""
    return {t for t in TOKEN.findall(prompt.lower()) if len(t) >= 3 and t not in STOPWORDS and any(c.isalpha() for c in t)}


def rule_regex(words: list[str]) -> str:
    """`(?i)\\b(kw1|kw2|...)\\b` with every keyword escaped: it matches exactly those words."""
    if not words:
        raise ValueError("a rule needs at least one keyword")
    return r"(?i)\b(" + "|".join(re.escape(w) for w in words) + r")\b"


def choose_tools(samples: list[tuple[str, float]], params: NudgeParams) -> tuple[list[str], list[str]]:
    """(prefer, deny) from (tool, reward) samples: the bottom-k by mean whose mean is <= the deny bound
    are denied; the top-k by mean among the others are preferred (a denied tool is never preferred)."""
    stats = [(tool, mean) for tool, (n, mean) in _means(samples).items() if n >= params.min_count]
    worst = sorted(stats, key=lambda x: (x[1], x[0]))[: params.bottom_k] if params.bottom_k else []
    deny = [t for t, mean in worst if mean <= params.deny_max_mean]
    prefer = [t for t, _ in sorted(stats, key=lambda x: (-x[1], x[0])) if t not in deny][: params.top_k]
    return prefer, deny


def _means(samples: list[tuple[str, float]]) -> dict[str, tuple[int, float]]:
    sums: dict[str, list[float]] = defaultdict(lambda: [0, 0.0])
    for tool, reward in samples:
        acc = sums[tool]
        acc[0] += 1
        acc[1] += reward
    return {tool: (int(n), s / n) for tool, (n, s) in sums.items()}


def compute_policy(samples: list[tuple[str, str, float]], params: NudgeParams) -> dict[str, Any]:
    """`{prefer_tools, deny_tools, rules}` from (prompt, tool, reward) samples.

    A keyword makes a rule only when its own best tool differs from the global best and beats, on the
    actions holding that keyword, the global best by at least `min_gain` in mean reward (or the global
    best was not used `min_count` times there). Keywords sharing a best tool share a rule.
    """
    prefer, deny = choose_tools([(t, r) for _, t, r in samples], params)
    if not prefer:
        return {"prefer_tools": [], "deny_tools": [], "rules": []}
    by_word: dict[str, list[tuple[str, float]]] = defaultdict(list)
    for prompt, tool, reward in samples:
        for word in keywords(prompt):
            by_word[word].append((tool, reward))
    frequent = sorted((w for w, s in by_word.items() if len(s) >= params.min_count), key=lambda w: (-len(by_word[w]), w))
    by_best: dict[str, list[tuple[str, list[str], list[str]]]] = {}
    for word in frequent[: params.max_keywords]:
        wp, wd = choose_tools(by_word[word], params)
        if not wp or wp[0] == prefer[0]:
            continue
        means = _means(by_word[word])
        n_global, mean_global = means.get(prefer[0], (0, 0.0))
        if n_global >= params.min_count and means[wp[0]][1] - mean_global < params.min_gain:
            continue
        by_best.setdefault(wp[0], []).append((word, wp, wd))
    rules, seen = [], set()
    for entries in by_best.values():
        regex = rule_regex([word for word, _, _ in entries[: params.keywords_per_rule]])
        if regex in seen:
            continue
        seen.add(regex)
        _, wp, wd = entries[0]
        rules.append({"regex": regex, "prefer_tools": wp, "deny_tools": wd})
        if len(rules) >= params.max_rules:
            break
    return {"prefer_tools": prefer, "deny_tools": deny, "rules": rules}


def policy_path(workspace: Path, allowed_roots: list[Path] | None = None) -> Path:
    """The real path of `<workspace>/.dspy_policy.yaml`, refusing anything outside the workspace."""
    try:
        real = Path(workspace).expanduser().resolve(strict=True)
    except (FileNotFoundError, NotADirectoryError) as exc:
        raise PolicyPathError(f"workspace {workspace} does not exist; pass the agent's project folder") from exc
    if not real.is_dir():
        raise PolicyPathError(f"workspace {workspace} is not a folder")
    if allowed_roots is not None:
        roots = list(dict.fromkeys(Path(r).expanduser().resolve() for r in allowed_roots))
        if not any(real == r or real.is_relative_to(r) for r in roots):
            raise PolicyPathError(
                f"workspace {workspace} resolves to {real}, outside {' and '.join(map(str, roots))}; "
                "refusing to write there: pass a folder inside the project"
            )
    target = (real / POLICY_FILE).resolve()
    if not target.is_relative_to(real):
        raise PolicyPathError(f"{real / POLICY_FILE} resolves to {target}, outside the workspace {real}; remove the link")
    if target.exists() and not target.is_file():
        raise PolicyPathError(f"{target} is not a regular file")
    return target


def _load(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise MinerError(f"{path}: cannot read the policy file ({exc}); fix it or move it away") from exc
    if data is None:
        return {}
    if not isinstance(data, dict) or not isinstance(data.get("policy", {}) or {}, dict):
        raise MinerError(f"{path}: expected a YAML mapping with a `policy` mapping; fix it or move it away")
    return data


def merge_policy(existing: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """`existing` with the new prefer/deny lists and rules; other keys and hand-written rules kept."""
    data = dict(existing)
    policy = dict(data.get("policy") or {})
    managed_meta = data.get(MANAGED_KEY) if isinstance(data.get(MANAGED_KEY), dict) else {}
    managed = set(managed_meta.get("managed_rules") or [])
    new_regexes = {r["regex"] for r in new["rules"]}
    rules, seen = [], set()
    for rule in policy.get("rules") or []:
        regex = rule.get("regex") if isinstance(rule, dict) else None
        if regex in managed or regex in new_regexes or (regex is not None and regex in seen):
            continue  # ours from an earlier run, replaced below, or a duplicate
        if regex is not None:
            seen.add(regex)
        rules.append(rule)
    rules.extend(r for r in new["rules"] if r["regex"] not in seen)
    policy["prefer_tools"] = list(new["prefer_tools"])
    policy["deny_tools"] = list(new["deny_tools"])
    policy["rules"] = rules
    data["policy"] = policy
    data[MANAGED_KEY] = {**managed_meta, "managed_rules": [r["regex"] for r in new["rules"] if r["regex"] not in seen]}
    return data


def _describe(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    lines = []
    for key in ("prefer_tools", "deny_tools"):
        before, after = old.get(key) or [], new.get(key) or []
        if before != after:
            lines.append(f"{key}: {before} -> {after}")
    old_rules = {r.get("regex"): r for r in old.get("rules") or [] if isinstance(r, dict)}
    new_rules = {r.get("regex"): r for r in new.get("rules") or [] if isinstance(r, dict)}
    for regex, rule in new_rules.items():
        if regex not in old_rules:
            lines.append(f"+ rule {regex}: prefer {rule.get('prefer_tools')}, deny {rule.get('deny_tools')}")
        elif old_rules[regex] != rule:
            lines.append(f"~ rule {regex}: prefer {rule.get('prefer_tools')}, deny {rule.get('deny_tools')}")
    lines.extend(f"- rule {regex}" for regex in old_rules if regex not in new_rules)
    return lines


def read_samples(store: Store, params: NudgeParams, now: float | None = None) -> list[tuple[str, str, float]]:
    """(prompt, tool, reward) of every minable action in the last `hours`."""
    now_ms = int((time.time() if now is None else now) * 1000)
    start = f"{max(0, now_ms - int(params.hours * 3_600_000))}-0"
    samples = []
    for page in read_pages(store, params.actions_stream, start, f"{now_ms}-{MAX_SEQ}", params.page_size):
        for _sid, fields in page:
            act = parse_action(fields, params.max_entry_bytes, with_tool=True)
            if type(act) is not str:
                samples.append((act.prompt, act.tool, act.reward))
    return samples


def apply_policy(store: Store, params: NudgeParams, workspace: Path, allowed_roots: list[Path] | None = None,
                 *, now: float | None = None) -> PolicyChange:
    """Compute the nudges from the store and merge them into the workspace's policy file."""
    path = policy_path(workspace, allowed_roots)
    samples = read_samples(store, params, now)
    new = compute_policy(samples, params)
    existing = _load(path)
    if not new["prefer_tools"]:
        return PolicyChange(path, False, len(samples), new,
                            [f"not enough data: no tool has {params.min_count} actions in the last {params.hours:g} h; file left as is"])
    merged = merge_policy(existing, new)
    text = yaml.safe_dump(merged, sort_keys=False, allow_unicode=True, default_flow_style=False, width=1000)
    changed = not path.exists() or path.read_text(encoding="utf-8") != text
    lines = _describe(existing.get("policy") or {}, merged["policy"])
    if changed:
        write_atomic(path, text.encode("utf-8"))
    return PolicyChange(path, changed, len(samples), new, lines)
