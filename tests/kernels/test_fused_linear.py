"""fused_linear_grpo_loss (Torch backend) against float64 hidden @ W.T + log_softmax + TRL loss math.

Chunk sizes that do and do not divide N, odd vocabularies, bias, temperature, sequence level,
bf16 inputs (fp32 accumulation) and a frozen LM head (no weight gradient computed).
"""

from __future__ import annotations

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from kernels import OptionError, ShapeError, fused_linear_grpo_loss, grpo_loss, use_backend
from kernels.fused_linear import CHUNK_CAP_BYTES, default_chunk_tokens

from kernels.fused_linear import VOCAB_BLOCK
from oracle import U, assert_within, gemm_bound, logp_tol
from test_loss import LOSS_TOL, trl_loss64, trl_loss_from_logp64  # the float64 TRL reference (same folder, rootdir-relative import)

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
    live = mask != 0  # masked rows are dropped before the products: logp 0 there
    tol = logp_tol(logp64) + fused_logits_error(hidden, weight, bias) / temp
    assert_within(stats.logp[live], logp64[live], tol[live], "logp")
    assert torch.all(stats.logp[~live] == 0)
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
    live = mask != 0  # masked rows are dropped: their stats are not compared
    logp64, tol, moved = logp64[live], tol[live], moved[live]
    assert_within(stats.logp[live], logp64, tol, "logp")
    ratio64 = torch.exp(logp64 - old.double()[live])
    assert_within(stats.ratio[live], ratio64, ratio64 * (2 * tol + U), "ratio")  # exp: relative error = logp error
    diff = ref.double()[live] - logp64
    assert_within(stats.kl[live], torch.exp(diff) - diff - 1, (torch.exp(diff) + 1) * (tol + U) + 4 * U, "kl")
    entropy64 = torch.special.entr(logsm.exp()).sum(-1)[live]
    assert_within(stats.entropy[live], entropy64, 4e-6 + 2 * moved, "entropy")  # oracle.entropy_tol plus the GEMM's move


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


def test_default_chunk_follows_the_flop_per_byte_balance() -> None:
    """bf16, H = 4096: C >= R H / (H - 2 R) with R = 989e12 / 3.35e12 = 295 -> 345 -> 384 rows; small H is
    memory-bound whatever C (C = H, at least 128); buffers within CHUNK_CAP_BYTES; absurd V -> 1 row."""
    assert default_chunk_tokens(151936, torch.bfloat16, 4096) == 384
    assert default_chunk_tokens(151936, torch.bfloat16, 256) == 256
    assert default_chunk_tokens(151936, torch.float32, 4096) == 128
    for dtype, size in ((torch.float32, 4), (torch.bfloat16, 6)):
        for vocab in (1000, 50257, 151936, 10**6):
            assert default_chunk_tokens(vocab, dtype, 8192) * vocab * size <= CHUNK_CAP_BYTES
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


def bf16_oracle(hidden, weight, ids, old, ref, adv, mask, **kw):
    """float64 loss, d_hidden, d_weight and per-row error bounds of the bf16 path, from the same bf16 values.

    Error model (per row, relative to the row's magnitudes): the logits GEMM is off by gemm_bound (fp32
    accumulation, gamma_K with K = H) plus, on a backend without an fp32-output low-precision GEMM (the CPU),
    one bf16 rounding of each logit (2^-8 |z|); delta = the row's worst logit error moves logp by <= 2 delta and
    each p_v by <= 2.1 delta p_v. dlogits = g (onehot - p) is rounded once to bf16 (2^-8), the gradient GEMMs
    add gamma_K (K = V or N) and possibly a bf16 output rounding (2^-8), the returned gradient a bf16 cast
    (2^-8), and the fp32 kernel math a few U. All are bounded by A = |g| (onehot + p), so
    |err d_hidden| <= (A f) @ |W| and |err d_weight| <= (A f).T @ |h| with f = 3 * 2^-8 + K U + 2.1 delta + 8 U.
    """
    h64, w64 = hidden.double().reshape(-1, hidden.shape[-1]).requires_grad_(True), weight.double().requires_grad_(True)
    logits64 = h64 @ w64.T  # (N, V)
    logsm = torch.log_softmax(logits64, -1)
    logp64 = logsm.gather(-1, ids.reshape(-1, 1).clamp(min=0)).squeeze(-1)
    logp64.retain_grad()
    loss64 = trl_loss_from_logp64(logp64.view(ids.shape), old, ref, adv, mask, **kw)
    loss64.backward()
    h2 = hidden.reshape(-1, hidden.shape[-1])
    delta = (gemm_bound(h2, weight) + 2.0**-8 * logits64.detach().abs()).amax(-1)  # (N,)
    g = logp64.grad.abs()  # (N,)
    onehot = torch.zeros_like(logits64).scatter_(1, ids.reshape(-1, 1).clamp(min=0), 1.0)
    k = max(weight.shape[0], h2.shape[0])
    a = g[:, None] * (onehot + logsm.detach().exp()) * (3 * 2.0**-8 + k * U + 2.1 * delta + 8 * U)[:, None]  # (N, V)
    tol_h = a @ weight.double().abs()  # (N, H)
    tol_w = a.T @ h2.double().abs()  # (V, H)
    return loss64, logp64.detach().view(ids.shape), 2 * delta.view(ids.shape), h64.grad.view(hidden.shape), w64.grad, tol_h.view(hidden.shape), tol_w


class _ProductDtypes(TorchDispatchMode):
    """Records the operand dtypes of every matrix product dispatched while active."""

    PRODUCTS = {"mm", "addmm", "bmm", "baddbmm", "matmul", "dot", "mv", "addmv", "addbmm", "_addmm_activation"}

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[str, tuple[torch.dtype, ...]]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.overloadpacket.__name__
        if name in self.PRODUCTS:
            mats = args[1:3] if name.startswith(("addmm", "baddbmm", "addmv", "addbmm", "_addmm")) else args[:2]
            self.seen.append((name, tuple(m.dtype for m in mats)))
        return func(*args, **(kwargs or {}))


def test_bf16_hidden_and_weight_call_their_products_with_bf16_operands() -> None:
    hidden, weight, _, ids, old, ref, adv, mask = problem(2, 6, 16, 1000, seed=2)
    h, w = hidden.bfloat16().requires_grad_(True), weight.bfloat16().requires_grad_(True)
    with _ProductDtypes() as mode:
        loss, _ = fused_linear_grpo_loss(h, w, ids, old, ref, adv, mask, chunk_tokens=3, loss_type="dapo", beta=0.04)
        loss.backward()
    products = [(name, dtypes) for name, dtypes in mode.seen if name != "mm" or len(dtypes) == 2]
    assert len(products) >= 3  # logits (forward and recomputed), d_hidden, d_weight
    assert all(d == (torch.bfloat16, torch.bfloat16) for _, d in products), products
    assert h.grad is not None and w.grad is not None


@pytest.mark.parametrize("with_mask_drop", [False, True])
def test_bf16_path_against_float64_of_the_same_bf16_values(with_mask_drop: bool) -> None:
    hidden, weight, _, ids, old, ref, adv, mask = problem(3, 5, 32, 1003, seed=5)
    hidden, weight = hidden.bfloat16(), weight.bfloat16()
    if not with_mask_drop:
        mask = torch.ones_like(mask)
    kw = dict(loss_type="grpo", beta=0.04)
    h, w = hidden.clone().requires_grad_(True), weight.clone().requires_grad_(True)
    loss, stats = fused_linear_grpo_loss(h, w, ids, old, ref, adv, mask, chunk_tokens=4, **kw)
    loss.backward()
    loss64, logp64, moved, dh64, dw64, tol_h, tol_w = bf16_oracle(hidden, weight, ids, old, ref, adv, mask, **kw)
    live = mask != 0
    assert_within(stats.logp[live], logp64[live], (logp_tol(logp64) + moved)[live], "logp")
    assert h.grad.dtype == w.grad.dtype == torch.bfloat16
    assert_within(h.grad, dh64, tol_h + 1e-30, "d_hidden")
    assert_within(w.grad, dw64, tol_w + 1e-30, "d_weight")
    # the loss moves with logp: through the ratio and KL, at most a few times the largest logp error
    assert abs(loss.item() - loss64.item()) <= LOSS_TOL + 8 * (logp_tol(logp64) + moved)[live].max().item()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_masked_and_ignored_rows_give_zero_gradient_and_leave_the_others_alone(dtype) -> None:
    hidden, weight, _, ids, old, ref, adv, mask = problem(3, 5, 16, 517, seed=13)
    mask[1, 1] = 0.0  # a masked position between live ones
    hidden, weight = hidden.to(dtype), weight.to(dtype)
    ids_ignored = ids.clone()
    ids_ignored[0, 2] = -100  # an ignore index on a live mask position: dropped too
    dead = (mask == 0) | (ids_ignored < 0)

    def run(h_in, ids_in, mask_in):
        h, w = h_in.clone().requires_grad_(True), weight.clone().requires_grad_(True)
        loss, stats = fused_linear_grpo_loss(h, w, ids_in, old, ref, adv, mask_in, beta=0.04, chunk_tokens=4)
        loss.backward()
        return stats, h.grad, w.grad

    stats, dh, dw = run(hidden, ids_ignored, mask)
    assert torch.all(dh[dead] == 0) and torch.all(stats.logp[dead] == 0) and torch.all(stats.entropy[dead] == 0)
    noisy = hidden.clone()
    noisy[dead] = 1e4  # garbage (huge logits) in the dropped rows must not reach anything
    stats2, dh2, dw2 = run(noisy, ids_ignored.masked_fill(mask == 0, 7), mask)
    assert torch.equal(stats.logp, stats2.logp) and torch.equal(dh, dh2) and torch.equal(dw, dw2)
