"""bench case `train-step`: the trainer's fused-linear step and the full-logits step compute the same
loss and the same update from the same model and batch (tiny sizes, in-process; memory is `grpo bench`'s)."""

from __future__ import annotations

import torch

from bench.registry import Size, load


def test_fused_and_full_logits_steps_agree() -> None:
    case = load()["train-step"]
    assert case.providers == ("ours", "naive") and not case.default
    size = Size(tokens=64, vocab=300, hidden=16, dtype="fp32", device="cpu")
    results = {}
    for provider in case.providers:
        torch.manual_seed(0)
        inputs = case.build(size, provider)
        loss = case.run(provider, inputs)["loss"]
        results[provider] = (loss, [p.detach().clone() for p in inputs["net"].parameters()])
        assert all(p.grad is None for p in inputs["net"].parameters())  # gradients released after the step
    (loss_a, params_a), (loss_b, params_b) = results["ours"], results["naive"]
    assert torch.allclose(loss_a, loss_b, atol=1e-6)
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(params_a, params_b))
