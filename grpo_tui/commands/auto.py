"""`grpo auto serve|start|status|stop|shutdown`: the scheduler host and its thin control clients.

`serve` and `start` take the auto config as `--config-file` (AutoConfig YAML, `train:` section
included) under per-key flags; `--train-mode` and `--train '{key: value, ...}'` (a YAML flow mapping
of `grpo train` keys) set the `train:` section from the command line, over the file's.
"""

from __future__ import annotations

import os
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import click
import orjson
from rich.console import Console
from rich.table import Table

from grpo_tui import observe
from grpo_tui.config import AutoConfig, load_config, parse_mapping
from grpo_tui.context import Ctx, pass_ctx
from grpo_tui.control import ControlClient, DaemonNotRunning, probe, socket_path
from grpo_tui.errors import GrpoError, UsageError

CONFIG_OPTIONS = [
    click.option("--config-file", type=click.Path(path_type=Path, dir_okay=False), help="Auto config YAML."),
    click.option("--period-sec", type=float, help="Seconds between cycle starts."),
    click.option("--hours", type=float, help="Mining window, hours."),
    click.option("--min-groups", type=int, help="Train a level only with at least this many new groups."),
    click.option("--mode", type=click.Choice(["single", "hierarchical"])),
    click.option("--levels", help="Comma-separated levels for hierarchical mode (global,signature,patch)."),
    click.option("--steps", type=int, help="Training steps per level per cycle."),
    click.option("--model", help="Policy: bow, tiny or a model path."),
    click.option("--device", help="auto, cpu, cuda, cuda:N."),
    click.option("--apply-policy/--no-apply-policy", default=None, help="Write policy nudges after training."),
    click.option("--workspace", type=click.Path(path_type=Path, file_okay=False), help="Where .dspy_policy.yaml goes."),
    click.option("--lr", type=float),
    click.option("--beta", type=float),
    click.option("--train-mode", type=click.Choice(["offline", "online"]),
                 help="Train each level offline on the mined candidates, or online on the mined prompts."),
    click.option("--train", "train_keys", metavar="YAML",
                 help="`grpo train` keys for each level as a YAML flow mapping, e.g. "
                      "'{reward_fn: [builtin:format], num_generations: 4}'; they win over --steps, --model, --lr, --beta."),
]


def config_options(fn: Any) -> Any:
    for option in reversed(CONFIG_OPTIONS):
        fn = option(fn)
    return fn


def build_config(config_file: Path | None, **flags: Any) -> AutoConfig:
    if flags.get("levels"):
        flags["levels"] = [part.strip() for part in flags["levels"].split(",") if part.strip()]
    train = parse_mapping(flags.pop("train_keys", None) or "", "--train")
    if flags.get("train_mode"):
        train["mode"] = flags["train_mode"]
    flags.pop("train_mode", None)
    if train:
        flags["train"] = train
    return load_config(AutoConfig, config_file=config_file, flags=flags)


def request_config(cfg: AutoConfig) -> dict[str, Any]:
    """The config to send: guard thresholds only when set explicitly (guard.json stays the source of truth)."""
    return cfg.model_dump(mode="json", exclude=None if "guard" in cfg.model_fields_set else {"guard"})


def _echo(reply: dict[str, Any], as_json: bool, text: str) -> None:
    click.echo(orjson.dumps(reply).decode() if as_json else text)


def _checked(reply: dict[str, Any]) -> dict[str, Any]:
    if not reply.get("ok"):
        raise GrpoError(reply.get("error", "the scheduler refused the request"))
    return reply


@click.group("auto")
def auto_group() -> None:
    """Auto mode: mine + train cycles from a scheduler host (daemon, foreground or the console)."""


@auto_group.command("serve")
@config_options
@click.option("--idle", is_flag=True, help="Host the scheduler without starting auto mode.")
@pass_ctx
def serve(ctx: Ctx, config_file: Path | None, idle: bool, **flags: Any) -> None:
    """Host the scheduler in the foreground (Ctrl-C to stop) and start auto mode."""
    from grpo_tui.daemon import Host

    cfg = build_config(config_file, **flags)
    host = Host(ctx.home)
    click.echo(f"scheduler serving {host.server.path} (pid {os.getpid()})", err=True)
    if not idle:
        _checked(host.handle({"cmd": "start", "config": request_config(cfg)}))
    try:
        host.serve_forever()
    finally:
        host.close()


@auto_group.command("start")
@config_options
@click.option("--detach", is_flag=True, help="Start a daemon for this home if none runs (survives logout).")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def start(ctx: Ctx, config_file: Path | None, detach: bool, as_json: bool, **flags: Any) -> None:
    """Start auto mode on this home's scheduler (with --detach, start the daemon first if needed)."""
    from grpo_tui.daemon import spawn_daemon

    cfg = build_config(config_file, **flags)
    spawned = None
    if not probe(socket_path(ctx.home)):
        if not detach:
            raise UsageError(f"no scheduler is running for {ctx.home}; add --detach to start a daemon, or run `grpo auto serve`")
        spawned = spawn_daemon(ctx.home)
    reply = _checked(ControlClient(ctx.home).request("start", config=request_config(cfg)))
    reply["daemon_pid"] = spawned
    _echo(reply, as_json, f"auto mode started (every {cfg.period_sec:g} s, {cfg.mode}, model {cfg.train_value('model')}, "
                          f"train {cfg.train.mode})"
          + (f"; daemon pid {spawned}" if spawned else ""))


@auto_group.command("run")
@click.argument("job", type=click.Choice(["cycle", "mine", "train"]))
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def run_job(ctx: Ctx, job: str, as_json: bool) -> None:
    """Run one job now on the scheduler: a whole cycle, mining only, or training on the latest datasets."""
    reply = _checked(ControlClient(ctx.home).request("run", job=job))
    _echo(reply, as_json, f"{job} started; follow it with `grpo auto status`")


@auto_group.command("stop")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def stop(ctx: Ctx, as_json: bool) -> None:
    """Stop auto mode: the running trainer checkpoints and exits; the daemon stays up."""
    reply = _checked(ControlClient(ctx.home, timeout=2.0).request("stop"))
    _echo(reply, as_json, reply.get("message", f"auto mode {reply['state']}"))


@auto_group.command("shutdown")
@click.option("--wait", type=float, default=60.0, show_default=True, help="Seconds to wait for the daemon to exit.")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def shutdown(ctx: Ctx, wait: float, as_json: bool) -> None:
    """Stop auto mode and end the scheduler host; its socket is removed."""
    reply = _checked(ControlClient(ctx.home).request("shutdown"))
    deadline = time.monotonic() + wait
    while socket_path(ctx.home).exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    if socket_path(ctx.home).exists():
        raise GrpoError(f"the scheduler did not exit within {wait:g} s; see {ctx.home / 'auto' / 'daemon.log'}")
    reply["state"] = "down"
    _echo(reply, as_json, "scheduler shut down")


def _when(ts: float | None) -> str:
    return "-" if ts is None else datetime.fromtimestamp(ts).strftime("%H:%M:%S")


def _quality(trained: dict) -> str:
    """' acc 0.81' for a level's held-out pairwise accuracy after the cycle (empty when not measured), then
    ' world 2' when it trained on several processes."""
    acc, world = trained.get("val_acc"), trained.get("world_size") or 1
    return ("" if acc is None else f" acc {acc:.2f}") + (f" world {world}" if world > 1 else "")


@auto_group.command("status")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def status(ctx: Ctx, as_json: bool) -> None:
    """Show auto mode: state, next cycle, guard and the last cycles."""
    try:
        reply = _checked(ControlClient(ctx.home).request("status"))
    except DaemonNotRunning as exc:
        raise GrpoError(str(exc)) from exc
    progress = observe.job_progress(reply, observe.metrics(ctx.home, limit=120), observe.runs(ctx.home))
    reply["running"] = progress  # the running job (which, elapsed, step x of y, time left), None when none
    if as_json:
        click.echo(orjson.dumps(reply).decode())
        return
    nxt = reply.get("next_cycle_in")
    click.echo(f"state: {reply['state']}   pid: {reply['pid']}   cycles run: {reply['cycles_run']}   "
               f"next cycle in: {'-' if nxt is None else f'{nxt:.0f} s'}   guard: {reply['guard']['reason']}")
    if progress is not None:  # `running: cycle: train global · step 120/400 · for 1m05s · ~2m30s left`
        click.echo(f"running: {observe.job_line(progress)}")
    if not reply["cycles"]:
        click.echo("last cycles: none finished yet")
        return
    table = Table(title="last cycles", title_justify="left")
    for col in ("cycle", "start", "end", "outcome", "groups", "steps", "reason"):
        table.add_column(col)
    for rec in reply["cycles"]:
        groups = ",".join(f"{k}={v}" for k, v in (rec.get("groups") or {}).items())
        steps = ",".join(f"{k} {v.get('from_step')}→{v.get('to_step')}{_quality(v)}" for k, v in (rec.get("trained") or {}).items())
        table.add_row(str(rec.get("cycle")), _when(rec.get("start")), _when(rec.get("end")), rec.get("outcome", "?"),
                      groups, steps, rec.get("reason", ""))
    Console().print(table)
