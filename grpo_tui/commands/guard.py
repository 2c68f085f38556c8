"""`grpo guard`: show (and with flags, persist) the capacity guard; exit 3 when it fails."""

from __future__ import annotations

import click
import orjson
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table

from grpo_tui import guard
from grpo_tui.config import GuardConfig, describe
from grpo_tui.context import Ctx, pass_ctx
from grpo_tui.errors import ConfigError, GuardRefused

SYMBOL = {"ok": "✓ ok", "FAIL": "✗ FAIL", "off": "- off"}


def render(report: guard.GuardReport) -> Table:
    table = Table(title="capacity guard", title_justify="left")
    for col in ("check", "value", "threshold", "verdict", "reason"):
        table.add_column(col)
    for c in report.checks:
        value = "n/a" if c.value is None else f"{c.value:.1f} {c.unit}"
        threshold = "off" if c.threshold == 0 else f"{c.threshold:g} {c.unit}"
        table.add_row(c.name, value, threshold, SYMBOL[c.verdict], c.reason)
    return table


@click.command("guard")
@click.option("--min-free-gb", type=float, help="Free disk on the home filesystem, GB (0 = off). Persisted.")
@click.option("--min-ram-gb", type=float, help="Available RAM, GB (0 = off). Persisted.")
@click.option("--min-vram-mb", type=float, help="Free VRAM on the emptiest GPU, MB (0 = off). Persisted.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object as the last line.")
@pass_ctx
def guard_cmd(ctx: Ctx, min_free_gb: float | None, min_ram_gb: float | None, min_vram_mb: float | None,
              as_json: bool) -> None:
    """Check free disk, RAM and VRAM against the thresholds; exit 3 when a check fails."""
    flags = {"min_free_gb": min_free_gb, "min_ram_gb": min_ram_gb, "min_vram_mb": min_vram_mb}
    thresholds = guard.load_thresholds(ctx.home)
    changed = {k: v for k, v in flags.items() if v is not None}
    if changed:
        try:
            thresholds = GuardConfig.model_validate(thresholds.model_dump() | changed)
        except ValidationError as exc:  # e.g. --min-free-gb -1 or inf: exit 2, nothing saved
            field = str(exc.errors()[0]["loc"][0])
            raise ConfigError(f"command line: {describe(GuardConfig, exc)}; give --{field.replace('_', '-')} "
                              "a finite number >= 0 (0 turns the check off)") from exc
        guard.save_thresholds(ctx.home, thresholds)
    report = guard.check(ctx.home, thresholds)
    if as_json:
        click.echo(orjson.dumps(report.to_dict()).decode())
    else:
        Console(no_color=None).print(render(report))
    if not report.ok:
        raise GuardRefused(f"capacity guard fails: {report.reason}")
