"""`grpo train-judge`: learn a frozen judge (reward model) from the logged candidates of group JSONL.

The judge is a pairwise (Bradley-Terry) scorer of (prompt, completion) pairs trained by
`policy.judge_train.train_judge`: `--model bow` (hashed bag of words, seconds on a CPU), `tiny` (a small
random Llama with a one-score head) or an HF checkpoint DIR (fine-tuned with a one-score head). Groups
are split by prompt into train and held-out (`--val-fraction`); the summary reports pairwise accuracy
on both. The judge folder (default `<home>/judge`) is written atomically and is what `--judge DIR`
and `policy.judge.load_judge` read. `--json` prints the summary as one JSON object, the last line.
"""

from __future__ import annotations

from pathlib import Path

import click
import orjson

from grpo_tui.context import Ctx, pass_ctx
from grpo_tui.errors import UsageError


@click.command("train-judge")
@click.option("--dataset", type=click.Path(path_type=Path, dir_okay=False), required=True, help="Group JSONL with logged candidates and rewards.")
@click.option("--out", type=click.Path(path_type=Path, file_okay=False), help="Judge folder to write [<home>/judge].")
@click.option("--model", default="bow", show_default=True, help="'bow', 'tiny' or an HF checkpoint folder to fine-tune as a one-score judge.")
@click.option("--steps", type=click.IntRange(min=0), help="Optimizer steps [bow 200, tiny 100, HF dir 100].")
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), help="Learning rate [bow 0.05, tiny 1e-3, HF dir 2e-5].")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the train/held-out split, the new score head and the group order.")
@click.option("--val-fraction", type=click.FloatRange(min=0, max=1, max_open=True), default=0.2, show_default=True, help="Share of prompts held out.")
@click.option("--groups-per-step", type=click.IntRange(min=1), default=8, show_default=True, help="Groups per step (HF judges; bow trains full-batch).")
@click.option("--max-length", type=click.IntRange(min=8), default=512, show_default=True, help="Tokens kept per (prompt, completion) (HF judges).")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--skip-bad-lines", is_flag=True, help="Skip and count invalid dataset lines instead of failing on the first.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as one JSON object (last line).")
@pass_ctx
def train_judge_cmd(
    ctx: Ctx, dataset: Path, out: Path | None, model: str, steps: int | None, lr: float | None, seed: int,
    val_fraction: float, groups_per_step: int, max_length: int, device: str, skip_bad_lines: bool, as_json: bool,
) -> None:  # fmt: skip
    """Train a judge that scores (prompt, completion) pairs, for online GRPO (--judge DIR)."""
    from policy.judge_train import train_judge
    from policy.metrics import clean

    if model not in ("bow", "tiny") and not Path(model).expanduser().is_dir():
        raise UsageError(f"--model {model!r}: pass bow, tiny or an existing HF checkpoint folder")
    out = out or ctx.home / "judge"
    summary = train_judge(
        dataset, out, model=model, steps=steps, lr=lr, seed=seed, val_fraction=val_fraction, device=device,
        groups_per_step=groups_per_step, max_length=max_length, skip_bad_lines=skip_bad_lines,
    )  # fmt: skip
    if as_json:
        click.echo(orjson.dumps(clean(summary)).decode())
        return
    val = summary["val_pairwise_acc"]
    held = "no held-out pairs" if val is None else f"held-out pairwise accuracy {val:.4f} over {summary['val_pairs']} pairs ({summary['val_groups']} groups)"
    click.echo(f"judge ({model}) written to {summary['out']}: {held}; train {summary['train_pairwise_acc']:.4f} over {summary['train_pairs']} pairs")
