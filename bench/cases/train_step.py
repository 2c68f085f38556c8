"""Case `train-step`: one GRPO training step of a small-hidden, large-vocabulary causal LM.

The model is a random LlamaForCausalLM (hidden H, default 64; 2 layers, 4 heads; vocabulary V, default
151936 like Qwen), the batch 8 candidates x N/8 completion tokens (default 8 x 512) after a shared
32-token prompt. One run = forward + backward + AdamW step, gradients then released. Providers:
ours (the trainer's path, `policy.hf.HFPolicy.loss`: decoder hidden states + the LM head weight into
`kernels.fused_linear_grpo_loss`, never building (N, V) logits) and naive (the standard path:
`model(...).logits`, fp32 log_softmax + gather, the same loss math from bench.grpo_math). A warmup
step first allocates the optimizer state, so peak extra memory is the step's own. Not part of a bare
`grpo bench` (the naive step needs ~3 x N x V x 4 bytes: about 8 GiB at the defaults).
"""

from __future__ import annotations

from typing import Any

import torch

from bench.cases.common import TORCH_DTYPES, batch_shape, grpo_side_inputs
from bench.grpo_math import LOSS, grpo_loss_from_logp
from bench.registry import Case, Size, register

PROMPT = 32  # shared prompt tokens before the completions


def build(size: Size, provider: str) -> dict[str, Any]:
    from transformers import LlamaConfig, LlamaForCausalLM

    from policy.backends import Encoded
    from policy.hf import HFPolicy

    b, t = batch_shape(size.tokens)
    v, h = size.vocab, size.hidden
    config = LlamaConfig(
        vocab_size=v, hidden_size=h, intermediate_size=2 * h, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=4, max_position_embeddings=PROMPT + t, tie_word_embeddings=False,
    )  # fmt: skip
    net = LlamaForCausalLM(config).to(device=size.device, dtype=TORCH_DTYPES[size.dtype])
    prompt = torch.randint(0, v, (1, PROMPT), device=size.device).expand(b, PROMPT)  # (B, P)
    completion = torch.randint(0, v, (b, t), device=size.device)  # (B, T)
    input_ids = torch.cat([prompt, completion], dim=1)  # (B, P + T)
    side = grpo_side_inputs(torch.full((b, t), -float(torch.log(torch.tensor(float(v)))), device=size.device), size.device)
    attention = torch.ones_like(input_ids)
    enc = Encoded(ids=completion, mask=side["mask"], inputs={"input_ids": input_ids, "attention_mask": attention, "prompt_len": PROMPT})
    policy = HFPolicy(net, None, device=torch.device(size.device), base="bench", max_completion_tokens=t)
    optimizer = torch.optim.AdamW(net.parameters(), lr=1e-4)
    return {"policy": policy, "net": net, "enc": enc, "optimizer": optimizer, **side}


def run(provider: str, inputs: dict[str, Any]) -> dict[str, Any]:
    net, enc, optimizer = inputs["net"], inputs["enc"], inputs["optimizer"]
    old, ref, adv, mask = inputs["old_logp"], inputs["ref_logp"], inputs["advantages"], inputs["mask"]
    if provider == "ours":
        from policy.backends import LossOptions

        opts = LossOptions(loss_type=LOSS["loss_type"], eps_low=LOSS["eps_low"], eps_high=LOSS["eps_high"], temperature=LOSS["temperature"])
        loss, _stats = inputs["policy"].loss(enc, old, ref, adv, beta=LOSS["beta"], normalizer=float(mask.sum().clamp(min=1)), opts=opts)
    elif provider == "naive":
        x = enc.inputs
        p, t = x["prompt_len"], enc.ids.shape[1]
        logits = net(input_ids=x["input_ids"], attention_mask=x["attention_mask"], use_cache=False).logits  # (B, P + T, V)
        z = logits[:, p - 1 : p - 1 + t].float() / LOSS["temperature"]  # (B, T, V)
        logp = torch.log_softmax(z, dim=-1).gather(-1, enc.ids[..., None]).squeeze(-1)  # (B, T)
        loss = grpo_loss_from_logp(logp, old, ref, adv, mask, **LOSS)
    else:
        raise ValueError(f"train-step has no provider {provider!r}")
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return {"loss": loss.detach()}


register(
    Case(
        name="train-step",
        summary="one GRPO training step (forward, backward, AdamW) of an HF LM: fused-linear loss vs full logits",
        providers=("ours", "naive"),
        tokens=(4096,),
        vocabs=(151936,),
        hidden=64,
        build=build,
        run=run,
        default=False,
        order=50,
    )
)
