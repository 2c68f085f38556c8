"""`grpo export`: a training checkpoint as a standard HF model dir (or a PEFT adapter dir) for serving.

`--checkpoint` is a `checkpoints/step_NNNNNN` dir or a run dir (its newest intact checkpoint). A full
fine-tune exports as it is; a LoRA checkpoint needs `--merge-lora` (adapters merged into the base, a
full model) or `--adapter-only` (adapter_config.json + adapter_model.safetensors for PEFT / vLLM LoRA).
A bow checkpoint is refused (no language model to export). The out dir gets a model card README.md
and SHA256SUMS (`sha256sum -c SHA256SUMS`); it is written to `<out>.tmp` and renamed, and an existing
non-empty one is refused unless `--force`. See `policy.export`. `--json` prints the summary as one
JSON object, the last line.
"""

from __future__ import annotations

from pathlib import Path

import click
import orjson

from grpo_tui.errors import UsageError


@click.command("export")
@click.option("--checkpoint", type=click.Path(path_type=Path, file_okay=False), required=True,
              help="A checkpoints/step_NNNNNN dir, or a run dir (its newest intact checkpoint).")
@click.option("--out", type=click.Path(path_type=Path, file_okay=False), required=True, help="Folder to write.")
@click.option("--merge-lora", is_flag=True, help="LoRA checkpoints: merge the adapters into the base and write a full model.")
@click.option("--adapter-only", is_flag=True, help="LoRA checkpoints: write the PEFT adapter dir only (base_model_name_or_path = the base).")
@click.option("--dtype", type=click.Choice(["bf16", "fp16", "fp32"]), default="fp32", show_default=True, help="Weights dtype of the export.")
@click.option("--force", is_flag=True, help="Replace an existing non-empty --out.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as one JSON object (last line).")
def export_cmd(checkpoint: Path, out: Path, merge_lora: bool, adapter_only: bool, dtype: str, force: bool, as_json: bool) -> None:
    """Export a checkpoint as an HF model dir (or PEFT adapter) with a model card and SHA256SUMS."""
    if merge_lora and adapter_only:
        raise UsageError("--merge-lora and --adapter-only exclude each other; pass one")
    from policy.export import export_checkpoint

    summary = export_checkpoint(checkpoint, out, merge_lora=merge_lora, adapter_only=adapter_only, dtype=dtype, force=force)
    if as_json:
        click.echo(orjson.dumps(summary).decode())
        return
    click.echo(f"exported step {summary['step']} ({summary['kind']}, {dtype}) to {summary['out']}: {summary['files']} files, "
               f"check with `sha256sum -c SHA256SUMS` there")
