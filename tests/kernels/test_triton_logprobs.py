"""The Triton kernels against the float64 oracle (tests/kernels/oracle.py), in values and gradients.

Launcher level: `kernels.triton_logprobs` (fp32/bf16, odd vocabularies, row strides, temperature, -inf
logits, in-place backward). API level: `grpo_loss` and `fused_linear_grpo_loss` under
`use_backend("triton")` against TRL's loss in float64. Never one backend against the other: each is held
to the error model, so a weaker Torch side cannot fail a Triton test (issue 10).

Each test runs on two devices: "cpu" runs the kernels in the Triton interpreter (TRITON_INTERPRET=1),
"cuda" runs them compiled (skipped without a GPU). Triton fixes interpreted vs compiled when `@triton.jit`
decorates (at import), so `_triton_mode` swaps in the matching function objects for each test: no
subprocess, and it works whatever imported triton first in the full suite.
"""

from __future__ import annotations

import pytest
import torch
import triton.language as tl
from triton.runtime.interpreter import InterpretedFunction
from triton.runtime.jit import JITFunction

from kernels import LOSS_TYPES, fused_linear_grpo_loss, grpo_loss, triton_logprobs, triton_token_loss
from kernels.dispatch import use_backend
from kernels.errors import OptionError, ShapeError

from oracle import BF16_CAST, assert_within, dlogits_tol, entropy_tol, logp_tol, reference, triton_logp_tol
from test_fused_linear import FUSED_GRAD_TOL, fused_logits_error
from test_loss import LOSS_TOL, GRAD_TOL, eps_for, live_rows, trl_loss64

KERNELS = [(m, m.JIT_FUNCTIONS) for m in (triton_logprobs, triton_token_loss)]  # every module with @triton.jit functions
NO_CUDA = "no CUDA device: the compiled kernels run only on a GPU (the interpreter runs them on cpu here)"
_CONVERTED: dict[tuple[int, type], object] = {}


def _as(kind: type, fn: object) -> object:
    """`fn` (a JITFunction or InterpretedFunction) rebuilt as `kind` from its Python source, once per process."""
    if isinstance(fn, kind):
        return fn
    key = (id(fn.fn), kind)
    if key not in _CONVERTED:
        _CONVERTED[key] = kind(fn.fn)
    return _CONVERTED[key]


def _triton_mode(monkeypatch, interpret: bool) -> None:
    """Run Triton interpreted (cpu) or compiled (cuda) for one test, whatever mode triton was imported in.

    `@triton.jit` picks interpreted vs compiled when it decorates, reading TRITON_INTERPRET at import time,
    both for our kernels and for triton's own jit'd library (tl.max, tl.sum). This swaps in the matching
    objects, rebuilt from the same Python source, and sets TRITON_INTERPRET for the code that reads it at
    call time (kernels.dispatch, triton's constexpr functions); monkeypatch undoes it all after the test.
    """
    kind = InterpretedFunction if interpret else JITFunction
    if interpret:
        monkeypatch.setenv("TRITON_INTERPRET", "1")
    else:
        monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    for name, value in list(vars(tl).items()):
        if isinstance(value, (JITFunction, InterpretedFunction)):
            monkeypatch.setattr(tl, name, _as(kind, value))
    for module, names in KERNELS:
        for name in names:
            monkeypatch.setattr(module, name, _as(kind, getattr(module, name)))


@pytest.fixture(
    params=["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason=NO_CUDA))]
)
def device(request, monkeypatch) -> torch.device:
    _triton_mode(monkeypatch, interpret=request.param == "cpu")
    return torch.device(request.param)


def _logits(n: int, v: int, dtype: torch.dtype, device: torch.device, seed: int = 0, pad: int = 0) -> torch.Tensor:
    """(n, v) logits with spread-out values; with pad > 0, a view into an (n, v + pad) buffer (row stride v + pad)."""
    gen = torch.Generator().manual_seed(seed)
    full = (torch.randn(n, v + pad, generator=gen) * 4).to(dtype).to(device)
    return full[:, :v]


def _ids(n: int, v: int, device: torch.device, seed: int = 1) -> torch.Tensor:
    ids = torch.randint(0, v, (n,), generator=torch.Generator().manual_seed(seed))
    ids[0] = v - 1  # the last vocab entry: the masked tail of the last chunk
    return ids.to(device)


def _check_launchers(logits, ids, grad, temperature) -> None:
    """Forward (logp, lse, entropy) and backward (dlogits) against the float64 oracle on the same inputs."""
    got = triton_logprobs.logprobs_forward(logits, ids, temperature)
    want_logp, want_lse, want_entropy = (w.cpu() for w in reference(logits.cpu(), ids.cpu(), temperature))
    for g in got:
        assert g.dtype == torch.float32 and g.shape == ids.shape
    assert_within(got[0].cpu(), want_logp, triton_logp_tol(want_logp, logits.cpu(), ids.cpu(), temperature), "logp")
    assert_within(got[1].cpu(), want_lse, triton_logp_tol(want_lse, logits.cpu(), ids.cpu(), temperature), "lse")
    assert_within(got[2].cpu(), want_entropy, entropy_tol(want_entropy), "entropy")

    dlogits = triton_logprobs.logprobs_backward(logits, ids, got[1], grad, temperature)
    assert dlogits.dtype == logits.dtype and dlogits.shape == logits.shape
    x64 = logits.detach().cpu().double().requires_grad_(True)
    reference(x64, ids.cpu(), temperature)[0].backward(grad.cpu().double())
    tol = dlogits_tol(want_lse, grad.cpu(), temperature, logits.dtype)
    assert_within(dlogits.float().cpu(), x64.grad, tol, "dlogits")


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("vocab", [1000, 50257])
@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_launchers_match_float64(device, dtype, vocab, temperature):
    _check_launchers(_logits(3, vocab, dtype, device), _ids(3, vocab, device), torch.tensor([0.5, -1.5, 2.0], device=device), temperature)


@pytest.mark.parametrize("offset", [1, 2, 3])
def test_misaligned_rows_match_float64(device, offset):
    """Rows starting 1-3 floats into a buffer (odd V: every row misaligned) read and round the same."""
    vocab = 5003
    gen = torch.Generator().manual_seed(offset)
    buf = (torch.randn(3 * vocab + offset, generator=gen) * 3).to(device)
    _check_launchers(buf[offset:].view(3, vocab), _ids(3, vocab, device), torch.tensor([1.0, -0.5, 2.0], device=device), 0.8)


def test_forward_matches_float64(device):
    """Independent of the Torch launchers: float64 log_softmax, with -inf logits (padded vocab) in the rows."""
    vocab, temperature = 5003, 0.9
    logits = _logits(4, vocab, torch.float32, device)
    logits[:, 4500:] = float("-inf")  # a whole chunk of the 4096-wide loop and the tail are -inf
    logits[2, :3000] = float("-inf")
    ids = _ids(4, 4500, device)
    logp, lse, entropy = triton_logprobs.logprobs_forward(logits, ids, temperature)

    want_logp, want_lse, want_entropy = reference(logits.cpu(), ids.cpu(), temperature)
    assert_within(logp.cpu(), want_logp, triton_logp_tol(want_logp, logits.cpu(), ids.cpu(), temperature), "logp")
    assert_within(lse.cpu(), want_lse, triton_logp_tol(want_lse, logits.cpu(), ids.cpu(), temperature), "lse")
    assert_within(entropy.cpu(), want_entropy, entropy_tol(want_entropy), "entropy")


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
def test_row_strides(device, dtype):
    """A row stride != V (a slice of a wider buffer, and every other row of it) reads the right elements."""
    vocab = 1000
    wide = _logits(6, vocab, dtype, device, pad=24)  # row stride 1024
    for logits in (wide, wide[::2]):  # row strides 1024 and 2048
        n = logits.shape[0]
        ids = _ids(n, vocab, device)
        _check_launchers(logits, ids, torch.linspace(-1, 1, n, device=device), 1.3)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
def test_backward_in_place(device, dtype):
    """out=logits overwrites the logits buffer with exactly the out-of-place dlogits."""
    vocab = 5000  # two chunks of 4096: the second chunk is read after the first was overwritten
    logits = _logits(3, vocab, dtype, device, pad=8)
    ids = _ids(3, vocab, device)
    grad = torch.tensor([1.0, 0.0, -3.0], device=device)
    _, lse, _ = triton_logprobs.logprobs_forward(logits, ids, 1.0)
    expected = triton_logprobs.logprobs_backward(logits, ids, lse, grad, 1.0)

    out = triton_logprobs.logprobs_backward(logits, ids, lse, grad, 1.0, out=logits)
    assert out.data_ptr() == logits.data_ptr()
    torch.testing.assert_close(logits, expected, atol=0, rtol=0)
    assert torch.all(logits[1] == 0)  # zero upstream gradient, zero dlogits


def test_launcher_errors(device):
    logits = _logits(2, 100, torch.float32, device)
    ids = _ids(2, 100, device)
    with pytest.raises(ShapeError, match="must be \\(N, V\\)"):
        triton_logprobs.logprobs_forward(logits[None], ids, 1.0)
    with pytest.raises(ShapeError, match="contiguous"):
        triton_logprobs.logprobs_forward(logits.t(), ids, 1.0)
    with pytest.raises(ShapeError, match="dtype"):
        triton_logprobs.logprobs_forward(logits.double(), ids, 1.0)
    with pytest.raises(ShapeError, match="ids must be"):
        triton_logprobs.logprobs_forward(logits, ids[:1], 1.0)
    with pytest.raises(OptionError, match="temperature"):
        triton_logprobs.logprobs_forward(logits, ids, 0.0)
    lse = torch.zeros(2, device=device)
    with pytest.raises(ShapeError, match="out must be"):
        triton_logprobs.logprobs_backward(logits, ids, lse, lse, 1.0, out=logits.half())
    empty = triton_logprobs.logprobs_forward(logits[:0], ids[:0], 1.0)
    assert all(t.shape == (0,) for t in empty)


@pytest.mark.skipif(not torch.cuda.is_available(), reason=NO_CUDA)
def test_int64_offsets_cuda(monkeypatch):
    """N * V > 2**31 elements: row offsets past the int32 range land on the right rows (CUDA only, ~4.3 GB)."""
    _triton_mode(monkeypatch, interpret=False)
    vocab = 151936
    n = (1 << 31) // vocab + 2
    logits = torch.randn(n, vocab, device="cuda", dtype=torch.bfloat16)
    ids = torch.randint(0, vocab, (n,), device="cuda")
    grad = torch.ones(n, device="cuda")
    tail = slice(n - 2, n)  # rows whose first element is past 2**31
    x64 = logits[tail].cpu().double().requires_grad_(True)
    want_logp, want_lse, want_entropy = reference(x64, ids[tail].cpu())
    want_logp.backward(grad[tail].cpu().double())
    got = triton_logprobs.logprobs_forward(logits, ids, 1.0)
    x_tail, ids_tail = logits[tail].cpu(), ids[tail].cpu()
    assert_within(got[0][tail].cpu(), want_logp.detach(), triton_logp_tol(want_logp.detach(), x_tail, ids_tail, 1.0), "logp")
    assert_within(got[1][tail].cpu(), want_lse.detach(), triton_logp_tol(want_lse.detach(), x_tail, ids_tail, 1.0), "lse")
    assert_within(got[2][tail].cpu(), want_entropy.detach(), entropy_tol(want_entropy.detach()), "entropy")
    triton_logprobs.logprobs_backward(logits, ids, got[1], grad, 1.0, out=logits)
    tol = dlogits_tol(want_lse.detach(), grad[tail].cpu(), 1.0, torch.bfloat16)
    assert_within(logits[tail].float().cpu(), x64.grad, tol, "dlogits")


# ---- public API: use_backend("triton") vs use_backend("torch") ----


@pytest.fixture
def triton_calls(monkeypatch) -> list[str]:
    """Names of the Triton launchers called during the test: proves use_backend("triton") reached them."""
    calls: list[str] = []
    for module, op in ((triton_logprobs, "logprobs"), (triton_token_loss, "token_loss")):
        for name in (f"{op}_forward", f"{op}_backward"):
            launcher = getattr(module, name)

            def spy(*args, _launcher=launcher, _name=name, **kwargs):
                calls.append(_name)
                return _launcher(*args, **kwargs)

            monkeypatch.setattr(module, name, spy)
    return calls


def launched(ratio_level: str = "token") -> list[str]:
    """The launchers grpo_loss calls: the fused token loss at token level, the logprob pass for GSPO."""
    op = "token_loss" if ratio_level == "token" else "logprobs"
    return [f"{op}_forward", f"{op}_backward"]


def _loss_inputs(device: torch.device, dtype: torch.dtype, vocab: int = 1000):
    """B=2, T=3 inputs: old/ref log-probs near the current ones (some ratios clip), a masked token per row."""
    gen = torch.Generator().manual_seed(3)
    logits = (torch.randn(2, 3, vocab, generator=gen) * 3).to(dtype)
    ids = torch.randint(0, vocab, (2, 3), generator=gen)
    logp = torch.log_softmax(logits.double(), -1).gather(-1, ids[..., None])[..., 0].float()
    old = logp + 0.4 * torch.randn(2, 3, generator=gen)
    ref = logp + 0.4 * torch.randn(2, 3, generator=gen)
    advantages = torch.tensor([1.0, -0.7])
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 0.0, 1.0]])
    return [t.to(device) for t in (logits, ids, old, ref, advantages, mask)]


def _run_loss(backend: str, inputs, **options):
    logits, ids, old, ref, advantages, mask = inputs
    leaf = logits.clone().requires_grad_(True)
    with use_backend(backend):
        loss, stats = grpo_loss(leaf, ids, old, ref, advantages, mask, **options)
        loss.backward()
    return loss.detach(), stats, leaf.grad


def _assert_matches_trl64(got, inputs, dtype, **options):
    """Loss, log-probs and dlogits against TRL's loss in float64 on the same (possibly bf16) logits."""
    loss, stats, grad = got
    logits, ids, old, ref, advantages, mask = (t.cpu() for t in inputs)
    x64 = logits.double().requires_grad_(True)
    loss64 = trl_loss64(x64, ids, old, ref, advantages, mask, **options)
    loss64.backward()
    assert abs(loss.item() - loss64.item()) <= LOSS_TOL
    temperature = options.get("temperature", 1.0)
    want_logp = reference(logits, ids, temperature)[0]
    live = live_rows(stats, mask.to(stats.logp.device), options.get("ratio_level", "token")).cpu()
    tol = triton_logp_tol(want_logp, logits, ids, temperature)
    assert_within(stats.logp.cpu()[live], want_logp[live], tol[live], "logp")
    assert grad.dtype == dtype
    scale = x64.grad.abs().max()
    bound = GRAD_TOL if dtype == torch.float32 else GRAD_TOL + BF16_CAST  # + one bf16 conversion of dlogits
    assert ((grad.double().cpu() - x64.grad).abs().max() / scale).item() <= bound


@pytest.mark.parametrize("loss_type", LOSS_TYPES)
@pytest.mark.parametrize("ratio_level", ["token", "sequence"])
@pytest.mark.parametrize("beta", [0.0, 0.04])
@pytest.mark.parametrize("delta", [None, 1.5], ids=["no-delta", "delta"])
def test_grpo_loss_triton_matches_trl64(device, triton_calls, loss_type, ratio_level, beta, delta):
    inputs = _loss_inputs(device, torch.float32)
    options = dict(loss_type=loss_type, ratio_level=ratio_level, beta=beta, delta=delta, temperature=0.9, **eps_for(loss_type))
    got = _run_loss("triton", inputs, **options)
    assert triton_calls == launched(ratio_level)
    # CISPO caps at eps_high >= 1 itself, which these ratios (all < 1 at temperature 0.9) never reach
    assert got[1].clipped_low.any() or got[1].clipped_high.any() or ratio_level == "sequence" or loss_type == "cispo"
    assert torch.all(got[2][0, 2] == 0) and torch.all(got[2][1, 1] == 0)  # masked tokens get no gradient
    _assert_matches_trl64(got, inputs, torch.float32, **options)


@pytest.mark.parametrize("loss_type", LOSS_TYPES)
@pytest.mark.parametrize("ratio_level", ["token", "sequence"])
def test_grpo_loss_bf16_triton_matches_trl64(device, triton_calls, loss_type, ratio_level):
    inputs = _loss_inputs(device, torch.bfloat16, vocab=1003)
    options = dict(loss_type=loss_type, ratio_level=ratio_level, beta=0.04, delta=1.5, **eps_for(loss_type))
    got = _run_loss("triton", inputs, **options)
    assert triton_calls == launched(ratio_level)
    _assert_matches_trl64(got, inputs, torch.bfloat16, **options)


def test_grpo_loss_inplace_backward(device, triton_calls):
    """inplace_backward=True gives exactly the out-of-place gradient, and it lives in the logits buffer."""
    inputs = _loss_inputs(device, torch.float32)
    want = _run_loss("triton", inputs, beta=0.04)
    logits, ids, old, ref, advantages, mask = inputs
    leaf = logits.clone().requires_grad_(True)
    with use_backend("triton"):
        loss, _ = grpo_loss(leaf * 1.0, ids, old, ref, advantages, mask, beta=0.04, inplace_backward=True)
        loss.backward()
    assert triton_calls == launched() * 2
    torch.testing.assert_close(loss.detach(), want[0], atol=0, rtol=0)  # same kernel, same inputs
    torch.testing.assert_close(leaf.grad, want[2], atol=0, rtol=0)


def test_fused_linear_triton_matches_float64(device, triton_calls):
    gen = torch.Generator().manual_seed(5)
    vocab, hidden_size = 1000, 16
    hidden = torch.randn(2, 3, hidden_size, generator=gen).to(device)
    weight = (0.5 * torch.randn(vocab, hidden_size, generator=gen)).to(device)
    _, ids, old, ref, advantages, mask = _loss_inputs(device, torch.float32, vocab)
    h, w = hidden.clone().requires_grad_(True), weight.clone().requires_grad_(True)
    with use_backend("triton"):
        loss, stats = fused_linear_grpo_loss(h, w, ids, old, ref, advantages, mask, beta=0.04, chunk_tokens=4)
        loss.backward()
    assert "logprobs_forward" in triton_calls and "logprobs_backward" in triton_calls
    h64, w64 = hidden.cpu().double().requires_grad_(True), weight.cpu().double().requires_grad_(True)
    loss64 = trl_loss64(h64 @ w64.T, ids.cpu(), old.cpu(), ref.cpu(), advantages.cpu(), mask.cpu(), beta=0.04)
    loss64.backward()
    assert abs(loss.item() - loss64.item()) <= LOSS_TOL
    logits64 = (h64 @ w64.T).detach()
    want_logp = torch.log_softmax(logits64, -1).gather(-1, ids.cpu()[..., None])[..., 0]
    tol = triton_logp_tol(want_logp, logits64, ids.cpu(), 1.0) + fused_logits_error(hidden.cpu(), weight.cpu())
    live = mask.cpu() > 0  # masked rows are dropped before the products: logp 0 there
    tol = tol.expand_as(want_logp) if torch.is_tensor(tol) else torch.full_like(want_logp, float(tol))
    assert_within(stats.logp.cpu()[live], want_logp[live], tol[live], "logp")
    assert (stats.logp.cpu()[~live] == 0).all()
    for got, want in ((h.grad, h64.grad), (w.grad, w64.grad)):
        assert ((got.double().cpu() - want).abs().max() / want.abs().max()).item() <= FUSED_GRAD_TOL


# ---- ignore index: id -100 rows are skipped (issue 12) ----


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("vocab", [1003, 5003])
def test_ignore_index_rows_launchers(device, dtype, vocab):
    """Rows with id -100 give logp = lse = entropy = 0 and zero dlogits (out of place and in place); the
    other rows match the float64 oracle. -inf and NaN in an ignored row prove its logits are never read."""
    n = 5
    logits = _logits(n, vocab, dtype, device, pad=3)
    ids = _ids(n, vocab, device)
    ignored = torch.tensor([1, 4])
    ids[ignored] = -100
    logits[1] = float("nan")
    logits[4] = float("-inf")
    keep = torch.tensor([0, 2, 3])
    grad = torch.tensor([0.5, -1.5, 2.0, 1.0, 3.0], device=device)
    got = triton_logprobs.logprobs_forward(logits, ids, 0.9)
    for g in got:
        assert torch.all(g[ignored] == 0)
    want_logp, want_lse, want_entropy = reference(logits[keep].cpu(), ids[keep].cpu(), 0.9)
    tol = triton_logp_tol(want_logp, logits[keep].cpu(), ids[keep].cpu(), 0.9)
    assert_within(got[0][keep].cpu(), want_logp, tol, "logp")
    assert_within(got[2][keep].cpu(), want_entropy, entropy_tol(want_entropy), "entropy")

    dlogits = triton_logprobs.logprobs_backward(logits, ids, got[1], grad, 0.9)
    assert torch.all(dlogits[ignored] == 0)
    x64 = logits[keep].detach().cpu().double().requires_grad_(True)
    reference(x64, ids[keep].cpu(), 0.9)[0].backward(grad[keep].cpu().double())
    assert_within(dlogits[keep].float().cpu(), x64.grad, dlogits_tol(want_lse, grad[keep].cpu(), 0.9, dtype), "dlogits")
    triton_logprobs.logprobs_backward(logits, ids, got[1], grad, 0.9, out=logits)  # in place: rows zeroed
    torch.testing.assert_close(logits, dlogits, atol=0, rtol=0)


@pytest.mark.parametrize("backend", ["triton", "torch"])
@pytest.mark.parametrize("loss_type", ["grpo", "dapo"])
def test_ignore_index_on_masked_tokens_gives_finite_loss(device, triton_calls, backend, loss_type):
    """-100 at the masked positions (HF labels): the same loss and gradient as with real ids there, and zero
    gradient rows on those positions, on both backends (Torch used to raise, Triton gave NaN)."""
    inputs = _loss_inputs(device, torch.float32, vocab=1003)
    logits, ids, old, ref, advantages, mask = inputs
    ignored_ids = ids.masked_fill(mask == 0, -100)
    options = dict(loss_type=loss_type, beta=0.04, temperature=0.9)
    want = _run_loss(backend, inputs, **options)
    got = _run_loss(backend, [logits, ignored_ids, old, ref, advantages, mask], **options)
    assert torch.isfinite(got[0]) and torch.isfinite(got[2]).all()
    assert torch.all(got[2][mask == 0] == 0) and torch.all(got[1].logp[mask == 0] == 0)
    x64 = logits.cpu().double().requires_grad_(True)  # the oracle sees the real ids: masked anyway
    loss64 = trl_loss64(x64, ids.cpu(), old.cpu(), ref.cpu(), advantages.cpu(), mask.cpu(), **options)
    loss64.backward()
    assert abs(got[0].item() - loss64.item()) <= LOSS_TOL
    assert ((got[2].double().cpu() - x64.grad).abs().max() / x64.grad.abs().max()).item() <= GRAD_TOL
    live = mask.bool()
    want_logp = reference(logits[live].cpu(), ids[live].cpu(), 0.9)[0]
    tol = triton_logp_tol(want_logp, logits[live].cpu(), ids[live].cpu(), 0.9)
    assert_within(got[1].logp[live].cpu(), want_logp, tol, "logp")
    assert torch.isfinite(want[0])


# ---- vocabulary loop: unmasked full BLOCK_V blocks + one masked tail block (issue 12 item 8) ----


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16], ids=["fp32", "bf16", "fp16"])
@pytest.mark.parametrize(
    "vocab, block_v",
    [(1003, 64), (1024, 64), (50, 64), (64, 64), (1003, 1024)],
    ids=["odd-tail", "no-tail", "tail-only", "one-block", "one-big-tail"],
)
def test_vocab_tail_path_matches_float64(device, monkeypatch, dtype, vocab, block_v):
    """A small BLOCK_V makes odd V run the unmasked main loop over full blocks and then the masked tail block
    (V % BLOCK_V entries); V a multiple of BLOCK_V runs no tail, V < BLOCK_V only the tail. Rows come from
    kernels.layout.aligned_rows (16-aligned stride, padding never read: filled with NaN). Ids in the last
    tail entry, the first tail entry and a main block; one ignored row (-100) gets a zero row in the tail too."""
    from kernels.layout import aligned_rows, padded_width

    monkeypatch.setattr(triton_logprobs, "_config", lambda v: (block_v, 4))
    n = 5
    buf = aligned_rows(n, vocab, dtype, device)
    assert buf.stride(0) == padded_width(vocab) and buf.stride(0) % 16 == 0
    buf.as_strided((n, buf.stride(0)), (buf.stride(0), 1)).fill_(float("nan"))  # padding columns
    buf.copy_(_logits(n, vocab, dtype, device, seed=vocab + block_v))
    ids = _ids(n, vocab, device)  # ids[0] = V - 1: the tail's last entry
    ids[1] = (vocab // block_v) * block_v if vocab % block_v else vocab - block_v  # first tail / last block entry
    ids[2] = min(3, vocab - 1)  # a main-loop block
    ids[3] = -100
    keep = torch.tensor([0, 1, 2, 4])
    grad = torch.tensor([0.5, -1.5, 2.0, 1.0, 3.0], device=device)
    _check_launchers(buf[keep], ids[keep], grad[keep], 0.8)

    got = triton_logprobs.logprobs_forward(buf, ids, 0.8)
    assert all(bool(g[3] == 0) for g in got)
    dlogits = triton_logprobs.logprobs_backward(buf, ids, got[1], grad, 0.8, out=buf)  # in place
    assert torch.all(dlogits[3] == 0) and torch.isfinite(dlogits.float()).all()
    pad = buf.as_strided((n, buf.stride(0)), (buf.stride(0), 1))[:, vocab:]
    assert torch.isnan(pad.float()).all()  # never written


def test_tail_block_all_neg_inf(device, monkeypatch):
    """A tail block (and a full block) of -inf logits (padded vocabulary) adds nothing, no NaN."""
    monkeypatch.setattr(triton_logprobs, "_config", lambda v: (64, 4))
    vocab = 1003
    logits = _logits(3, vocab, torch.float32, device)
    logits[:, 960:] = float("-inf")  # the whole tail block (960..1002) is -inf
    logits[1, 64:128] = float("-inf")  # a whole main block
    ids = _ids(3, 900, device)
    got = triton_logprobs.logprobs_forward(logits, ids, 1.0)
    want_logp, want_lse, want_entropy = reference(logits.cpu(), ids.cpu(), 1.0)
    assert_within(got[0].cpu(), want_logp, triton_logp_tol(want_logp, logits.cpu(), ids.cpu(), 1.0), "logp")
    assert_within(got[2].cpu(), want_entropy, entropy_tol(want_entropy), "entropy")
