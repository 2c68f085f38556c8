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

from pydantic import BaseModel, ConfigDict, Field, ValidationError

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
