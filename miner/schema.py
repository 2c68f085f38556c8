"""Stream record schemas (DESIGN section 3): what agents write to `rl_actions` and `retrieval_events`.

`ActionRecord` and `RetrievalEvent` validate records on the *write* side (`miner.actionlog`,
`grpo log-action`); a bad record raises `InvalidRecord` naming the field and the reason. The miner's
read side does not run pydantic per entry (too slow for 200k entries); it applies the same enums
through `ACTION_TYPES` / `ENVIRONMENTS` and skips-and-counts what does not fit (`miner.extract`).
Unknown extra keys are kept: agents may log more than the documented fields.
"""

from __future__ import annotations

import time
import uuid
from enum import Enum
from typing import Any, Mapping, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from miner.errors import InvalidRecord


class ActionType(str, Enum):
    code_analysis = "code_analysis"
    code_edit = "code_edit"
    file_search = "file_search"
    test_execution = "test_execution"
    patch_generation = "patch_generation"
    optimization = "optimization"
    verification = "verification"
    context_building = "context_building"
    tool_selection = "tool_selection"


class Environment(str, Enum):
    development = "development"
    testing = "testing"
    staging = "staging"
    production = "production"
    local = "local"


ACTION_TYPES: frozenset[str] = frozenset(a.value for a in ActionType)
ENVIRONMENTS: frozenset[str] = frozenset(e.value for e in Environment)
PATCH_ACTION_TYPES: frozenset[str] = frozenset({"patch_generation", "code_edit"})


BEHAVIOR_KEY = "behavior_logprobs"  # in an action record's `result`, and on a group candidate
MAX_BEHAVIOR_TOKENS = 1 << 17


def behavior_error(raw: Any) -> str | None:
    """Why `raw` is not a valid behaviour log-probs object, or None when it is.

    Valid: {"token_ids": [int >= 0, ...], "logprobs": [finite number <= 0, ...]}, both non-empty lists of the
    same length (at most MAX_BEHAVIOR_TOKENS): the sampling engine's log-prob of each token of the
    completion, with the ids they belong to. Extra keys (e.g. "engine") are allowed.
    """
    if type(raw) is not dict:
        return "must be an object with token_ids and logprobs"
    ids, logps = raw.get("token_ids"), raw.get("logprobs")
    if type(ids) is not list or type(logps) is not list or not ids:
        return "token_ids and logprobs must be non-empty lists"
    if len(ids) != len(logps):
        return f"token_ids ({len(ids)}) and logprobs ({len(logps)}) must have the same length"
    if len(ids) > MAX_BEHAVIOR_TOKENS:
        return f"at most {MAX_BEHAVIOR_TOKENS} tokens"
    if any(type(i) is not int or i < 0 for i in ids):
        return "token_ids must be integers >= 0"
    for x in logps:
        if type(x) not in (int, float) or not (x - x == 0.0) or x > 0:  # bool is not a number; NaN, inf, > 0 refused
            return "logprobs must be finite numbers <= 0"
    return None


class _Record(BaseModel):
    # strict: a reward of "0.8" or true is refused, not coerced; extra keys are kept as logged
    model_config = ConfigDict(strict=True, extra="allow", use_enum_values=True)


class ActionRecord(_Record):
    """One agent action with its reward (stream `rl_actions`, field `data`)."""

    action_id: str = Field(default_factory=lambda: str(uuid.uuid4()))
    timestamp: float = Field(default_factory=time.time, allow_inf_nan=False)
    action_type: ActionType = Field(strict=False)  # enums accept their string values
    state_before: dict[str, Any] = Field(default_factory=dict)
    state_after: dict[str, Any] = Field(default_factory=dict)
    parameters: dict[str, Any] = Field(default_factory=dict)
    result: dict[str, Any] = Field(default_factory=dict)
    reward: float = Field(allow_inf_nan=False)
    rewards: dict[str, float] | None = None
    confidence: float | None = Field(None, allow_inf_nan=False)
    execution_time: float | None = Field(None, allow_inf_nan=False)
    environment: Environment = Field(Environment.development, strict=False)
    context_hash: str | None = None

    @model_validator(mode="after")
    def _behavior(self) -> "ActionRecord":
        """`result.behavior_logprobs`, when present, has the shape `behavior_error` checks."""
        if BEHAVIOR_KEY in self.result and (why := behavior_error(self.result[BEHAVIOR_KEY])) is not None:
            raise ValueError(f"result.{BEHAVIOR_KEY}: {why}")
        return self


class RetrievalHit(_Record):
    path: str
    score: float = Field(allow_inf_nan=False)
    source: str | None = None


class RetrievalEvent(_Record):
    """One retrieval (stream `retrieval_events`); joined into `meta.imesh_hits` on the same query."""

    event_id: str = Field(default_factory=lambda: str(uuid.uuid4()))
    timestamp: float = Field(default_factory=time.time, allow_inf_nan=False)
    workspace_path: str | None = None
    query: str = Field(min_length=1)
    hits: list[RetrievalHit] = Field(default_factory=list)
    environment: Environment = Field(Environment.development, strict=False)


R = TypeVar("R", bound=_Record)


def validate_record(model: type[R], data: Mapping[str, Any] | R) -> R:
    """`model` built from `data`; any problem is one `InvalidRecord` naming the field and the reason."""
    if isinstance(data, model):
        return data
    if not isinstance(data, Mapping):
        raise InvalidRecord(f"{model.__name__}: expected a JSON object, got {type(data).__name__}")
    try:
        return model.model_validate(dict(data))
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(p) for p in err["loc"]) or "(record)"
        got = "" if err["type"] == "missing" else f" (got {err.get('input')!r:.80})"
        raise InvalidRecord(f"{model.__name__}: {field}: {err['msg'][:1].lower()}{err['msg'][1:]}{got}") from exc


def to_json_dict(record: _Record) -> dict[str, Any]:
    """The record as plain JSON-ready data (enums as strings, extra keys included)."""
    return record.model_dump(mode="json")
