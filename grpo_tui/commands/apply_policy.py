"""`grpo apply-policy`: tool-preference nudges from recent rewards into `<workspace>/.dspy_policy.yaml`.

See `miner.nudges` for the rules. `--workspace` defaults to the folder holding the home (`.grpo`)
and must resolve inside the current directory or that folder: `--workspace ../..` style escapes and
symlinks out of the workspace are refused (exit 1). Prints what changed, or that nothing did.
"""

from __future__ import annotations

from pathlib import Path

import click
import orjson

from grpo_tui.commands.store import connect, redis_url_option
from grpo_tui.context import Ctx, pass_ctx
from miner.nudges import NudgeParams, apply_policy, policy_path


@click.command("apply-policy")
@click.option("--hours", type=click.FloatRange(min=0, min_open=True), default=24.0, show_default=True, help="Use actions of the last N hours.")
@click.option("--top-k", type=click.IntRange(min=1), default=3, show_default=True, help="Prefer the K best tools by mean reward.")
@click.option("--bottom-k", type=click.IntRange(min=0), default=1, show_default=True, help="Deny up to K worst tools (only those with mean reward <= 0.05).")
@click.option("--min-count", type=click.IntRange(min=1), default=5, show_default=True, help="A tool needs this many actions to be ranked.")
@click.option("--workspace", type=click.Path(path_type=Path, file_okay=False), help="The agent's project folder [the folder holding --home].")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (last line).")
@redis_url_option
@pass_ctx
def apply_policy_cmd(ctx: Ctx, hours: float, top_k: int, bottom_k: int, min_count: int, workspace: Path | None,
                     as_json: bool, redis_url: str | None) -> None:
    """Write prefer/deny tool nudges and keyword rules into <workspace>/.dspy_policy.yaml."""
    roots = [Path.cwd(), ctx.home.parent]
    workspace = workspace if workspace is not None else ctx.home.parent
    policy_path(workspace, roots)  # refuse a bad path before touching the store
    params = NudgeParams(hours=hours, top_k=top_k, bottom_k=bottom_k, min_count=min_count)
    store = connect(ctx, redis_url)
    try:
        change = apply_policy(store, params, workspace, roots)
    finally:
        store.close()
    if as_json:
        click.echo(orjson.dumps(change.summary()).decode())
        return
    click.echo(f"{change.actions} actions in the last {hours:g} h")
    for line in change.lines:
        click.echo(f"  {line}")
    click.echo(f"updated {change.path}" if change.changed else f"no changes to {change.path}")
