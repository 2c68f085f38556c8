"""policy.hf: completion log-probs through the fused-linear loss match full logits; pad tokens; LoRA."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from policy.backends import LossOptions
from policy.errors import PolicyError
from policy.hf import HFPolicy
from policy.tiny import build_tiny

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny(tmp_path_factory.mktemp("hf") / "tiny", seed=0)


def test_fused_completion_logprobs_equal_the_full_logits_reference(tiny: Path) -> None:
    policy = HFPolicy.load(str(tiny), device=CPU, max_completion_tokens=6)
    enc = policy.encode("fix the bug:", ["ok", "a longer answer", ""])
    eos = policy.tokenizer.eos_token_id
    assert enc.ids.shape == (3, 6) and enc.mask.sum(-1).tolist() == [3.0, 6.0, 1.0]  # cut to 5 bytes + eos
    assert enc.ids[0, :3].tolist() == [ord("o"), ord("k"), eos] and enc.ids[1, 5].item() == eos
    logp = policy.logprobs(enc)  # (G, T)
    x = enc.inputs
    with torch.no_grad():
        logits = policy.net(input_ids=x["input_ids"], attention_mask=x["attention_mask"]).logits  # (G, P + T, V)
    p = x["prompt_len"]
    ref = torch.log_softmax(logits[:, p - 1 : -1].float(), -1).gather(-1, enc.ids[..., None]).squeeze(-1)
    assert torch.allclose(logp * enc.mask, ref * enc.mask, atol=1e-5)
    scores = policy.scores(enc)
    assert torch.allclose(scores, (ref * enc.mask).sum(-1) / enc.mask.sum(-1), atol=1e-5)


def test_a_tokenizer_without_pad_token_pads_with_eos(tiny: Path, tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny)
    tok.pad_token = None
    target = tmp_path / "nopad"
    tok.save_pretrained(target)
    AutoModelForCausalLM.from_pretrained(tiny).save_pretrained(target)
    assert AutoTokenizer.from_pretrained(target).pad_token_id is None
    policy = HFPolicy.load(str(target), device=CPU)
    assert policy.tokenizer.pad_token_id == policy.tokenizer.eos_token_id


def test_a_missing_model_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="cannot load model"):
        HFPolicy.load(str(tmp_path / "nowhere"), device=CPU)


@pytest.mark.skipif(importlib.util.find_spec("peft") is None, reason="peft not installed (the 'lora' extra)")
def test_lora_trains_only_adapters_and_the_reference_is_the_base(tiny: Path, tmp_path: Path) -> None:
    policy = HFPolicy.load(str(tiny), device=CPU, lora_r=4)
    names = [n for n, p in policy.net.named_parameters() if p.requires_grad]
    assert names and all("lora_" in n for n in names)
    base_before = {k: v.clone() for k, v in policy.net.named_parameters() if not v.requires_grad}
    enc = policy.encode("say yes:", ["yes!", "no?"])
    opt = torch.optim.AdamW(policy.trainable_parameters(), lr=0.05)
    for _ in range(3):
        opt.zero_grad()
        loss, _ = policy.loss(enc, None, None, torch.tensor([1.0, -1.0]), beta=0.0, normalizer=2.0, opts=LossOptions())
        loss.backward()
        opt.step()
    assert all(torch.equal(v, base_before[k]) for k, v in policy.net.named_parameters() if not v.requires_grad)
    plain = HFPolicy.load(str(tiny), device=CPU)
    assert torch.allclose(policy.reference_logprobs(enc), plain.logprobs(enc), atol=1e-6)
    assert not torch.allclose(policy.logprobs(enc), plain.logprobs(enc), atol=1e-4)
    policy.save(tmp_path)
    saved = load_file(str(tmp_path / "adapter" / "adapter_model.safetensors"))
    assert saved and all("lora_" in k for k in saved) and not (tmp_path / "model.safetensors").exists()
    again = HFPolicy.load(str(tiny), device=CPU, lora_r=4)
    again.load_weights(tmp_path)
    assert torch.allclose(again.logprobs(enc), policy.logprobs(enc), atol=1e-6)
