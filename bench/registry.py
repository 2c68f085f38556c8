"""The case registry: what a benchmark case is, `register()`, `load()` and `select()`.

A `Case` names its providers (the first one is ours; `naive` is the baseline ratios are taken against)
and default sizes. `build(size, provider)` returns a dict of inputs (tensors that need gradients have
`requires_grad`); `run(provider, inputs)` runs one provider once and returns a dict of outputs (the
worker drops `.grad` of every input tensor between runs, so gradients never accumulate);
`check(inputs, outputs)` returns {output: max abs error vs float64}; `extra(inputs)` returns numbers the
case measured besides time (e.g. the console's idle CPU %), kept in the result row as `extra`;
`bytes_moved(size)` is the
minimum memory traffic of one run (for the roofline); `skip_reason(provider, device)` says why a
provider cannot run here (None when it can). Cases live in `bench/cases/*.py`.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bench.errors import BenchUsageError

DTYPES = ("fp32", "bf16")


@dataclass(frozen=True)
class Size:
    """One point of a case: N tokens, V vocab (None when the case has none), H hidden, dtype, device."""

    tokens: int
    vocab: int | None
    hidden: int | None
    dtype: str  # "fp32" | "bf16"
    device: str  # "cpu" | "cuda"


@dataclass(frozen=True)
class Case:
    name: str
    summary: str
    providers: tuple[str, ...]
    tokens: tuple[int, ...]  # default token counts
    vocabs: tuple[int | None, ...]  # default vocabularies; (None,) when the case has no vocab
    hidden: int | None  # default hidden size; None when the case has none
    build: Callable[[Size, str], dict[str, Any]]
    run: Callable[[str, dict[str, Any]], dict[str, Any]]
    check: Callable[[dict[str, Any], dict[str, Any]], dict[str, float]] | None = None
    bytes_moved: Callable[[Size], int] | None = None
    flops: Callable[[Size], int] | None = None  # FLOPs of one run; with bytes_moved: % of the roofline bound
    cuda_tokens: tuple[int, ...] = ()  # default token counts on CUDA (empty: `tokens`)
    skip_reason: Callable[[str, str], str | None] | None = None
    extra: Callable[[dict[str, Any]], dict[str, Any]] | None = None
    default: bool = True  # part of a bare `grpo bench`
    order: int = 100  # listing and default run order (lower first)

    def why_skipped(self, provider: str, device: str) -> str | None:
        return self.skip_reason(provider, device) if self.skip_reason else None


CASES: dict[str, Case] = {}


def register(case: Case) -> Case:
    """Add a case to the registry (called at import time by the modules in bench/cases/)."""
    if case.name in CASES and CASES[case.name] is not case:
        raise ValueError(f"bench case {case.name!r} registered twice")
    CASES[case.name] = case
    return case


def load() -> dict[str, Case]:
    """Import every module of bench.cases (each registers its cases) and return the registry."""
    import bench.cases as package

    for info in pkgutil.iter_modules(package.__path__):
        importlib.import_module(f"{package.__name__}.{info.name}")
    return dict(sorted(CASES.items(), key=lambda item: (item[1].order, item[0])))


def select(names: tuple[str, ...] | list[str]) -> list[Case]:
    """The cases named (default: every `default` case), in the order given; unknown names are a usage error."""
    cases = load()
    if not names:
        return [c for c in cases.values() if c.default]
    unknown = [n for n in names if n not in cases]
    if unknown:
        raise BenchUsageError(f"unknown bench case {', '.join(map(repr, unknown))}; valid cases: {', '.join(cases)}")
    return [cases[n] for n in dict.fromkeys(names)]
