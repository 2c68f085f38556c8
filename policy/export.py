"""Export a training checkpoint as a standard HF model dir (or a PEFT adapter dir) for serving.

`export_checkpoint(checkpoint, out)` takes a `checkpoints/step_NNNNNN` dir, or a run dir (its newest
intact checkpoint, `checkpoint.resolve`), loads it with the project's own loader
(`backends.policy_for_checkpoint` + `load_weights`, on the CPU, in fp32; every file's sha256 checked)
and writes one of:

- `full`: a full fine-tune's weights: config.json, model*.safetensors, generation_config.json and the
  tokenizer files (its chat template included when it has one): what
  `AutoModelForCausalLM.from_pretrained(out)` loads;
- `merged` (`merge_lora=True`, LoRA checkpoints): the adapters merged into the base (peft
  `merge_and_unload`), written as the same full model dir;
- `adapter` (`adapter_only=True`, LoRA checkpoints): adapter_config.json + adapter_model.safetensors
  (`base_model_name_or_path` = the base the run trained on) and the tokenizer: what
  `PeftModel.from_pretrained(base, out)` and vLLM's LoRA loading read.

A LoRA checkpoint needs one of `merge_lora` / `adapter_only` (there is no full model without a
merge); `merge_lora` on a full checkpoint changes nothing (so the auto hook can always pass it);
`adapter_only` of a full checkpoint and any export of a bow checkpoint (a hashed bag-of-words
scorer: there is no language model to serve) raise ExportError. `dtype` (bf16, fp16, fp32; default
fp32 = the trained weights exactly) is applied after the merge. Beside the weights: `README.md`, a
model card (base model, dataset fingerprints, step, metrics at save, config; from the checkpoint's
meta.json and the run's manifest.json) and `SHA256SUMS` (`<hex>  <relative path>` for every other
file, the format `sha256sum -c SHA256SUMS` checks). Everything is written into `<out>.tmp`, fsynced,
then renamed to `out`; an existing non-empty `out` is refused unless `force` (then replaced).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

import torch

from policy.atomic import sha256_file
from policy.errors import ExportError

log = logging.getLogger("policy")
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
SUMS, CARD = "SHA256SUMS", "README.md"


def export_checkpoint(
    checkpoint: Path, out: Path, *, merge_lora: bool = False, adapter_only: bool = False, dtype: str = "fp32",
    force: bool = False,
) -> dict[str, Any]:  # fmt: skip
    """Write the checkpoint at (or newest under) `checkpoint` into `out`; returns a summary dict."""
    from policy.backends import policy_for_checkpoint
    from policy.checkpoint import resolve

    if dtype not in DTYPES:
        raise ExportError(f"dtype {dtype!r}: choose one of {', '.join(DTYPES)}")
    if merge_lora and adapter_only:
        raise ExportError("merge_lora and adapter_only exclude each other: a merged model has no separate adapter")
    out = Path(out).absolute()
    _check_out(out, force)
    ckpt, meta = resolve(Path(checkpoint))
    desc = meta.get("policy", {})
    if desc.get("kind") == "bow":
        raise ExportError(f"{ckpt}: a bow checkpoint (hashed bag-of-words scorer) has no language model to export; "
                          "train with --model tiny or an HF model dir")
    lora = int(desc.get("lora_r", 0)) > 0
    if adapter_only and not lora:
        raise ExportError(f"{ckpt}: a full fine-tune has no adapter; export it without --adapter-only")
    if lora and not (merge_lora or adapter_only):
        raise ExportError(f"{ckpt}: a LoRA checkpoint: pass --merge-lora (a full model) or --adapter-only (a PEFT adapter dir)")
    kind = "adapter" if adapter_only else "merged" if lora else "full"

    policy = policy_for_checkpoint(meta, device="cpu")
    policy.load_weights(ckpt)
    net = policy.net.merge_and_unload() if kind == "merged" else policy.net  # merged in fp32, then cast
    net = net.to(DTYPES[dtype]).eval()

    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        net.save_pretrained(str(tmp), safe_serialization=True)
        policy.tokenizer.save_pretrained(str(tmp))
        manifest = _read_json(ckpt.parent.parent / "manifest.json")
        (tmp / CARD).write_text(model_card(meta, manifest, kind=kind, dtype=dtype, checkpoint=ckpt.absolute()), encoding="utf-8")
        files = write_sums(tmp)
        _fsync_tree(tmp)
        _swap_in(tmp, out, force)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("exported %s (%s, %s) to %s", ckpt, kind, dtype, out)
    return {"status": "ok", "out": str(out), "kind": kind, "dtype": dtype, "checkpoint": str(ckpt.absolute()),
            "step": int(meta.get("step", 0)), "base": desc.get("base"), "files": files}


def write_sums(directory: Path) -> int:
    """Write `SHA256SUMS` for every file under `directory` but itself; returns how many it lists."""
    directory = Path(directory)
    paths = sorted(p for p in directory.rglob("*") if p.is_file() and p.relative_to(directory).as_posix() != SUMS)
    lines = [f"{sha256_file(p)}  {p.relative_to(directory).as_posix()}\n" for p in paths]
    (directory / SUMS).write_text("".join(lines), encoding="utf-8")
    return len(lines)


def model_card(meta: dict[str, Any], manifest: dict[str, Any], *, kind: str, dtype: str, checkpoint: Path) -> str:
    """The README.md of an export: base model, dataset fingerprints, step, metrics at save, config."""
    desc = meta.get("policy", {})
    base = desc.get("base", "?")
    fingerprints = manifest.get("datasets") or {"dataset": meta.get("dataset_fingerprint")}
    library = "peft" if kind == "adapter" else "transformers"
    what = {"full": "a full fine-tune", "merged": f"LoRA (r={desc.get('lora_r')}) merged into the base",
            "adapter": f"a LoRA adapter (r={desc.get('lora_r')}, alpha={desc.get('lora_alpha')}) for the base"}[kind]
    metrics = {k: v for k, v in (meta.get("metrics") or {}).items()}
    config = meta.get("config") or manifest.get("config") or {}
    return "\n".join([
        "---", f"base_model: {json.dumps(str(base))}", f"library_name: {library}", "tags: [grpo, grpo-tui]", "---", "",
        f"# GRPO policy, step {meta.get('step')}", "",
        f"Trained with grpo-tui (GRPO); {what}. Weights in {dtype}.", "",
        f"- base model: `{base}`", f"- step: {meta.get('step')}", f"- exported from: `{checkpoint}`",
        f"- package versions: {json.dumps(manifest.get('packages', {}), sort_keys=True)}",
        f"- git commit: {manifest.get('git_commit')}", "",
        "## Dataset fingerprints (sha256)", "", "```json", json.dumps(fingerprints, indent=1, sort_keys=True, default=str), "```", "",
        "## Metrics at save", "", "```json", json.dumps(metrics, indent=1, sort_keys=True, default=str), "```", "",
        "## Training config", "", "```json", json.dumps(config, indent=1, sort_keys=True, default=str), "```", "",
        f"Check the files with `sha256sum -c {SUMS}` in this folder.", "",
    ])  # fmt: skip


def _check_out(out: Path, force: bool) -> None:
    if out.exists() and not out.is_dir():
        raise ExportError(f"{out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise ExportError(f"{out}: exists and is not empty; pass --force to replace it")


def _swap_in(tmp: Path, out: Path, force: bool) -> None:
    """Rename `tmp` to `out`; an existing `out` (checked by _check_out) is moved aside first, then deleted."""
    old = out.with_name(out.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if out.is_dir():
        if any(out.iterdir()):
            _check_out(out, force)  # it may have filled up while we exported
            os.rename(out, old)
        else:
            out.rmdir()
    os.rename(tmp, out)
    shutil.rmtree(old, ignore_errors=True)


def _fsync_tree(directory: Path) -> None:
    for path in sorted(directory.rglob("*")):
        if path.is_file():
            with open(path, "rb") as handle:
                os.fsync(handle.fileno())


def _read_json(path: Path) -> dict[str, Any]:
    if not Path(path).exists():
        log.warning("no %s beside the checkpoint; the model card shows the checkpoint's meta.json only", path)
        return {}
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
