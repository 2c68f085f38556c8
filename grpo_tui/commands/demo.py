"""`grpo demo seed`: synthetic coding-agent actions in the store, so a fresh machine has data to mine.

See `miner.demo` for what is generated; deterministic for a given `--seed` (timestamps are relative
to now). The default 1200 actions over 3 days give a few dozen groups per level for `--hours 48`
(and >= 20 per level for the auto mode's 24 h window).
"""

from __future__ import annotations

import click
import orjson

from grpo_tui.commands.store import connect, redis_url_option
from grpo_tui.context import Ctx, pass_ctx
from miner.demo import seed_store


@click.group("demo")
def demo_group() -> None:
    """Demo data for trying grpo-tui without an agent."""


@demo_group.command("seed")
@click.option("--actions", "n", type=click.IntRange(min=1), default=1200, show_default=True, help="Action records to write.")
@click.option("--seed", type=int, default=0, show_default=True, help="Random seed (same seed, same records).")
@click.option("--days", type=click.FloatRange(min=0.01), default=3.0, show_default=True, help="Spread timestamps over the last N days.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (last line).")
@redis_url_option
@pass_ctx
def seed_cmd(ctx: Ctx, n: int, seed: int, days: float, as_json: bool, redis_url: str | None) -> None:
    """Write N synthetic agent actions (with rewards) and retrieval events into the store."""
    store = connect(ctx, redis_url)
    try:
        actions, events = seed_store(store, n, seed, days=days)
    finally:
        store.close()
    if as_json:
        click.echo(orjson.dumps({"actions": actions, "retrieval_events": events, "store": store.where}).decode())
    else:
        click.echo(f"seeded {actions} actions and {events} retrieval events over the last {days:g} days into {store.where}")
