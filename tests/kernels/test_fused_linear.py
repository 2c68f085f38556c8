"""fused_linear_grpo_loss (Torch backend) against float64 hidden @ W.T + log_softmax + TRL loss math.

Chunk sizes that do and do not divide N, odd vocabularies, bias, temperature, sequence level,
bf16 inputs (fp32 accumulation) and a frozen LM head (no weight gradient computed).
"""

from __future__ import annotations

import pytest
import torch

from kernels import OptionError, ShapeError, fused_linear_grpo_loss, grpo_loss, use_backend
from kernels.fused_linear import default_chunk_tokens

from kernels.fused_linear import VOCAB_BLOCK
from oracle import U, assert_within, gemm_bound, logp_tol
from test_loss import LOSS_TOL, trl_loss64  # the float64 TRL reference (same folder, rootdir-relative import)

# d_hidden = dlogits @ W sums V terms: in VOCAB_BLOCK-wide fp32 GEMMs (random-walk error about
# sqrt(VOCAB_BLOCK) * U per unit of the largest partial sum, which is the output's own scale here) added in
# float64; 2x for the largest of a few hundred outputs. d_weight and d_bias sum over tokens (K <= 15 here).
FUSED_GRAD_TOL = 2 * VOCAB_BLOCK**0.5 * U  # 3.8e-6 relative to the largest gradient


@pytest.fixture(autouse=True)
def torch_backend():
    with use_backend("torch"):
        yield


def problem(b: int, t: int, h: int, vocab: int, seed: int = 0, with_bias: bool = False):
    gen = torch.Generator().manual_seed(seed)
    hidden = torch.randn(b, t, h, generator=gen)  # (B, T, H)
    weight = torch.randn(vocab, h, generator=gen) * (2.0 / h**0.5)  # (V, H): logits std ~2
    bias = torch.randn(vocab, generator=gen) * 0.5 if with_bias else None  # (V,)
    ids = torch.randint(0, vocab, (b, t), generator=gen)  # (B, T)
    with torch.no_grad():
        logits = hidden @ weight.T + (0 if bias is None else bias)
        logp = torch.log_softmax(logits, -1).gather(-1, ids[..., None]).squeeze(-1)
    old = logp + 0.3 * torch.randn(b, t, generator=gen)
    ref = logp + 0.3 * torch.randn(b, t, generator=gen)
    adv = torch.randn(b, generator=gen)
    mask = (torch.arange(t)[None, :] < torch.randint(1, t + 1, (b,), generator=gen)[:, None]).float()
    return hidden, weight, bias, ids, old, ref, adv, mask


def fused_logits_error(hidden, weight, bias=None):
    """(B, T) bound on how far log-probs move from the fp32 logits GEMM h @ W.T (+ bias): the chosen logit and
    the LSE each move by at most the row's largest GEMM error (oracle.gemm_bound), plus the bias add (U |z|)."""
    h2 = hidden.reshape(-1, hidden.shape[-1])
    bound = gemm_bound(h2, weight)  # (N, V)
    if bias is not None:
        bound = bound + U * (h2.double() @ weight.double().T + bias.double()).abs()
    return 2 * bound.amax(-1).view(hidden.shape[:-1])


def rel(got: torch.Tensor, want: torch.Tensor) -> float:
    return ((got.double() - want).abs().max() / want.abs().max()).item()


@pytest.mark.parametrize(
    ("b", "t", "h", "vocab", "chunk", "with_bias", "kw"),
    [
        (3, 5, 16, 1000, 4, False, dict(loss_type="grpo", beta=0.04)),
        (3, 5, 16, 1000, 15, True, dict(loss_type="dapo", ratio_level="sequence", delta=1.3, temperature=0.8)),
        (2, 4, 8, 1000, 3, True, dict(loss_type="cispo", eps_high=1.2, beta=0.1, temperature=1.2)),
        (2, 3, 8, 50257, 2, False, dict(loss_type="dr_grpo", beta=0.04)),
        (2, 3, 8, 1000, None, False, dict(loss_type="bnpo", ratio_level="sequence")),
    ],
)
def test_matches_float64_reference(b, t, h, vocab, chunk, with_bias, kw) -> None:
    hidden, weight, bias, ids, old, ref, adv, mask = problem(b, t, h, vocab, seed=vocab + t, with_bias=with_bias)
    leaves = [hidden.clone().requires_grad_(True), weight.clone().requires_grad_(True)]
    if bias is not None:
        leaves.append(bias.clone().requires_grad_(True))
    loss, stats = fused_linear_grpo_loss(
        leaves[0], leaves[1], ids, old, ref, adv, mask, bias=leaves[2] if bias is not None else None, chunk_tokens=chunk, **kw
    )
    loss.backward()
    leaves64 = [x.detach().double().requires_grad_(True) for x in leaves]
    logits64 = leaves64[0] @ leaves64[1].T + (leaves64[2] if bias is not None else 0)
    loss64 = trl_loss64(logits64, ids, old, ref, adv, mask, **kw)
    loss64.backward()
    assert loss.dtype == torch.float32 and abs(loss.item() - loss64.item()) <= LOSS_TOL
    for got, want in zip(leaves, leaves64):
        assert got.grad.dtype == torch.float32
        assert rel(got.grad, want.grad) <= FUSED_GRAD_TOL
    temp = kw.get("temperature", 1.0)
    logp64 = torch.log_softmax(logits64.detach() / temp, -1).gather(-1, ids[..., None]).squeeze(-1)
    assert_within(stats.logp, logp64, logp_tol(logp64) + fused_logits_error(hidden, weight, bias) / temp, "logp")
    assert stats.entropy is not None and stats.entropy.shape == (b, t)


def test_stats_match_float64_on_a_chunked_run() -> None:
    """ratio, KL and entropy of the fused path (chunk 5 over 12 tokens) against float64 of the same logits."""
    hidden, weight, _, ids, old, ref, adv, mask = problem(3, 4, 12, 333, seed=1)
    kw = dict(loss_type="grpo", beta=0.04, temperature=0.9, delta=1.4)
    loss, stats = fused_linear_grpo_loss(hidden, weight, ids, old, ref, adv, mask, chunk_tokens=5, **kw)
    logits64 = hidden.double() @ weight.double().T
    assert abs(loss.item() - trl_loss64(logits64, ids, old, ref, adv, mask, **kw).item()) <= LOSS_TOL
    logsm = torch.log_softmax(logits64 / 0.9, -1)
    logp64 = logsm.gather(-1, ids[..., None]).squeeze(-1)
    moved = fused_logits_error(hidden, weight) / 0.9  # (B, T) from the fp32 GEMM
    tol = logp_tol(logp64) + moved
    assert_within(stats.logp, logp64, tol, "logp")
    ratio64 = torch.exp(logp64 - old.double())
    assert_within(stats.ratio, ratio64, ratio64 * (2 * tol + U), "ratio")  # exp: relative error = logp error
    diff = ref.double() - logp64
    assert_within(stats.kl, torch.exp(diff) - diff - 1, (torch.exp(diff) + 1) * (tol + U) + 4 * U, "kl")
    entropy64 = torch.special.entr(logsm.exp()).sum(-1)
    assert_within(stats.entropy, entropy64, 4e-6 + 2 * moved, "entropy")  # oracle.entropy_tol plus the GEMM's move


def test_bf16_inputs_accumulate_in_fp32() -> None:
    hidden, weight, _, ids, old, ref, adv, mask = problem(2, 6, 16, 1000, seed=2)
    hidden, weight = hidden.bfloat16(), weight.bfloat16()
    h, w = hidden.clone().requires_grad_(True), weight.clone().requires_grad_(True)
    loss, stats = fused_linear_grpo_loss(h, w, ids, old, ref, adv, mask, chunk_tokens=3, loss_type="dapo", beta=0.04)
    loss.backward()
    h64, w64 = hidden.double().requires_grad_(True), weight.double().requires_grad_(True)
    logits64 = h64 @ w64.T
    loss64 = trl_loss64(logits64, ids, old, ref, adv, mask, loss_type="dapo", beta=0.04)
    loss64.backward()
    assert loss.dtype == stats.logp.dtype == torch.float32
    assert h.grad.dtype == w.grad.dtype == torch.bfloat16
    assert abs(loss.item() - loss64.item()) <= 5e-3  # bf16 logits from a bf16 matmul
    assert rel(h.grad.float(), h64.grad) <= 3e-2 and rel(w.grad.float(), w64.grad) <= 3e-2


def test_frozen_head_gets_no_weight_gradient() -> None:
    hidden, weight, _, ids, old, ref, adv, mask = problem(2, 3, 8, 100, seed=3)
    h = hidden.clone().requires_grad_(True)
    loss, _ = fused_linear_grpo_loss(h, weight, ids, old, ref, adv, mask, chunk_tokens=2)
    loss.backward()
    assert weight.grad is None and h.grad is not None and h.grad.abs().sum() > 0


def test_default_chunk_keeps_the_logits_buffer_near_128_mib() -> None:
    rows = default_chunk_tokens(151936)
    assert 100 << 20 <= rows * 151936 * 4 <= 150 << 20
    assert default_chunk_tokens(10**9) == 1


def test_bad_inputs_raise_typed_errors() -> None:
    hidden, weight, _, ids, old, ref, adv, mask = problem(2, 3, 8, 100)
    with pytest.raises(ShapeError, match="weight"):
        fused_linear_grpo_loss(hidden, weight[:, :4], ids, old, ref, adv, mask)
    with pytest.raises(ShapeError, match="ids"):
        fused_linear_grpo_loss(hidden, weight, ids[:, :2], old, ref, adv, mask)
    with pytest.raises(ShapeError, match="bias"):
        fused_linear_grpo_loss(hidden, weight, ids, old, ref, adv, mask, bias=torch.zeros(7))
    with pytest.raises(OptionError, match="loss_type"):
        fused_linear_grpo_loss(hidden, weight, ids, old, ref, adv, mask, loss_type="nope")


def test_ignore_index_on_masked_tokens_costs_nothing() -> None:
    """ids -100 at masked positions (HF labels): finite loss equal to float64 TRL on the real ids, zero hidden
    gradient on those positions, logp 0 there (issue 12)."""
    hidden, weight, _, ids, old, ref, adv, mask = problem(3, 5, 16, 1003, seed=11)
    mask[0, 0] = 0.0  # a masked position in the middle of live ones too
    leaves = [hidden.clone().requires_grad_(True), weight.clone().requires_grad_(True)]
    loss, stats = fused_linear_grpo_loss(leaves[0], leaves[1], ids.masked_fill(mask == 0, -100), old, ref, adv, mask, beta=0.04, chunk_tokens=4)
    loss.backward()
    leaves64 = [x.detach().double().requires_grad_(True) for x in leaves]
    loss64 = trl_loss64(leaves64[0] @ leaves64[1].T, ids, old, ref, adv, mask, beta=0.04)
    loss64.backward()
    assert torch.isfinite(loss) and abs(loss.item() - loss64.item()) <= LOSS_TOL
    assert torch.all(leaves[0].grad[mask == 0] == 0) and torch.all(stats.logp[mask == 0] == 0)
    for got, want in zip(leaves, leaves64):
        assert rel(got.grad, want.grad) <= FUSED_GRAD_TOL
