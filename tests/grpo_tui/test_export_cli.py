"""`grpo export` end to end on the tiny LM: a full fine-tune, LoRA merged and LoRA as an adapter dir
each load with the standard loaders (AutoModelForCausalLM / PeftModel) and give the trained policy's
logits (as the project's own checkpoint loader gives them); SHA256SUMS passes `sha256sum -c` and fails
once a file is corrupted; refusals (bow, LoRA without a mode, existing out dir, exclusive flags)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
import torch

from testkit import word_groups  # tests/testkit.py

pytestmark = pytest.mark.timeout(300)
TEMPLATE = "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}{% if add_generation_prompt %}assistant: {% endif %}"


def grpo(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([sys.executable, "-m", "grpo_tui.cli", *args], capture_output=True, text=True, timeout=240)
    if check and proc.returncode != 0:
        raise AssertionError(f"grpo {' '.join(args)} -> {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


def summary(proc: subprocess.CompletedProcess[str]) -> dict:
    return orjson.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """Runs of 3 steps: the tiny LM (whose tokenizer has a chat template) full and with LoRA r=4, and bow."""
    from policy.tiny import build_tiny
    from transformers import AutoTokenizer

    root = Path(tmp_path_factory.mktemp("export"))
    data = word_groups(root / "groups.jsonl", 12)
    out = {}
    for name, extra in {"full": [], "lora": ["--lora-r", "4"], "bow": []}.items():
        run = root / name
        if name != "bow":
            base = build_tiny(run / "models" / "tiny", seed=0)  # where --model tiny finds it
            tok = AutoTokenizer.from_pretrained(base)
            tok.chat_template = TEMPLATE
            tok.save_pretrained(base)
        model = "bow" if name == "bow" else "tiny"
        grpo("--home", str(root / "h"), "train", "--dataset", str(data), "--model", model, "--steps", "3", "--lr", "1e-2",
             "--device", "cpu", "--out", str(run), "--json", *extra)
        out[name] = run
    return out


def trained_logits(run: Path, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits of the newest checkpoint loaded by the project's loader, logits of its base model)."""
    from policy.backends import policy_for_checkpoint
    from policy.checkpoint import resolve
    from transformers import AutoModelForCausalLM

    ckpt, meta = resolve(run)
    policy = policy_for_checkpoint(meta, device="cpu")
    policy.load_weights(ckpt)
    base = AutoModelForCausalLM.from_pretrained(meta["policy"]["base"], dtype=torch.float32).eval()
    with torch.no_grad():
        return policy.net.eval()(input_ids=ids).logits, base(input_ids=ids).logits  # (1, T, V)


def input_ids(path: Path) -> torch.Tensor:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path)("task 3: we need pytest; use pytest here", return_tensors="pt")["input_ids"]


def test_full_export_loads_with_from_pretrained_and_gives_the_same_logits(runs, tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = tmp_path / "full"
    result = summary(grpo("export", "--checkpoint", str(runs["full"]), "--out", str(out), "--json"))
    assert result["kind"] == "full" and result["step"] == 3 and Path(result["checkpoint"]).name == "step_000003"
    assert {"config.json", "model.safetensors", "generation_config.json", "tokenizer_config.json", "README.md", "SHA256SUMS"} <= {
        p.name for p in out.iterdir()}
    assert not out.with_name("full.tmp").exists()
    ids = input_ids(out)
    want, base = trained_logits(runs["full"], ids)
    with torch.no_grad():
        got = AutoModelForCausalLM.from_pretrained(out).eval()(input_ids=ids).logits
    assert torch.equal(got, want)  # the same fp32 weights through the same forward: exactly equal
    assert not torch.equal(want, base)  # and training changed them
    assert AutoTokenizer.from_pretrained(out).chat_template == TEMPLATE
    card = (out / "README.md").read_text()
    meta = json.loads((runs["full"] / "checkpoints" / "step_000003" / "meta.json").read_text())
    assert meta["dataset_fingerprint"] in card and "step 3" in card and str(meta["policy"]["base"]) in card


def test_lora_merged_and_adapter_only_exports_match_the_trained_policy(runs, tmp_path: Path) -> None:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    merged, adapter = tmp_path / "merged", tmp_path / "adapter"
    assert summary(grpo("export", "--checkpoint", str(runs["lora"]), "--out", str(merged), "--merge-lora", "--json"))["kind"] == "merged"
    assert summary(grpo("export", "--checkpoint", str(runs["lora"]), "--out", str(adapter), "--adapter-only", "--json"))["kind"] == "adapter"
    ids = input_ids(merged)
    want, base = trained_logits(runs["lora"], ids)
    scale = want.abs().max()
    # A merged layer computes (W + s*B@A) x where the policy computes W x + s*B(A x): each form is a fp32
    # reduction over K <= 128 terms (hidden 64, intermediate 128), off by about sqrt(K) * eps = 11 * 6e-8,
    # i.e. 7e-7 relative per matmul, and ~15 matmuls (2 layers x 7 projections + the head) lie between
    # input and logits; summed at worst that is 1e-5 relative to the largest logit, so 1e-5 holds
    # (errors of independent roundings add in quadrature: typically ~3e-6).
    tol = 1e-5 * scale
    with torch.no_grad():
        got = AutoModelForCausalLM.from_pretrained(merged).eval()(input_ids=ids).logits
    assert (got - want).abs().max() <= tol
    assert (want - base).abs().max() > 100 * tol  # the adapters do change the model: the check has teeth

    config = json.loads((adapter / "adapter_config.json").read_text())
    meta = json.loads((runs["lora"] / "checkpoints" / "step_000003" / "meta.json").read_text())
    assert config["base_model_name_or_path"] == meta["policy"]["base"] and config["r"] == 4
    assert (adapter / "adapter_model.safetensors").exists() and not (adapter / "model.safetensors").exists()
    base_net = AutoModelForCausalLM.from_pretrained(config["base_model_name_or_path"], dtype=torch.float32)
    with torch.no_grad():
        got = PeftModel.from_pretrained(base_net, adapter).eval()(input_ids=ids).logits
    assert torch.equal(got, want)  # the same adapter weights on the same base, the same forward


def test_sha256sums_pass_sha256sum_c_and_fail_after_corruption(runs, tmp_path: Path) -> None:
    out = tmp_path / "x"
    grpo("export", "--checkpoint", str(runs["lora"] / "checkpoints" / "step_000003"), "--out", str(out), "--merge-lora", "--dtype", "bf16")
    listed = sorted(line.split("  ", 1)[1] for line in (out / "SHA256SUMS").read_text().splitlines())
    assert listed == sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file() and p.name != "SHA256SUMS")
    assert subprocess.run(["sha256sum", "-c", "SHA256SUMS"], cwd=out, capture_output=True).returncode == 0
    with open(out / "model.safetensors", "r+b") as handle:  # flip one byte in the middle
        handle.seek(handle.seek(0, 2) // 2)
        byte = handle.read(1)
        handle.seek(-1, 1)
        handle.write(bytes([byte[0] ^ 0xFF]))
    check = subprocess.run(["sha256sum", "-c", "SHA256SUMS"], cwd=out, capture_output=True, text=True)
    assert check.returncode != 0 and "model.safetensors: FAILED" in check.stdout


def test_refusals(runs, tmp_path: Path) -> None:
    bow = grpo("export", "--checkpoint", str(runs["bow"]), "--out", str(tmp_path / "b"), check=False)
    assert bow.returncode == 1 and "bow checkpoint" in bow.stderr and not (tmp_path / "b").exists()
    lora = grpo("export", "--checkpoint", str(runs["lora"]), "--out", str(tmp_path / "l"), check=False)
    assert lora.returncode == 1 and "--merge-lora" in lora.stderr and "--adapter-only" in lora.stderr
    full = grpo("export", "--checkpoint", str(runs["full"]), "--out", str(tmp_path / "f"), "--adapter-only", check=False)
    assert full.returncode == 1 and "no adapter" in full.stderr
    both = grpo("export", "--checkpoint", str(runs["lora"]), "--out", str(tmp_path / "l"), "--merge-lora", "--adapter-only", check=False)
    assert both.returncode == 2
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "keep.txt").write_text("mine")
    refused = grpo("export", "--checkpoint", str(runs["full"]), "--out", str(taken), check=False)
    assert refused.returncode == 1 and "--force" in refused.stderr and (taken / "keep.txt").read_text() == "mine"
    grpo("export", "--checkpoint", str(runs["full"]), "--out", str(taken), "--force")
    assert not (taken / "keep.txt").exists() and (taken / "SHA256SUMS").exists()
    shutil.rmtree(taken)
