"""`grpo store status|stop`, and the `--redis-url` option every store-using command shares.

Without a URL the commands use the embedded Redis under `<home>/store/`, started on first use and
left running for the next command; `grpo store stop` saves and stops it. `grpo store status` only
looks: it never starts the embedded server ("not running" is a status).
"""

from __future__ import annotations

from typing import Any, Callable

import click
import orjson

from grpo_tui.context import Ctx, pass_ctx
from miner.store import EmbeddedServer, Store, open_store

F = Callable[..., Any]


def redis_url_option(func: F) -> F:
    """`--redis-url URL` (env GRPO_REDIS_URL): a real Redis instead of the embedded one."""
    return click.option(
        "--redis-url",
        envvar="GRPO_REDIS_URL",
        metavar="URL",
        help="Redis to use instead of the embedded one: redis://[:password@]host:port/db, rediss:// (TLS) "
        "or unix:///path.sock?password=... (env GRPO_REDIS_URL).",
    )(func)


def connect(ctx: Ctx, redis_url: str | None) -> Store:
    """The store of this invocation: the URL's, or the embedded one under `<home>/store/`."""
    return open_store(ctx.home, redis_url or None)


@click.group("store")
def store_group() -> None:
    """The embedded Redis store under <home>/store/."""


@store_group.command("status")
@redis_url_option
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@pass_ctx
def status(ctx: Ctx, redis_url: str | None, as_json: bool) -> None:
    """Where the store is, whether it runs, and the length of its streams. Starts nothing: an embedded
    server that is not running is reported as "not running" (the next mining or seeding command starts it)."""
    if redis_url:
        store = connect(ctx, redis_url)
        state = "running"
    else:
        server = EmbeddedServer(ctx.home / "store")
        state, _sock, pid = server.probe()
        if state != "running":
            info = {"store": f"embedded under {server.dir}", "state": state, "pid": pid, "streams": None}
            click.echo(orjson.dumps(info).decode() if as_json else
                       f"store embedded under {server.dir}: {state}"
                       + (" (the next `grpo mine` or `grpo demo seed` starts it)" if state == "not running" else ""))
            return
        store = connect(ctx, None)  # it answers: this only connects
    with store.errors():
        lengths = {name: store.client.xlen(name) for name in ("rl_actions", "retrieval_events")}
    info = {"store": store.where, "state": state, "streams": lengths}
    click.echo(orjson.dumps(info).decode() if as_json else f"store {store.where}: {state}\n"
               + "\n".join(f"  {k}: {v} entries" for k, v in lengths.items()))


@store_group.command("stop")
@pass_ctx
def stop(ctx: Ctx) -> None:
    """Save the embedded store to disk and stop its server (the next command starts it again)."""
    pid = EmbeddedServer(ctx.home / "store").stop()
    click.echo(f"stopped the embedded Redis (pid {pid})" if pid else "the embedded Redis is not running")
