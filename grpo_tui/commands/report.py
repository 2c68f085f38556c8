"""`grpo report RUN_DIR [RUN_DIR ...] [--last N] [--json]`: runs' metrics side by side.

Each run's metrics.jsonl is summarised by `policy.report` (key metrics: the mean over the last N
logged values with a seeded bootstrap 95% interval, the first-vs-last change, the number of steps) and
shown as one rich table, a column per run. With --json the table goes to stderr and one JSON object
`{"runs": [...], "last", "resamples", "seed", "ci"}` is the last stdout line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
import orjson

from grpo_tui.context import Ctx, pass_ctx
from grpo_tui.errors import GrpoError


def escape(text: str) -> str:
    from rich.markup import escape as rich_escape

    return rich_escape(text)


def _cell(m: dict[str, Any] | None) -> str:
    if m is None:
        return "-"
    return escape(f"{m['mean']:.4g} [{m['lo']:.4g}, {m['hi']:.4g}]\nΔ {m['change']:+.3g} (n={m['n']})")


def render(runs: list[dict[str, Any]], stderr: bool) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=escape("last-N mean [bootstrap 95% CI]; Δ = last-N mean - first-N mean"), show_lines=True)
    table.add_column("metric")
    for r in runs:
        table.add_column(escape(r["run"]), overflow="fold")
    table.add_row("steps", *(f"{r['steps']} (last {r['last_step']}, N={r['window']})" for r in runs))
    names = list(dict.fromkeys(k for r in runs for k in r["metrics"]))
    for name in names:
        table.add_row(name, *(_cell(r["metrics"].get(name)) for r in runs))
    Console(stderr=stderr, width=max(100, 40 + 34 * len(runs))).print(table)


@click.command("report")
@click.argument("runs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--last", "last", type=click.IntRange(min=1), default=None, help="Steps (logged values) to average at the end [default: 20% of the run, at least 1].")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object as the last line (the table goes to stderr).")
@pass_ctx
def report_cmd(ctx: Ctx, runs: tuple[Path, ...], last: int | None, as_json: bool) -> None:
    """Summarise runs' metrics.jsonl side by side: key metrics at the end of each run, with 95% intervals."""
    from policy.metrics import clean
    from policy.report import CI, RESAMPLES, SEED, metrics_path, summarise_run

    summaries = []
    for run in runs:
        path = metrics_path(run)
        if not path.is_file():
            raise GrpoError(f"{run}: no metrics.jsonl here (pass a run dir, the --out of `grpo train`, or its metrics.jsonl)")
        summary = summarise_run(run, last)
        if not summary["steps"]:
            raise GrpoError(f"{path}: no metrics records")
        summaries.append(summary)
    render(summaries, stderr=as_json)
    if as_json:
        click.echo(orjson.dumps(clean({"runs": summaries, "last": last, "resamples": RESAMPLES, "seed": SEED, "ci": CI})).decode())
