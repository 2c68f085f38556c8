"""`grpo mine`: stream window -> grouped preference dataset(s), via `miner.mine.mine`.

Options are a `MineConfig` (defaults < `--config-file` < flags). Without `--out` / `--out-dir` the
datasets go to `<home>/datasets/`. A rich progress bar shows long reads on stderr (only on a TTY,
never with `--json`); `--json` prints the summary object as the last line.

`--since-cursor` uses the named cursor `--cursor` (default `manual`; auto mode's cycles pass `auto`),
so manual runs and auto mode never take each other's entries; concurrent runs on one home are
serialised by the cursor lock and mine each entry once (`miner.cursor`).
"""

from __future__ import annotations

import sys
from pathlib import Path

import click
import orjson

from grpo_tui.commands.store import connect, redis_url_option
from grpo_tui.config import MineConfig, load_config
from grpo_tui.context import Ctx, pass_ctx
from grpo_tui.errors import UsageError
from miner.mine import MineParams, Page, mine


class _Progress:
    """A transient rich bar, shown once a read spans more than one page."""

    def __init__(self, page_size: int):
        self.page_size = page_size
        self.progress = None
        self.tasks: dict[str, int] = {}

    def __call__(self, page: Page) -> None:
        if self.progress is None:
            if page.entries < self.page_size:
                return
            from rich.console import Console
            from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

            self.progress = Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[n]} entries"),
                                     TimeElapsedColumn(), console=Console(stderr=True), transient=True)
            self.progress.start()
        if page.stream not in self.tasks:
            self.tasks[page.stream] = self.progress.add_task(f"reading {page.stream}", total=1000, n=0)
        span = max(1, page.newest_ms - page.start_ms)
        done = 1000 * (page.newest_ms - page.oldest_ms) / span
        self.progress.update(self.tasks[page.stream], completed=done, n=page.entries)

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()


@click.command("mine")
@click.option("--hours", type=float, help="Window: the last N hours of stream entries [48].")
@click.option("--out", type=click.Path(path_type=Path, dir_okay=False), help="Output JSONL (global level) [<home>/datasets/global.jsonl].")
@click.option("--hierarchical", is_flag=True, default=None, help="Write global, signature and patch levels into --out-dir.")
@click.option("--out-dir", type=click.Path(path_type=Path, file_okay=False), help="Folder for global.jsonl, signature.jsonl, patch.jsonl [<home>/datasets].")
@click.option("--min-k", type=int, help="Keep groups with at least K distinct candidates [2].")
@click.option("--max-k", type=int, help="Keep at most K candidates per group: extremes plus middles [8].")
@click.option("--since-cursor", is_flag=True, default=None, help="Only entries after the named cursor; advance it once the files are written.")
@click.option("--cursor", "cursor_name", default="manual", show_default=True,
              help="Cursor name for --since-cursor (auto mode uses `auto`, <home>/cursor.json; others <home>/cursor.NAME.json).")
@click.option("--config-file", type=click.Path(path_type=Path, dir_okay=False), help="MineConfig YAML merged over the defaults.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as one JSON object (last line).")
@redis_url_option
@pass_ctx
def mine_cmd(ctx: Ctx, hours: float | None, out: Path | None, hierarchical: bool | None, out_dir: Path | None,
             min_k: int | None, max_k: int | None, since_cursor: bool | None, cursor_name: str, config_file: Path | None,
             as_json: bool, redis_url: str | None) -> None:
    """Mine agent actions of the last --hours into GRPO groups (prompt, candidates with rewards, meta)."""
    flags = {"hours": hours, "out": out, "hierarchical": hierarchical, "out_dir": out_dir, "min_k": min_k,
             "max_k": max_k, "since_cursor": since_cursor}
    cfg = load_config(MineConfig, config_file=config_file, flags=flags)
    if cfg.hierarchical and cfg.out is not None and cfg.out_dir is None:
        raise UsageError("--hierarchical writes one file per level: use --out-dir DIR instead of --out")
    try:
        params = MineParams.from_config(cfg, cursor=cursor_name)
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    default_dir = ctx.home / "datasets"
    out_file = cfg.out if cfg.out is not None else default_dir / "global.jsonl"
    store = connect(ctx, redis_url)
    progress = _Progress(params.page_size) if not as_json and sys.stderr.isatty() else None
    try:
        result = mine(store, params, ctx.home, out=out_file, out_dir=cfg.out_dir or default_dir, on_page=progress)
    finally:
        if progress is not None:
            progress.close()
        store.close()
    summary = result.summary()
    if as_json:
        click.echo(orjson.dumps(summary).decode())
        return
    skipped = {k: v for k, v in result.skipped.items() if v}
    click.echo(f"read {result.entries_read} entries from {params.actions_stream} ({store.where}) in {result.seconds:.2f}s: "
               f"{result.actions_mined} mined, {sum(skipped.values())} skipped"
               + (" (" + ", ".join(f"{k} {v}" for k, v in skipped.items()) + ")" if skipped else ""))
    if result.retrieval_read:
        click.echo(f"joined {result.retrieval_read} retrieval events from {params.retrieval_stream}")
    for level, path in result.outputs.items():
        click.echo(f"{level}: {len(result.groups[level])} groups -> {path}")
    if params.since_cursor:
        click.echo(f"cursor: {result.cursor_before or '(none)'} -> {result.cursor_after or '(none)'} (cursor {params.cursor!r})")
