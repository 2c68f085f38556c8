"""Synthetic coding-agent actions for a fresh machine (`grpo demo seed`).

`demo_actions(n, seed, now, days)` builds `n` ActionRecord dicts and some RetrievalEvent dicts,
deterministic for a given (n, seed, now, days): 48 prompts over six task kinds (fix a bug,
refactor, optimise, write tests, search, explain), eight tools, seven signature names, the action
type each tool implies, and candidate answers in six styles. Rewards carry real, learnable signal:
reward = base(kind, style) + bonus(kind, tool) + noise, clipped to [0, 1]. For example a diff that
also reports running the tests scores high on fix/bug prompts, a list of search hits scores high on
"find/where" prompts, prose scores high on "explain" prompts, and `shell_exec` almost never helps
(so `apply-policy` denies it). Timestamps are spread over the last `days` days; `seed_store` writes
them with stream ids taken from those timestamps (in order, after any entry already in the stream),
so a time window selects them by id exactly as it would live traffic.
"""

from __future__ import annotations

import hashlib
import random
import time
import uuid
from typing import Any

from miner.actionlog import ActionLog
from miner.cursor import id_tuple
from miner.store import Store

KINDS: dict[str, list[str]] = {
    "fix": [
        "Fix the off-by-one bug in {mod} when the last page is empty",
        "Fix the crash in {fn} of {mod} on empty input",
        "Fix the bug where {fn} in {mod} returns stale cache entries",
        "Fix the failing test for {fn} in {mod} after the timezone change",
        "Fix the race condition bug in {fn} of {mod}",
        "Fix the unicode decoding bug in {mod} when reading config files",
        "Fix the memory leak bug in {fn} of {mod}",
        "Fix the wrong exit code bug of {fn} in {mod}",
    ],
    "refactor": [
        "Refactor {fn} in {mod} for clarity",
        "Refactor {mod} to remove the duplicated retry logic",
        "Refactor the long {fn} in {mod} into smaller functions",
        "Refactor {fn} in {mod} to use dataclasses instead of dicts",
        "Refactor the error handling of {fn} in {mod}",
        "Refactor {mod} so that {fn} has no global state",
        "Refactor the nested loops of {fn} in {mod}",
        "Refactor {fn} in {mod} to use pathlib",
    ],
    "optimize": [
        "Optimize {fn} in {mod}: it is too slow on large inputs",
        "Optimize the database queries issued by {fn} in {mod}",
        "Optimize memory use of {fn} in {mod} when parsing big files",
        "Optimize startup time of {mod} by making imports lazy",
        "Optimize the hot loop of {fn} in {mod}",
        "Optimize {fn} in {mod} to avoid quadratic string building",
        "Optimize the JSON serialisation in {fn} of {mod}",
        "Optimize caching in {fn} of {mod} for repeated calls",
    ],
    "test": [
        "Write unit tests for {fn} in {mod}",
        "Write tests covering the error paths of {fn} in {mod}",
        "Write a regression test for {fn} in {mod} with empty input",
        "Write property-based tests for {fn} in {mod}",
        "Write integration tests for {mod} against a temp directory",
        "Write tests for the retry behaviour of {fn} in {mod}",
        "Write tests for {fn} in {mod} with unicode paths",
        "Write tests asserting the log output of {fn} in {mod}",
    ],
    "search": [
        "Find where {fn} is defined and list its callers",
        "Find all places where {mod} reads environment variables",
        "Find where the config of {mod} is loaded",
        "Find every caller of {fn} that ignores its return value",
        "Find where {mod} opens network connections",
        "Find the code path where {fn} writes temporary files",
        "Find where {fn} in {mod} is registered as a plugin",
        "Find all uses of the deprecated {fn} API",
    ],
    "explain": [
        "Explain how {fn} in {mod} handles errors",
        "Explain the data flow through {fn} of {mod}",
        "Explain why {fn} in {mod} holds a lock",
        "Explain the caching strategy of {mod}",
        "Explain what {fn} in {mod} returns on timeout",
        "Explain how {mod} decides which backend to use",
        "Explain the retry policy of {fn} in {mod}",
        "Explain the purpose of the registry in {mod}",
    ],
}
MODULES = ["pagination.py", "auth/session.py", "storage/cache.py", "cli/main.py", "sync/worker.py",
           "parsers/config.py", "net/client.py", "reports/render.py"]
FUNCS = ["load_page", "refresh_token", "get_or_fetch", "run_command", "process_batch", "parse_file",
         "send_request", "render_table"]
SIGNATURES = {"fix": "FixBug", "refactor": "RefactorCode", "optimize": "OptimizePerf", "test": "WriteTests",
              "search": "SearchCode", "explain": "ExplainCode"}
GENERIC_SIGNATURE = "CodeAgent"
TOOLS: dict[str, str] = {  # tool -> action_type
    "run_tests": "test_execution", "apply_patch": "patch_generation", "edit_file": "code_edit",
    "grep_search": "file_search", "read_file": "context_building", "profiler": "optimization",
    "static_analysis": "code_analysis", "shell_exec": "tool_selection",
}
STYLES = ("diff_tests", "diff", "tests", "prose", "search", "vague")
BASE: dict[str, dict[str, float]] = {  # kind -> style -> mean reward
    "fix": {"diff_tests": 0.85, "diff": 0.55, "tests": 0.45, "prose": 0.2, "search": 0.15, "vague": 0.05},
    "refactor": {"diff_tests": 0.8, "diff": 0.7, "tests": 0.35, "prose": 0.3, "search": 0.1, "vague": 0.05},
    "optimize": {"diff_tests": 0.8, "diff": 0.55, "tests": 0.3, "prose": 0.35, "search": 0.1, "vague": 0.05},
    "test": {"diff_tests": 0.85, "tests": 0.8, "diff": 0.4, "prose": 0.2, "search": 0.1, "vague": 0.05},
    "search": {"search": 0.85, "prose": 0.45, "diff": 0.15, "diff_tests": 0.15, "tests": 0.1, "vague": 0.05},
    "explain": {"prose": 0.8, "search": 0.5, "diff": 0.2, "diff_tests": 0.25, "tests": 0.15, "vague": 0.05},
}
BONUS: dict[str, dict[str, float]] = {  # kind -> tool -> reward bonus
    "fix": {"run_tests": 0.1, "apply_patch": 0.05, "grep_search": -0.05},
    "refactor": {"edit_file": 0.05, "static_analysis": 0.05},
    "optimize": {"profiler": 0.12},
    "test": {"run_tests": 0.1},
    "search": {"grep_search": 0.1, "read_file": -0.05},
    "explain": {"read_file": 0.1},
}
TOOL_STYLES: dict[str, dict[str, float]] = {  # tool -> style -> weight
    "run_tests": {"tests": 4, "diff_tests": 4, "vague": 1},
    "apply_patch": {"diff": 4, "diff_tests": 3, "vague": 1},
    "edit_file": {"diff": 4, "diff_tests": 2, "prose": 1, "vague": 1},
    "grep_search": {"search": 5, "prose": 2, "vague": 1},
    "read_file": {"prose": 4, "search": 2, "vague": 1},
    "profiler": {"diff": 3, "prose": 3, "diff_tests": 1, "vague": 1},
    "static_analysis": {"prose": 3, "diff": 3, "search": 1, "vague": 1},
    "shell_exec": {"vague": 6, "prose": 1},
}
TOOL_WEIGHTS = {"run_tests": 3, "apply_patch": 3, "edit_file": 3, "grep_search": 2, "read_file": 2,
                "profiler": 1.5, "static_analysis": 1.5, "shell_exec": 1}
VAGUE = ["I looked into it; it should be fine now.", "Done.", "Made some changes, please check.",
         "The issue seems to be resolved."]
ENVIRONMENTS = (("development", 6), ("testing", 3), ("local", 1))


def demo_prompts(seed: int = 0) -> list[tuple[str, str]]:
    """The 48 (kind, prompt) pairs of the demo, deterministic for `seed`."""
    rng = random.Random(f"prompts-{seed}")
    return [(kind, t.format(mod=rng.choice(MODULES), fn=rng.choice(FUNCS))) for kind, ts in KINDS.items() for t in ts]


def _answer(rng: random.Random, style: str, kind: str, prompt: str) -> str:
    mod = next((m for m in MODULES if m in prompt), rng.choice(MODULES))
    fn = next((f for f in FUNCS if f in prompt), rng.choice(FUNCS))
    line = rng.randint(10, 400)
    passed = rng.randint(5, 120)
    diff = (f"--- a/{mod}\n+++ b/{mod}\n@@ -{line},6 +{line},6 @@ def {fn}(\n"
            f"-    end = start + size + {rng.randint(1, 3)}\n+    end = min(start + size, len(items))\n")
    if style == "diff_tests":
        extra = f"Benchmark: {fn} {rng.randint(2, 9)}.{rng.randint(0, 9)}x faster.\n" if kind == "optimize" else ""
        return f"```diff\n{diff}```\n{extra}Ran the tests: `pytest -q tests/` -> {passed} passed, 0 failed."
    if style == "diff":
        return f"Proposed change to {fn}:\n```diff\n{diff}```"
    if style == "tests":
        return (f"Added tests/test_{fn}.py with {rng.randint(2, 9)} cases; ran the tests: "
                f"{passed} passed, {rng.randint(0, 2)} failed.")
    if style == "prose":
        return (f"{fn} in {mod} first validates its arguments, then delegates to a helper at line {line}; "
                f"errors are caught and re-raised with context. The retry budget is {rng.randint(2, 5)} attempts.")
    if style == "search":
        hits = "\n".join(f"{rng.choice(MODULES)}:{rng.randint(1, 500)}: {fn}(...)" for _ in range(rng.randint(2, 5)))
        return f"Found {fn} references:\n{hits}"
    return rng.choice(VAGUE)


def _pick(rng: random.Random, weights: dict[str, float]) -> str:
    keys = list(weights)
    return rng.choices(keys, weights=[weights[k] for k in keys])[0]


def demo_actions(n: int = 1200, seed: int = 0, now: float | None = None, days: float = 3.0) -> tuple[list[dict], list[dict]]:
    """(`n` action records, retrieval events), oldest first, timestamps within the last `days` days."""
    rng = random.Random(seed)
    now = time.time() if now is None else now
    prompts = demo_prompts(seed)
    times = sorted(now - rng.random() * days * 86400 for _ in range(n))
    weights = [1.0 + (i % 5) * 0.25 for i in range(len(prompts))]  # some prompts are asked more often
    actions = []
    for ts in times:
        kind, prompt = rng.choices(prompts, weights=weights)[0]
        tool = _pick(rng, TOOL_WEIGHTS)
        style = _pick(rng, TOOL_STYLES[tool])
        mean = BASE[kind][style] + BONUS[kind].get(tool, 0.0) - (0.3 if tool == "shell_exec" else 0.0)
        reward = round(min(1.0, max(0.0, rng.gauss(mean, 0.08))), 3)
        text = _answer(rng, style, kind, prompt)
        text_key = {"run_tests": "stdout", "apply_patch": "patch_content"}.get(tool, "output")
        prompt_place = rng.random()
        params: dict[str, Any] = {"tool": tool,
                                  "signature_name": GENERIC_SIGNATURE if rng.random() < 0.2 else SIGNATURES[kind]}
        state_before: dict[str, Any] = {"repo": "acme/app", "branch": "main"}
        if prompt_place < 0.8:
            params["query"] = prompt
        elif prompt_place < 0.9:
            params["task"] = prompt
        else:
            state_before["current_task"] = prompt
        actions.append({
            "action_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            "timestamp": round(ts, 3),
            "action_type": TOOLS[tool],
            "state_before": state_before,
            "state_after": {"files_changed": rng.randint(0, 3) if style.startswith("diff") else 0},
            "parameters": params,
            "result": {text_key: text, "exit_code": 0 if reward > 0.3 else 1},
            "reward": reward,
            "rewards": {"correctness": reward, "style": round(rng.random(), 3)},
            "confidence": round(rng.uniform(0.4, 0.99), 3),
            "execution_time": round(rng.uniform(0.1, 30.0), 2),
            "environment": _pick(rng, dict(ENVIRONMENTS)),
            "context_hash": hashlib.sha1(f"{prompt}|rev{int(ts // 86400)}".encode()).hexdigest() if rng.random() < 0.8 else None,
        })
    events = []
    for i, (kind, prompt) in enumerate(prompts):
        if i % 2:
            continue
        for _ in range(rng.randint(1, 3)):
            query = prompt if rng.random() < 0.7 else "  " + prompt.replace(" ", "  ") + "\n"
            paths = rng.sample(MODULES, rng.randint(2, 4))
            events.append({
                "event_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                "timestamp": round(now - rng.random() * days * 86400, 3),
                "workspace_path": "/srv/acme/app", "query": query,
                "hits": [{"path": p, "score": round(rng.uniform(0.2, 0.99), 3), "source": "imesh"} for p in paths],
                "environment": "development",
            })
    events.sort(key=lambda e: e["timestamp"])
    return actions, events


def stream_ids(times: list[float], after: str | None) -> list[str]:
    """Strictly increasing ids `<ms>-<seq>` from sorted `times`, all after the id `after`."""
    prev_ms, prev_seq = id_tuple(after) if after else (-1, 0)
    out = []
    for ts in times:
        ms = int(ts * 1000)
        if ms > prev_ms:
            prev_ms, prev_seq = ms, 0
        else:
            prev_seq += 1
        out.append(f"{prev_ms}-{prev_seq}")
    return out


def seed_store(store: Store, n: int = 1200, seed: int = 0, *, now: float | None = None, days: float = 3.0,
               actions_stream: str = "rl_actions", retrieval_stream: str = "retrieval_events",
               maxlen: int | None = None) -> tuple[int, int]:
    """Write the demo actions and retrieval events; returns (actions written, events written)."""
    actions, events = demo_actions(n, seed, now, days)
    log = ActionLog(store, actions_stream, retrieval_stream)
    with store.errors():
        last_action = store.client.xrevrange(actions_stream, count=1)
        last_event = store.client.xrevrange(retrieval_stream, count=1)
    a_ids = stream_ids([a["timestamp"] for a in actions], last_action[0][0].decode() if last_action else None)
    e_ids = stream_ids([e["timestamp"] for e in events], last_event[0][0].decode() if last_event else None)
    log.record_actions(actions, ids=a_ids, maxlen=maxlen)
    log.record_retrievals(events, ids=e_ids, maxlen=maxlen)
    return len(actions), len(events)
