"""The `grpo` command group, and the one place where errors become exit codes.

Exit codes: 0 ok, 1 error, 2 usage (bad flags or config), 3 guard refused, 130 interrupted.
Errors print one line (what failed, what to do); a traceback only with `-v`.
"""

from __future__ import annotations

import logging
import os
import sys
import traceback
from pathlib import Path

import click

from grpo_tui import __version__, launch
from grpo_tui.commands.auto import auto_group
from grpo_tui.commands.bench import bench_command
from grpo_tui.commands.apply_policy import apply_policy_cmd
from grpo_tui.commands.config import config_group
from grpo_tui.commands.demo import demo_group
from grpo_tui.commands.export import export_cmd
from grpo_tui.commands.guard import guard_cmd
from grpo_tui.commands.log_action import log_action_cmd
from grpo_tui.commands.mine import mine_cmd
from grpo_tui.commands.report import report_cmd
from grpo_tui.commands.store import store_group
from grpo_tui.commands.train import eval_cmd, train_cmd
from grpo_tui.commands.train_judge import train_judge_cmd
from grpo_tui.context import Ctx, secure_home
from grpo_tui.errors import GrpoError, GuardRefused, UsageError
from grpo_tui.lifeline import die_with_parent

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_GUARD, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
OUR_LOGGERS = ("grpo_tui", "kernels", "miner", "policy", "bench")
HOMELESS_COMMANDS = frozenset({"bench", "config"})  # never touch the home: no need to create or check it


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever sys.stderr is at emit time (it may be replaced after set-up, e.g. by pytest)."""

    @property  # type: ignore[override]
    def stream(self):  # noqa: ANN201
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:  # noqa: ANN001
        pass


def _setup_logging(verbose: int) -> None:
    handler = _StderrHandler()
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    for name in OUR_LOGGERS:
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.setLevel(logging.DEBUG if verbose else logging.INFO)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--home",
    type=click.Path(path_type=Path, file_okay=False),
    envvar="GRPO_HOME",
    default=Path(".grpo"),
    show_default=True,
    help="Workspace folder for the store, datasets, checkpoints and state (env GRPO_HOME).",
)
@click.option("-v", "--verbose", count=True, help="More logging, and tracebacks on errors.")
@click.version_option(__version__, "--version", prog_name="grpo")
@click.pass_context
def cli(ctx: click.Context, home: Path, verbose: int) -> None:
    """grpo: mine agent action streams, train with GRPO, run auto cycles."""
    _setup_logging(verbose)
    home = home.expanduser().absolute()
    if not ctx.resilient_parsing and ctx.invoked_subcommand not in HOMELESS_COMMANDS:
        secure_home(home)  # created 0700; refused when another user owns it or group/others can write
    ctx.obj = Ctx(home=home, verbose=verbose)


cli.add_command(auto_group)
cli.add_command(config_group)
cli.add_command(bench_command)
cli.add_command(guard_cmd)
cli.add_command(apply_policy_cmd)
cli.add_command(demo_group)
cli.add_command(export_cmd)
cli.add_command(log_action_cmd)
cli.add_command(mine_cmd)
cli.add_command(store_group)
cli.add_command(train_cmd)
cli.add_command(eval_cmd)
cli.add_command(report_cmd)
cli.add_command(train_judge_cmd)


PACKAGE_ERRORS = (("kernels.errors", "KernelError"), ("miner.errors", "MinerError"), ("policy.errors", "PolicyError"))


def known_errors() -> tuple[type[BaseException], ...]:
    """Our typed errors. A package never imported cannot have raised, so `grpo` need not import torch."""
    found: list[type[BaseException]] = [GrpoError]
    found += [getattr(sys.modules[mod], name) for mod, name in PACKAGE_ERRORS if mod in sys.modules]
    return tuple(found)


def exit_code(exc: BaseException) -> int:
    """The exit code for an exception raised by a command."""
    if isinstance(exc, (KeyboardInterrupt, click.Abort)):
        return EXIT_INTERRUPTED
    if isinstance(exc, GuardRefused):
        return EXIT_GUARD
    if isinstance(exc, UsageError):
        return EXIT_USAGE
    return EXIT_ERROR


def main(argv: list[str] | None = None) -> int:
    """Console-script entry point: run the group, map exceptions to exit codes."""
    die_with_parent()  # a child of a scheduler host ends with it (GRPO_DIE_WITH_PARENT)
    launch.ARGV = list(sys.argv[1:] if argv is None else argv)  # `grpo train --nproc N` runs them again under torchrun
    verbose = any(a in ("-v", "--verbose") or (a.startswith("-v") and set(a[1:]) == {"v"}) for a in (argv or sys.argv[1:]))
    try:
        rv = cli.main(args=argv, prog_name="grpo", standalone_mode=False)
        return rv if isinstance(rv, int) else EXIT_OK
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.ClickException as exc:  # click's own usage errors exit 2
        exc.show()
        return exc.exit_code
    except (KeyboardInterrupt, click.Abort):
        click.echo("interrupted", err=True)
        return EXIT_INTERRUPTED
    except Exception as exc:  # ours get one line; an unexpected failure too, the traceback with -v
        if verbose:
            traceback.print_exc()
        who = f"rank {os.environ['RANK']}: " if int(os.environ.get("WORLD_SIZE", "1")) > 1 else ""  # under torchrun
        if isinstance(exc, known_errors()):
            click.echo(f"error: {who}{exc}", err=True)
            return exit_code(exc)
        hint = "" if verbose else " (run with -v for the traceback)"
        click.echo(f"error: {who}unexpected {type(exc).__name__}: {exc}{hint}", err=True)
        return EXIT_ERROR


def run() -> None:
    """The `grpo` console script (also what torchrun runs in each worker: `python -m grpo_tui.cli`)."""
    code = main()
    if launch.in_worker():
        launch.exit_worker(code)
    sys.exit(code)


if __name__ == "__main__":
    run()
