"""`grpo log-action`: append an action record (or with `--retrieval`, a retrieval event) to the store.

The record comes from the RECORD argument (JSON text, or `-` for stdin), from stdin when it is piped
and no field flags are given (one JSON object, a JSON array of objects, or JSON lines), or from the
field flags. Every record is validated first (`miner.schema`); an invalid one is refused naming the
field and the reason, and nothing is written. A record larger than `grpo mine` accepts
(`miner.extract.DEFAULT_MAX_ENTRY_BYTES`) is a usage error (exit 2) naming the limit and its size.
Prints the stream id of each entry written.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from grpo_tui.commands.store import connect, redis_url_option
from grpo_tui.context import Ctx, pass_ctx
from grpo_tui.errors import UsageError
from miner.actionlog import ActionLog
from miner.errors import InvalidRecord, RecordTooLarge


def _parse_records(text: str, source: str) -> list[Any]:
    """One JSON object, an array of them, or JSON lines; the stdlib parser reads Python's NaN tokens,
    so a NaN reward is refused by validation with its field name rather than as a syntax error."""
    text = text.strip()
    if not text:
        raise InvalidRecord(f"{source}: no record (empty input)")
    try:
        data = json.loads(text)
        return data if isinstance(data, list) else [data]
    except ValueError:
        pass
    records = []
    for n, line in enumerate(text.splitlines(), 1):
        if line.strip():
            try:
                records.append(json.loads(line))
            except ValueError as exc:
                raise InvalidRecord(f"{source}: line {n} is not valid JSON ({exc})") from exc
    return records


def _parse_hit(value: str) -> dict[str, Any]:
    parts = value.rsplit(":", 2)
    if len(parts) == 3:
        try:
            return {"path": parts[0], "score": float(parts[1]), "source": parts[2]}
        except ValueError:
            pass
    parts = value.rsplit(":", 1)
    try:
        return {"path": parts[0], "score": float(parts[1])}
    except (ValueError, IndexError) as exc:
        raise UsageError(f"--hit {value!r}: expected PATH:SCORE or PATH:SCORE:SOURCE") from exc


@click.command("log-action")
@click.argument("record", required=False)
@click.option("--retrieval", is_flag=True, help="Log a retrieval event (stream retrieval_events) instead of an action.")
@click.option("--action-type", help="Action: one of code_analysis, code_edit, file_search, test_execution, patch_generation, optimization, verification, context_building, tool_selection.")
@click.option("--prompt", help="Action: the task (parameters.query).")
@click.option("--output", help="Action: the candidate answer (result.output).")
@click.option("--reward", type=float, help="Action: the reward (finite number).")
@click.option("--tool", help="Action: the tool used (parameters.tool).")
@click.option("--signature-name", help="Action: the signature (parameters.signature_name).")
@click.option("--context-hash", help="Action: a hash of the context the action saw.")
@click.option("--confidence", type=float, help="Action: the agent's confidence.")
@click.option("--execution-time", type=float, help="Action: seconds the action took.")
@click.option("--environment", help="development, testing, staging, production or local.")
@click.option("--query", help="Retrieval: the query.")
@click.option("--hit", "hits", multiple=True, metavar="PATH:SCORE[:SOURCE]", help="Retrieval: one hit (repeatable).")
@click.option("--workspace-path", help="Retrieval: the workspace searched.")
@click.option("--maxlen", type=click.IntRange(min=1), help="Trim the stream to about N entries (XADD MAXLEN ~ N).")
@click.option("--stream", help="Stream name [rl_actions, or retrieval_events with --retrieval].")
@redis_url_option
@pass_ctx
def log_action_cmd(ctx: Ctx, record: str | None, retrieval: bool, maxlen: int | None, stream: str | None,
                   redis_url: str | None, **fields: Any) -> None:
    """Append an action record (JSON on stdin, RECORD, or field flags) to the action stream."""
    given = {k: v for k, v in fields.items() if v not in (None, ())}
    if record is not None and given:
        raise UsageError("give either a JSON record (RECORD or stdin) or field flags, not both")
    if record == "-" or (record is None and not given):
        if record is None and sys.stdin.isatty():
            raise UsageError("pipe a JSON record on stdin, pass it as RECORD, or give field flags (see --help)")
        records = _parse_records(sys.stdin.read(), "stdin")
    elif record is not None:
        records = _parse_records(record, "RECORD")
    elif retrieval:
        records = [_retrieval_from_flags(given)]
    else:
        records = [_action_from_flags(given)]
    store = connect(ctx, redis_url)
    try:
        if retrieval:
            log = ActionLog(store, retrieval_stream=stream or "retrieval_events")
            ids = log.record_retrievals(records, maxlen=maxlen)
        else:
            log = ActionLog(store, actions_stream=stream or "rl_actions")
            ids = log.record_actions(records, maxlen=maxlen)
    except RecordTooLarge as exc:  # mine would skip it as too_large: refuse it now, as a usage error
        raise UsageError(str(exc)) from exc
    finally:
        store.close()
    for sid in ids:
        click.echo(sid)


def _action_from_flags(given: dict[str, Any]) -> dict[str, Any]:
    retrieval_only = sorted(k for k in ("query", "hits", "workspace_path") if k in given)
    if retrieval_only:
        raise UsageError(f"--{retrieval_only[0].replace('_', '-').rstrip('s')} is a retrieval flag: add --retrieval")
    rec: dict[str, Any] = {"parameters": {}, "result": {}}
    for key in ("action_type", "reward", "confidence", "execution_time", "environment", "context_hash"):
        if key in given:
            rec[key] = given[key]
    if "prompt" in given:
        rec["parameters"]["query"] = given["prompt"]
    for key in ("tool", "signature_name"):
        if key in given:
            rec["parameters"][key] = given[key]
    if "output" in given:
        rec["result"]["output"] = given["output"]
    return rec


def _retrieval_from_flags(given: dict[str, Any]) -> dict[str, Any]:
    action_only = sorted(k for k in ("action_type", "prompt", "output", "reward", "tool", "signature_name",
                                     "context_hash", "confidence", "execution_time") if k in given)
    if action_only:
        raise UsageError(f"--{action_only[0].replace('_', '-')} is an action flag, not a retrieval one")
    rec: dict[str, Any] = {"hits": [_parse_hit(h) for h in given.get("hits", ())]}
    for key in ("query", "workspace_path", "environment"):
        if key in given:
            rec[key] = given[key]
    return rec
