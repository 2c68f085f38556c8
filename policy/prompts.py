"""Prompts for online training: `--prompts F` (JSONL or plain text) or the prompts of mined groups.

JSONL (the file's first non-blank line starts with `{`): one object per line with a non-empty string
`prompt`; every other field is a column handed to the reward functions under its own name, one value per
sample (TRL's convention), e.g. `tests` for builtin:exec_tests. Plain text: one prompt per non-blank
line, no columns. A bad JSONL line raises `DatasetError("file:line: reason")`. From a group dataset
(`--dataset`), each group's prompt becomes a row and its logged candidates ride along (`--mix-logged`).
The fingerprint is the sha256 of the file's bytes, as for datasets.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from policy.errors import DatasetError


@dataclass(frozen=True)
class PromptRow:
    prompt: str
    columns: dict[str, Any] = field(default_factory=dict)
    logged: tuple[str, ...] = ()  # logged candidate texts (from a group dataset)
    line: int = 0


@dataclass
class PromptSet:
    path: Path
    rows: list[PromptRow]
    fingerprint: str
    bad_lines: int = 0
    blocked: int = 0
    truncated_prompts: int = 0
    groups: list[Any] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.rows)


def load_prompts(path: Path) -> PromptSet:
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DatasetError(f"{path}: cannot read prompts ({exc.strerror or exc})") from exc
    lines = raw.decode("utf-8", errors="replace").splitlines()
    first = next((ln.strip() for ln in lines if ln.strip()), "")
    rows = [_row(path, i, ln) for i, ln in enumerate(lines, 1) if ln.strip()] if first.startswith("{") else [
        PromptRow(prompt=ln.strip(), line=i) for i, ln in enumerate(lines, 1) if ln.strip()
    ]  # fmt: skip
    if not rows:
        raise DatasetError(f"{path}: no prompts (JSONL with a 'prompt' field, or one prompt per line)")
    return PromptSet(path=path, rows=rows, fingerprint=hashlib.sha256(raw).hexdigest())


def _row(path: Path, line: int, text: str) -> PromptRow:
    try:
        obj = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise DatasetError(f"{path}:{line}: not JSON ({exc})") from exc
    prompt = obj.get("prompt") if isinstance(obj, dict) else None
    if not isinstance(prompt, str) or not prompt.strip():
        raise DatasetError(f"{path}:{line}: needs a non-empty string field 'prompt'")
    return PromptRow(prompt=prompt, columns={k: v for k, v in obj.items() if k != "prompt"}, line=line)


def prompts_from_groups(dataset: Any) -> PromptSet:
    """A PromptSet over a policy.data.Dataset: one row per group, its candidates as logged texts."""
    rows = [PromptRow(prompt=g.prompt, logged=tuple(c.text for c in g.candidates), line=g.line) for g in dataset.groups]
    return PromptSet(
        path=dataset.path, rows=rows, fingerprint=dataset.fingerprint, bad_lines=dataset.bad_lines,
        blocked=dataset.blocked, truncated_prompts=dataset.truncated_prompts, groups=dataset.groups,
    )  # fmt: skip
