"""From one raw stream entry to a mined action, or the reason it is skipped (DESIGN section 3).

Entry shapes: a field `data` (else `value`, else `payload`) holding the record as JSON; or a flat
field-value entry whose container fields (`parameters`, `result`, `state_before`, `state_after`,
`rewards`, `hits`) are JSON strings and whose `reward` may be a numeric string. JSON is parsed with
orjson; only when orjson refuses a payload is it retried with the stdlib parser, which also reads
the `NaN` / `Infinity` tokens Python agents write (so a NaN reward counts as non_finite_reward).

Skip reasons, checked in this order (each skipped entry is counted under exactly one):

  too_large            the entry's field values exceed `max_entry_bytes` in total
  not_utf8             a field is not valid UTF-8 (binary garbage)
  bad_json             the JSON payload (or a flat entry's JSON container field) does not parse
  wrong_type           the record is not a JSON object, or a container is not an object
  missing_reward       no `reward`, or null
  non_numeric_reward   `reward` is not a number (a string in a JSON record, a bool, a list...)
  non_finite_reward    `reward` is NaN or +-infinity (or too large for a float)
  unknown_action_type  `action_type` missing or not one of the nine of `miner.schema.ActionType`
  unknown_environment  `environment` present but not one of the five of `miner.schema.Environment`
  no_prompt            no prompt key holds a non-blank string
  short_prompt         the whitespace-normalised prompt has fewer than 8 characters
  no_candidate         no candidate text key, and `result` has no scalar items to serialise

Prompt = first non-blank string of keys `query, prompt, instruction, user, input, task`, searching
the containers in order `parameters, result, state_before, state_after` (each container through all
keys before the next container), then `state_before.current_task` (a string, or an object searched
with the same keys); whitespace-normalised. Candidate text = first non-blank string of keys
`output, message, text, stdout, patch_content, diff, result` in `result`, then `parameters`; else the
compact JSON of the scalar items of `result`, cut at 2000 characters. Signature name = first string
`signature_name` in the containers (then top level). Tool name (policy nudges) = first string of
`tool, action, tool_name, signature_name` in the containers, else `action_type`. Named reward axes =
the record's `rewards` when it is an object whose values are all finite numbers (else none are kept;
the entry is still mined on its `reward`). Behaviour log-probs = `result.behavior_logprobs` when it has
the shape `miner.schema.behavior_error` accepts (else it is dropped, like bad reward axes: the entry is
still mined, and training falls back to weight 1 for that candidate).
"""

from __future__ import annotations

import json
import math
from typing import Any, NamedTuple

import orjson

from miner.schema import ACTION_TYPES, BEHAVIOR_KEY, ENVIRONMENTS, behavior_error

SKIP_REASONS: tuple[str, ...] = (
    "too_large", "not_utf8", "bad_json", "wrong_type", "missing_reward", "non_numeric_reward",
    "non_finite_reward", "unknown_action_type", "unknown_environment", "no_prompt", "short_prompt",
    "no_candidate",
)
RETRIEVAL_SKIP_REASONS: tuple[str, ...] = ("too_large", "not_utf8", "bad_json", "wrong_type", "no_query")

PAYLOAD_FIELDS = (b"data", b"value", b"payload")
CONTAINERS = ("parameters", "result", "state_before", "state_after")
JSON_FIELDS = frozenset(CONTAINERS + ("rewards", "hits"))
PROMPT_KEYS = ("query", "prompt", "instruction", "user", "input", "task")
TEXT_KEYS = ("output", "message", "text", "stdout", "patch_content", "diff", "result")
TOOL_KEYS = ("tool", "action", "tool_name", "signature_name")
MIN_PROMPT_CHARS = 8
MAX_FALLBACK_CHARS = 2000
DEFAULT_MAX_ENTRY_BYTES = 1 << 20


class Action(NamedTuple):
    """One minable action (the parts mining needs)."""

    prompt: str  # whitespace-normalised
    text: str  # candidate text
    reward: float
    action_type: str
    environment: str | None
    signature_name: str | None
    context_hash: str | None
    tool: str | None  # only with parse_action(with_tool=True)
    rewards: dict[str, float] | None = None  # the record's named reward axes, when all are finite numbers
    behavior: dict[str, list] | None = None  # result.behavior_logprobs {"token_ids", "logprobs"} when valid


_ACTION_TYPES = {a: a for a in ACTION_TYPES}  # validate and share one string object per value
_ENVIRONMENTS = {e: e for e in ENVIRONMENTS}
_new = tuple.__new__  # builds an Action without the Python-level NamedTuple constructor (hot loop)


def normalise(text: str) -> str:
    """Collapse runs of whitespace to one space and strip the ends."""
    return " ".join(text.split())


def _loads(raw: bytes) -> Any:
    """orjson, then the stdlib parser for what orjson refuses (NaN/Infinity tokens, huge numbers)."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return _fallback(raw)


def _fallback(raw: bytes) -> Any:
    """The stdlib parser (NaN/Infinity tokens, huge numbers), or the _NOT_UTF8 / _BAD_JSON markers."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return _NOT_UTF8
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return _BAD_JSON


_NOT_UTF8 = object()
_BAD_JSON = object()


def decode_entry(fields: dict[bytes, bytes] | list[bytes], max_bytes: int = DEFAULT_MAX_ENTRY_BYTES) -> dict | str:
    """The record held by one stream entry, or a skip reason.

    `fields` is redis-py's field dict, or the raw reply's flat [field, value, ...] list.
    """
    if type(fields) is list:
        if len(fields) == 2 and fields[0] == b"data":  # the documented shape, without building a dict
            raw = fields[1]
        else:
            fields = dict(zip(fields[::2], fields[1::2]))
            raw = fields.get(b"data", fields.get(b"value", fields.get(b"payload")))
    else:
        raw = fields.get(b"data", fields.get(b"value", fields.get(b"payload")))
    if raw is None:
        return _decode_flat(fields, max_bytes)
    if len(raw) > max_bytes:
        return "too_large"
    try:
        rec = orjson.loads(raw)
    except orjson.JSONDecodeError:
        rec = _fallback(raw)
        if rec is _NOT_UTF8:
            return "not_utf8"
        if rec is _BAD_JSON:
            return "bad_json"
    return rec if type(rec) is dict else "wrong_type"


def _decode_flat(fields: dict[bytes, bytes], max_bytes: int) -> dict | str:
    if sum(len(k) + len(v) for k, v in fields.items()) > max_bytes:
        return "too_large"
    rec: dict[str, Any] = {}
    try:
        items = [(k.decode("utf-8"), v.decode("utf-8")) for k, v in fields.items()]
    except UnicodeDecodeError:
        return "not_utf8"
    for key, value in items:
        if key in JSON_FIELDS:
            parsed = _loads(value.encode("utf-8"))
            if parsed is _BAD_JSON:
                return "bad_json"
            rec[key] = parsed
        else:
            rec[key] = value
    reward = rec.get("reward")
    if type(reward) is str:
        try:
            rec["reward"] = float(reward)
        except ValueError:
            pass  # stays a string: non_numeric_reward
    return rec


def _first_text(box: dict | None, keys: tuple[str, ...]) -> str | None:
    """The first non-blank string among `keys` of one container."""
    if box:
        for key in keys:
            value = box.get(key)
            if type(value) is str and value and not value.isspace():
                return value
    return None


def _prompt(rec: dict) -> str | None:
    for name in CONTAINERS:
        value = _first_text(rec.get(name), PROMPT_KEYS)
        if value is not None:
            return value
    before = rec.get("state_before")
    task = before.get("current_task") if before else None
    if type(task) is str and task and not task.isspace():
        return task
    if type(task) is dict:
        return _first_text(task, PROMPT_KEYS)
    return None


def _text(rec: dict) -> str | None:
    for name in ("result", "parameters"):
        value = _first_text(rec.get(name), TEXT_KEYS)
        if value is not None:
            return value
    result = rec.get("result")
    if not result:
        return None
    scalars = {k: v for k, v in result.items() if v is None or type(v) in (str, int, float, bool)}
    if not scalars:
        return None
    try:
        text = orjson.dumps(scalars).decode()
    except orjson.JSONEncodeError:  # e.g. an integer beyond 64 bits read by the stdlib parser
        text = json.dumps(scalars, separators=(",", ":"), ensure_ascii=False)
    return text[:MAX_FALLBACK_CHARS]


def _first_str(rec: dict, keys: tuple[str, ...]) -> str | None:
    for name in CONTAINERS:
        box = rec.get(name)
        if box:
            for key in keys:
                value = box.get(key)
                if type(value) is str and value:
                    return value
    return None


def signature_name(rec: dict) -> str | None:
    """First string `signature_name` in the containers, then at the top level."""
    sig = _first_str(rec, ("signature_name",))
    if sig is None:
        top = rec.get("signature_name")
        sig = top if type(top) is str and top else None
    return sig


def tool_name(rec: dict) -> str:
    """First string of `tool, action, tool_name, signature_name` in the containers, else `action_type`."""
    return _first_str(rec, TOOL_KEYS) or str(rec.get("action_type"))


class ParseCache:
    """Shared across the entries of one mining run: raw prompt -> normalised prompt (normalised once,
    one string object per prompt), and one shared object per equal signature name / context hash."""

    __slots__ = ("prompts", "strings")

    def __init__(self) -> None:
        self.prompts: dict[str, str] = {}
        self.strings: dict[str, str] = {}


def parse_action(fields: dict[bytes, bytes] | list[bytes], max_bytes: int = DEFAULT_MAX_ENTRY_BYTES,
                 with_tool: bool = False, cache: ParseCache | None = None) -> Action | str:
    """The `Action` of one `rl_actions` entry, or the reason it is skipped (one of SKIP_REASONS).

    `tool` is filled only `with_tool` (policy nudges); mining leaves it None. A `cache` shared by the
    entries of one run saves memory and time (see `ParseCache`); results are the same without it.
    """
    if type(fields) is list and len(fields) == 2 and fields[0] == b"data" and len(fields[1]) <= max_bytes:
        try:  # the documented shape, inline (the hot path)
            rec = orjson.loads(fields[1])
        except orjson.JSONDecodeError:
            rec = decode_entry(fields, max_bytes)  # NaN tokens, not UTF-8, bad JSON
        else:
            if type(rec) is not dict:
                return "wrong_type"
    else:
        rec = decode_entry(fields, max_bytes)
    if type(rec) is str:
        return rec
    get = rec.get
    params, result, before, after = get("parameters"), get("result"), get("state_before"), get("state_after")
    if ((type(params) is not dict and params is not None) or (type(result) is not dict and result is not None)
            or (type(before) is not dict and before is not None) or (type(after) is not dict and after is not None)):
        return "wrong_type"
    reward = get("reward")
    kind = type(reward)
    if kind is not float:
        if reward is None:
            return "missing_reward"
        if kind is not int:
            return "non_numeric_reward"
        try:
            reward = float(reward)
        except OverflowError:
            return "non_finite_reward"
    if reward - reward != 0.0:  # NaN or +-inf
        return "non_finite_reward"
    action_type = get("action_type")
    action_type = _ACTION_TYPES.get(action_type) if type(action_type) is str else None  # the shared copy
    if action_type is None:
        return "unknown_action_type"
    env = get("environment")
    if env is not None:
        env = _ENVIRONMENTS.get(env) if type(env) is str else None
        if env is None:
            return "unknown_environment"
    prompt = None
    if params:  # the common case first: parameters.query
        prompt = params.get("query")
        if type(prompt) is not str or prompt.isspace() or not prompt:
            prompt = None
    if prompt is None:
        prompt = _prompt(rec)
        if prompt is None:
            return "no_prompt"
    if cache is None:
        prompt = " ".join(prompt.split())
    else:
        norm = cache.prompts.get(prompt)
        if norm is None:
            norm = cache.prompts[prompt] = " ".join(prompt.split())
        prompt = norm
    if len(prompt) < MIN_PROMPT_CHARS:
        return "short_prompt"
    text = None
    if result:  # the common case first: a text key in `result`
        for key in TEXT_KEYS:
            text = result.get(key)
            if type(text) is str and text and not text.isspace():
                break
            text = None
    if text is None:
        text = _text(rec)
        if text is None:
            return "no_candidate"
    ctx = get("context_hash")
    if type(ctx) is not str:
        ctx = None
    sig = params.get("signature_name") if params else None
    if type(sig) is not str or not sig:
        sig = signature_name(rec)
    if cache is not None:
        if sig is not None:
            sig = cache.strings.setdefault(sig, sig)
        if ctx is not None:
            ctx = cache.strings.setdefault(ctx, ctx)
    tool = (_first_str(rec, TOOL_KEYS) or action_type) if with_tool else None
    axes = get("rewards")
    if axes is not None:
        axes = _axes(axes)
    behavior = result.get(BEHAVIOR_KEY) if result else None
    if behavior is not None:
        behavior = _behavior(behavior)
    return _new(Action, (prompt, text, reward, action_type, env, sig, ctx, tool, axes, behavior))


def _behavior(raw: Any) -> dict[str, list] | None:
    """`result.behavior_logprobs` as {"token_ids": [int], "logprobs": [float]} when valid, else None (dropped)."""
    if behavior_error(raw) is not None:
        return None
    return {"token_ids": list(raw["token_ids"]), "logprobs": [float(x) for x in raw["logprobs"]]}


def _axes(raw: Any) -> dict[str, float] | None:
    """`rewards` as {axis: float} when it is an object of finite numbers, else None (the axes are dropped;
    the entry is still mined with its scalar `reward`)."""
    if type(raw) is not dict or not raw:
        return None
    out = {}
    for name, value in raw.items():
        if type(value) not in (int, float):  # bool is not a number here
            return None
        try:
            value = float(value)
        except OverflowError:
            return None
        if value - value != 0.0:  # NaN or +-inf
            return None
        out[name] = value
    return out


class Retrieval(NamedTuple):
    query: str  # whitespace-normalised
    hits: list[dict]  # [{"path", "score", "source"}]


def parse_retrieval(fields: dict[bytes, bytes], max_bytes: int = DEFAULT_MAX_ENTRY_BYTES) -> Retrieval | str:
    """The query and valid hits of one `retrieval_events` entry, or a skip reason (RETRIEVAL_SKIP_REASONS).

    Hits that are not objects with a string `path` and a finite numeric `score` are dropped.
    """
    rec = decode_entry(fields, max_bytes)
    if type(rec) is str:
        return rec
    query = rec.get("query")
    if type(query) is not str or not query.strip():
        return "no_query"
    raw_hits = rec.get("hits")
    if raw_hits is not None and type(raw_hits) is not list:
        return "wrong_type"
    hits = []
    for hit in raw_hits or ():
        if type(hit) is not dict or type(hit.get("path")) is not str:
            continue
        score = hit.get("score")
        if type(score) not in (int, float):
            continue
        try:
            score = float(score)
        except OverflowError:
            continue
        if not math.isfinite(score):
            continue
        source = hit.get("source")
        hits.append({"path": hit["path"], "score": float(score), "source": source if type(source) is str else None})
    return Retrieval(normalise(query), hits)
