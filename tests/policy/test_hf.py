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
    assert enc.ids.shape == (3, 6) and enc.mask.sum(-1).tolist() == [3.0, 6.0, 1.0]
    assert enc.ids[0, :3].tolist() == [ord("o"), ord("k"), eos]
    assert enc.ids[1].tolist() == [ord(c) for c in "a long"]  # cut at 6 ids, no eos: it did not end there
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


def test_cut_logged_completions_can_be_masked_and_micro_batches_split_rows(tiny: Path) -> None:
    from policy.prompting import PromptFormat

    policy = HFPolicy.load(str(tiny), device=CPU, max_completion_tokens=6)
    policy.set_format(PromptFormat("none", max_prompt_tokens=4), mask_truncated=True)
    enc = policy.encode("fix the bug:", ["ok", "a longer answer", "fine"])
    assert enc.mask.sum(-1).tolist() == [3.0, 0.0, 5.0]  # the cut one leaves the loss
    assert enc.inputs["prompt_len"] == 4 and enc.inputs["input_ids"][0, :4].tolist() == [ord(c) for c in "bug:"]
    parts = policy.split(enc, 2)
    assert [rows for rows, _ in parts] == [slice(0, 2), slice(2, 3)]
    for rows, sub in parts:  # each micro-batch is exactly those candidates' rows of the group
        assert torch.equal(sub.ids, enc.ids[rows]) and torch.equal(sub.mask, enc.mask[rows])
        assert torch.equal(sub.inputs["input_ids"], enc.inputs["input_ids"][rows]) and sub.inputs["prompt_len"] == 4
    assert policy.split(enc, None) == [(slice(0, 3), enc)]


def test_a_chat_template_wraps_the_prompt_as_the_user_message(tmp_path: Path) -> None:
    """A Qwen2-like local config with a ChatML template: the template's tokens are in the model input."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from policy.prompting import PromptFormat
    from policy.tiny import build_tokenizer

    tok = build_tokenizer()
    tok.chat_template = (
        "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    )
    config = Qwen2Config(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=256,
                         pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id, bos_token_id=tok.bos_token_id)
    torch.manual_seed(0)
    Qwen2ForCausalLM(config).save_pretrained(tmp_path / "qwen")
    tok.save_pretrained(tmp_path / "qwen")
    policy = HFPolicy.load(str(tmp_path / "qwen"), device=CPU)
    policy.set_format(PromptFormat("auto", system_prompt="You are terse."))
    enc = policy.encode("fix it", ["done"])
    text = policy.tokenizer.decode(enc.inputs["input_ids"][0, : enc.inputs["prompt_len"]])
    assert text.endswith("<|im_start|>system\nYou are terse.<|im_end|>\n<|im_start|>user\nfix it<|im_end|>\n<|im_start|>assistant\n")
    policy.set_format(PromptFormat("none"))
    plain = policy.tokenizer.decode(policy.encode("fix it", ["done"]).inputs["input_ids"][0], skip_special_tokens=True)
    assert "<|im_start|>" not in plain and plain.startswith("fix it")


def test_one_prompt_forward_per_group_equals_the_full_forward(tiny: Path) -> None:
    """Shared prompt (one batch-1 prompt pass, its KV cache repeated for the G completions) against the plain
    (G, P + T) pass, with the model in float64 so that the shared-prompt bookkeeping (positions, masks, the
    cache in the autograd graph) is what is tested. Row-wise forward math is the same op for op: hidden
    states agree to 1e-10. The backward sums the prompt's contributions in another order (G rows vs one
    repeated cache), and Llama's RMSNorm computes in fp32 whatever the model dtype: a K-term fp32 sum
    (K <= G (P + T) ~ 200) is off by about sqrt(K) * 2^-24 ~ 1e-6 of the largest term; 1e-5 of each
    gradient's largest entry bounds that tenfold (a wrong position or a cut graph is off by O(1))."""
    policy = HFPolicy.load(str(tiny), device=CPU, max_completion_tokens=8)
    policy.net.double()
    enc = policy.encode("a prompt that the candidates share", ["ok", "a longer answer", "", "fine"])
    weights = torch.randn(4, enc.ids.shape[1], 64, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    results = []
    for share in (False, True):
        policy.share_prompt = share
        policy.net.zero_grad()
        hidden = policy._hidden(enc)  # (G, T, H)
        ((hidden * weights).sum(-1) * enc.mask).sum().backward()
        results.append((hidden.detach(), [p.grad.clone() for p in policy.net.parameters() if p.grad is not None]))
    (h_full, g_full), (h_shared, g_shared) = results
    mask = enc.mask[..., None].double()
    assert torch.allclose(h_full * mask, h_shared * mask, rtol=0, atol=1e-10)
    assert len(g_full) == len(g_shared)
    for a, b in zip(g_full, g_shared):
        assert (a - b).abs().max() <= 1e-5 * a.abs().max()


def test_masked_positions_go_to_the_kernels_as_the_ignore_index(tiny: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Padded positions reach the kernels as id -100: log-prob 0 there, a finite loss and gradient (issue 12)."""
    import policy.hf as hf

    seen: list[torch.Tensor] = []
    real = hf.fused_linear_grpo_loss

    def spy(hidden, weight, ids, *args, **kwargs):
        seen.append(ids.clone())
        return real(hidden, weight, ids, *args, **kwargs)

    monkeypatch.setattr(hf, "fused_linear_grpo_loss", spy)
    policy = HFPolicy.load(str(tiny), device=CPU, max_completion_tokens=6)
    enc = policy.encode("fix the bug:", ["ok", "a longer answer", ""])
    logp = policy.logprobs(enc)
    assert torch.all(seen[-1][enc.mask == 0] == -100) and torch.equal(seen[-1][enc.mask == 1], enc.ids[enc.mask == 1])
    assert torch.all(logp[enc.mask == 0] == 0)
    loss, _ = policy.loss(enc, logp, None, torch.tensor([1.0, -1.0, 0.0]), beta=0.0, normalizer=1.0, opts=LossOptions())
    loss.backward()
    assert torch.isfinite(loss) and torch.all(seen[-1][enc.mask == 0] == -100)
    assert all(torch.isfinite(p.grad).all() for p in policy.trainable_parameters() if p.grad is not None)
