"""policy.tiny: a small random causal LM + byte tokenizer saved as an ordinary HF checkpoint dir."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file

from policy.tiny import build_tiny


def test_tiny_is_an_hf_checkpoint_dir_loadable_with_from_pretrained(tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = build_tiny(tmp_path / "tiny", seed=0)
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= {p.name for p in path.iterdir()}
    assert not (tmp_path / "tiny.tmp").exists()
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path)
    assert model.config.hidden_size == 64 and model.config.num_hidden_layers == 2
    assert model.get_output_embeddings().weight.shape == (len(tok), 64) == (259, 64)
    ids = tok("héllo ?!", add_special_tokens=True)["input_ids"]
    assert ids[0] == tok.bos_token_id and len(ids) == 1 + len("héllo ?!".encode())  # one token per byte
    assert tok.decode(ids, skip_special_tokens=True) == "héllo ?!"
    assert tok.pad_token_id is not None and tok.eos_token_id is not None


def test_same_seed_same_weights_and_the_callers_rng_is_untouched(tmp_path: Path) -> None:
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    a = load_file(str(build_tiny(tmp_path / "a", seed=5) / "model.safetensors"))
    assert torch.equal(torch.rand(3), expected)
    b = load_file(str(build_tiny(tmp_path / "b", seed=5) / "model.safetensors"))
    c = load_file(str(build_tiny(tmp_path / "c", seed=6) / "model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)
