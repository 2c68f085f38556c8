"""Reward functions for online GRPO: loading, the built-ins and the weighted mix (TRL's contract).

A spec is `module:function` (importable, the current directory included), `path/to/file.py:function`
or `builtin:NAME`; its name (metrics `reward/<name>_mean`, keys of `weights`) is the function's
`__name__` (the attribute name for a lambda), or NAME. A function is called as
`fn(prompts=[str], completions=[str], completion_ids=[[int]], **columns)`, each column one other field of
the prompt rows aligned with the samples, and returns one `float | None` per sample (None: not
applicable). `score` checks what comes back (length, finite numbers) and mixes it: total[i] =
sum of w * r over the functions with a value for sample i (TRL's nansum; w = weights.get(name, 1.0));
a sample no function scores gets 0.0 and a warning (once per set of functions). Every failure is a
`RewardError` naming the spec or function and, when one can be found, the sample.

Built-ins: `exec_tests` (policy/exec_tests.py: fraction of the row's `tests` that pass against the
completion's code), `format` (1.0 when re.search(--format-regex, completion, DOTALL) matches, else 0.0),
`overlong` (DAPO's soft overlong punishment by token count L, with L_max = max_new_tokens and L_cache =
the overlong buffer: 0 up to L_max - L_cache, (L_max - L_cache - L) / L_cache up to L_max, -1 beyond).
"""

from __future__ import annotations

import importlib
import importlib.util
import itertools
import logging
import math
import os
import re
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from policy.errors import RewardError
from policy.exec_tests import make_exec_tests

log = logging.getLogger("policy")
BUILTINS = ("exec_tests", "format", "overlong")
RESERVED = ("prompts", "completions", "completion_ids")  # argument names no column may take
_file_modules = itertools.count()
_warned_unscored: set[tuple[str, ...]] = set()


@dataclass
class RewardFn:
    name: str  # for metrics `reward/<name>_mean` and for weights
    fn: Callable[..., list[float | None]]
    spec: str  # what the user passed


@dataclass
class RewardOptions:
    format_regex: str | None = None  # builtin:format
    max_new_tokens: int = 64  # builtin:overlong: L_max
    overlong_buffer: int | None = None  # builtin:overlong: L_cache (default max_new_tokens // 4, at least 1)
    exec_timeout_s: float = 5.0  # builtin:exec_tests wall-time limit per completion
    exec_memory_mb: int = 1024  # builtin:exec_tests address-space limit (RLIMIT_AS)


@dataclass
class Scored:
    total: list[float]  # weighted mix per sample
    per_fn: dict[str, list[float | None]]  # raw values per function


# --- loading ---------------------------------------------------------------------------------------


def load_reward_fn(spec: str, options: RewardOptions) -> RewardFn:
    where, sep, attr = spec.rpartition(":")
    if not (sep and where and attr):
        raise RewardError(f"bad reward function {spec!r}: use module:function, path/to/file.py:function or builtin:NAME")
    if where == "builtin":
        return RewardFn(attr, _builtin(attr, options, spec), spec)
    is_file = where.endswith(".py") or "/" in where or os.sep in where
    module = _load_file(Path(where).expanduser(), spec) if is_file else _import(where, spec)
    if not hasattr(module, attr):
        raise RewardError(f"reward function {spec!r}: {where} has no attribute {attr!r}; check the name after the colon")
    fn = getattr(module, attr)
    if not callable(fn):
        raise RewardError(f"reward function {spec!r}: {where}:{attr} is a {type(fn).__name__}, not a function")
    name = getattr(fn, "__name__", "")
    return RewardFn(name if name.isidentifier() else attr, fn, spec)


def load_reward_fns(specs: list[str], options: RewardOptions) -> list[RewardFn]:
    fns = [load_reward_fn(spec, options) for spec in specs]
    _check_unique(fns)
    return fns


def _check_unique(fns: list[RewardFn]) -> None:
    seen: dict[str, str] = {}
    for f in fns:
        if f.name in seen:
            raise RewardError(f"two reward functions are named {f.name!r} ({seen[f.name]} and {f.spec}): rename one")
        seen[f.name] = f.spec


@contextmanager
def _on_sys_path(folder: str) -> Iterator[None]:
    added = folder not in sys.path
    if added:
        sys.path.insert(0, folder)
    try:
        yield
    finally:
        if added and folder in sys.path:
            sys.path.remove(folder)


def _import(name: str, spec: str) -> object:
    importlib.invalidate_caches()
    with _on_sys_path(os.getcwd()):
        try:
            return importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name and (name == exc.name or name.startswith(exc.name + ".")):
                raise RewardError(
                    f"reward function {spec!r}: no module named {name!r}; run from the folder that holds it, "
                    "install it, or pass path/to/file.py:function"
                ) from exc
            raise RewardError(f"reward function {spec!r}: importing {name} failed: {exc}") from exc
        except Exception as exc:  # the user's module raised while importing
            raise RewardError(f"reward function {spec!r}: importing {name} raised {type(exc).__name__}: {exc}") from exc


def _load_file(path: Path, spec: str) -> object:
    if not path.is_file():
        raise RewardError(f"reward function {spec!r}: no file {path} (relative paths start at {os.getcwd()})")
    name = "grpo_reward_" + re.sub(r"\W", "_", path.stem) + f"_{next(_file_modules)}"
    mspec = importlib.util.spec_from_file_location(name, path)
    if mspec is None or mspec.loader is None:
        raise RewardError(f"reward function {spec!r}: {path} cannot be loaded as a Python module")
    module = importlib.util.module_from_spec(mspec)
    sys.modules[name] = module
    try:
        with _on_sys_path(str(path.resolve().parent)):  # so it can import its neighbours
            mspec.loader.exec_module(module)
    except Exception as exc:  # the user's file raised while loading
        del sys.modules[name]
        raise RewardError(f"reward function {spec!r}: loading {path} raised {type(exc).__name__}: {exc}") from exc
    return module


# --- built-ins -------------------------------------------------------------------------------------


def _builtin(name: str, options: RewardOptions, spec: str) -> Callable[..., list[float | None]]:
    if name == "exec_tests":
        return make_exec_tests(options.exec_timeout_s, options.exec_memory_mb)
    if name == "format":
        return _format_reward(options.format_regex)
    if name == "overlong":
        return _overlong_reward(options.max_new_tokens, options.overlong_buffer)
    raise RewardError(f"unknown built-in reward {spec!r}: use one of " + ", ".join(f"builtin:{b}" for b in BUILTINS))


def _format_reward(regex: str | None) -> Callable[..., list[float | None]]:
    if not regex:
        raise RewardError("builtin:format needs --format-regex R")
    try:
        pattern = re.compile(regex, re.DOTALL)
    except re.error as exc:
        raise RewardError(f"builtin:format: --format-regex {regex!r} is not a regular expression: {exc}") from exc

    def format_reward(prompts: list[str], completions: list[str], **_: object) -> list[float | None]:
        return [1.0 if pattern.search(c) else 0.0 for c in completions]

    return format_reward


def _overlong_reward(max_new_tokens: int, overlong_buffer: int | None) -> Callable[..., list[float | None]]:
    l_max = max_new_tokens
    l_cache = max(1, l_max // 4) if overlong_buffer is None else overlong_buffer
    if not 1 <= l_cache <= l_max:
        raise RewardError(f"builtin:overlong needs 1 <= overlong buffer ({l_cache}) <= max new tokens ({l_max})")
    start = l_max - l_cache  # punishment starts after this many tokens

    def overlong(prompts: list[str], completions: list[str], completion_ids: list[list[int]], **_: object) -> list[float | None]:
        lengths = [len(ids) for ids in completion_ids]
        return [0.0 if n <= start else (start - n) / l_cache if n <= l_max else -1.0 for n in lengths]

    return overlong


# --- scoring ---------------------------------------------------------------------------------------


def score(
    fns: list[RewardFn],
    prompts: list[str],
    completions: list[str],
    *,
    completion_ids: list[list[int]],
    columns: dict[str, list],
    weights: dict[str, float],
) -> Scored:
    if not fns:
        raise RewardError("no reward function to score with: pass at least one --reward-fn")
    _check_unique(fns)
    names = [f.name for f in fns]
    unknown = sorted(set(weights) - set(names))
    if unknown:
        raise RewardError(f"reward weights for {', '.join(unknown)}: no reward function has that name (known: {', '.join(names)})")
    for name, w in weights.items():
        if not math.isfinite(w):
            raise RewardError(f"reward weight of {name} must be finite, not {w}")
    n = len(completions)
    if len(prompts) != n or len(completion_ids) != n:
        raise RewardError(f"{len(prompts)} prompts, {n} completions and {len(completion_ids)} completion_ids: one each per sample")
    for key, col in columns.items():
        if key in RESERVED:
            raise RewardError(f"column {key!r} clashes with a reward function argument ({', '.join(RESERVED)}); rename it")
        if len(col) != n:
            raise RewardError(f"column {key!r} has {len(col)} values for {n} samples")
    per_fn = {f.name: _call(f, prompts, completions, completion_ids, columns) for f in fns}
    total, unscored = [], 0
    for i in range(n):
        terms = [weights.get(name, 1.0) * r[i] for name, r in per_fn.items() if r[i] is not None]
        unscored += not terms
        total.append(math.fsum(terms))
    if unscored and tuple(names) not in _warned_unscored:
        _warned_unscored.add(tuple(names))
        log.warning("every reward function (%s) returned None for %d of %d samples; they get a total reward of 0.0 "
                    "(warned once)", ", ".join(names), unscored, n)
    return Scored(total, per_fn)


def _call(f: RewardFn, prompts: list[str], completions: list[str], completion_ids: list[list[int]],
          columns: dict[str, list]) -> list[float | None]:
    n = len(completions)
    if n == 0:
        return []
    try:
        out = f.fn(prompts=prompts, completions=completions, completion_ids=completion_ids, **columns)
    except Exception as exc:  # user code: anything may come out; re-raised typed, with the sample
        i, first = (0, exc) if n == 1 else _first_failing(f, prompts, completions, completion_ids, columns)
        if first is None:
            raise RewardError(f"reward function {f.name} ({f.spec}) raised {type(exc).__name__}: {exc} "
                              f"while scoring samples 0..{n - 1}") from exc
        raise RewardError(f"reward function {f.name} ({f.spec}) raised {type(first).__name__}: {first} on sample {i} "
                          f"(while scoring samples 0..{n - 1})") from first
    return _checked(f, out, n)


def _first_failing(f: RewardFn, prompts: list[str], completions: list[str], completion_ids: list[list[int]],
                   columns: dict[str, list]) -> tuple[int, Exception | None]:
    """Score one sample at a time to find the first that raises; (n, None) when each alone is fine."""
    for i in range(len(completions)):
        try:
            f.fn(prompts=prompts[i:i + 1], completions=completions[i:i + 1], completion_ids=completion_ids[i:i + 1],
                 **{k: v[i:i + 1] for k, v in columns.items()})
        except Exception as exc:  # user code; reported by the caller
            return i, exc
    return len(completions), None


def _checked(f: RewardFn, out: object, n: int) -> list[float | None]:
    if isinstance(out, (str, bytes, Mapping)) or not hasattr(out, "__len__") or not hasattr(out, "__iter__"):
        raise RewardError(f"reward function {f.name} ({f.spec}) returned a {type(out).__name__}, not a list of float | None per sample")
    values = list(out)
    if len(values) != n:
        which = f"sample {len(values)} has no value" if len(values) < n else f"value {n} has no sample"
        raise RewardError(f"reward function {f.name} ({f.spec}) returned {len(values)} values for {n} samples: {which}")
    checked: list[float | None] = []
    for i, v in enumerate(values):
        if v is None:
            checked.append(None)
            continue
        try:
            if isinstance(v, (str, bytes)):
                raise TypeError(type(v).__name__)
            x = float(v)
        except Exception:  # any failing __float__ is the same error for the user
            raise RewardError(f"reward function {f.name} ({f.spec}) returned {repr(v)[:80]} for sample {i}: "
                              "expected a float or None") from None
        if not math.isfinite(x):
            raise RewardError(f"reward function {f.name} ({f.spec}) returned {x} for sample {i}: rewards must be finite "
                              "(return None for a sample it does not apply to)")
        checked.append(x)
    return checked
