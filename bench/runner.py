"""Plan and run a benchmark: one `bench.worker` subprocess per (case, provider, tokens, vocab).

`plan_specs` expands the chosen cases over sizes and providers (a provider that cannot run here is
reported through `note` with the reason, and left out); `run_specs` runs each spec in a fresh
`python -m bench.worker` process and returns its result row, or the spec with an `error` when the
worker failed; `add_ratios` adds time and memory ratios against `naive` at the same size.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.errors import BenchUsageError
from bench.registry import Case

ROOT = Path(__file__).resolve().parents[1]  # the folder holding the bench package


@dataclass(frozen=True)
class Plan:
    cases: list[Case]
    tokens: tuple[int, ...] = ()  # empty: each case's defaults
    vocabs: tuple[int, ...] = ()
    hidden: int | None = None
    dtype: str = "fp32"
    providers: tuple[str, ...] = ()  # empty: every provider of each case
    repeats: int = 5
    warmup: int = 1
    profile_dir: Path | None = None


def detect_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def plan_specs(plan: Plan, device: str, note: Callable[[str], None]) -> list[dict[str, Any]]:
    """Every (case, tokens, vocab, provider) to measure, in that nesting order."""
    known = {p for case in plan.cases for p in case.providers}
    unknown = [p for p in plan.providers if p not in known]
    if unknown:
        raise BenchUsageError(f"unknown provider {', '.join(map(repr, unknown))} for these cases; valid: {', '.join(sorted(known))}")
    specs: list[dict[str, Any]] = []
    for case in plan.cases:
        runnable = []
        for provider in case.providers:
            if plan.providers and provider not in plan.providers:
                continue
            reason = case.why_skipped(provider, device)
            if reason:
                note(f"{case.name}: skipping provider {provider}: {reason}")
            else:
                runnable.append(provider)
        vocabs = case.vocabs if case.vocabs == (None,) else (plan.vocabs or case.vocabs)
        hidden = (plan.hidden or case.hidden) if case.hidden is not None else None
        default_tokens = case.cuda_tokens if device == "cuda" and case.cuda_tokens else case.tokens
        for tokens in plan.tokens or default_tokens:
            for vocab in vocabs:
                for provider in runnable:
                    specs.append(
                        {"case": case.name, "provider": provider, "tokens": tokens, "vocab": vocab, "hidden": hidden,
                         "dtype": plan.dtype, "device": device, "repeats": plan.repeats, "warmup": plan.warmup}
                    )
    if plan.profile_dir is not None and specs:
        target = next((s for s in specs if s["provider"] == "ours"), specs[0])
        target["profile_dir"] = str(plan.profile_dir)
    return specs


def run_worker(spec: dict[str, Any]) -> dict[str, Any]:
    """Run one spec in a fresh interpreter; its last stdout line is the result."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    proc = subprocess.run(
        [sys.executable, "-m", "bench.worker", json.dumps(spec)], capture_output=True, text=True, env=env, check=False
    )
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    if proc.returncode == 0 and lines:
        return json.loads(lines[-1])
    tail = [line for line in proc.stderr.splitlines() if line.strip()][-1:] or ["no output"]
    why = "killed (out of memory?)" if proc.returncode < 0 else f"exit {proc.returncode}"
    return {**spec, "error": f"{why}: {tail[0]}", "stderr": proc.stderr[-4000:]}


def run_specs(specs: list[dict[str, Any]], on_result: Callable[[dict[str, Any]], None] | None = None) -> list[dict[str, Any]]:
    rows = []
    for spec in specs:
        row = run_worker(spec)
        rows.append(row)
        if on_result:
            on_result(row)
    return add_ratios(rows)


def add_ratios(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """time_vs_naive (p50 / naive p50) and mem_vs_naive (peak / naive peak) at the same size and dtype."""

    def key(r: dict[str, Any]) -> tuple:
        return (r["case"], r["tokens"], r["vocab"], r["hidden"], r["dtype"])

    naive = {key(r): r for r in rows if r["provider"] == "naive" and "error" not in r}
    for row in rows:
        base = naive.get(key(row))
        ok = base is not None and "error" not in row
        row["time_vs_naive"] = row["time_ms_p50"] / base["time_ms_p50"] if ok and base["time_ms_p50"] > 0 else None
        row["mem_vs_naive"] = row["peak_extra_mib"] / base["peak_extra_mib"] if ok and base["peak_extra_mib"] > 0 else None
    return rows
