"""The Torch launchers and `token_logprobs` against float64 log_softmax + gather.

Acceptance (issue 3, Torch side): log-prob max abs error <= 2e-6 for fp32 logits, gradients within 1e-5
of the largest float64 gradient; odd vocabularies (1000, 50257), bf16 logits, temperature != 1, row
strides and in-place backward.
"""

from __future__ import annotations

import pytest
import torch

from kernels import ShapeError, OptionError, token_logprobs, use_backend
from kernels import torch_logprobs as ops

LOGP_TOL = 2e-6
GRAD_TOL = 1e-5


@pytest.fixture(autouse=True)
def torch_backend():
    with use_backend("torch"):
        yield


def make(n: int, vocab: int, dtype=torch.float32, scale: float = 3.0, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    logits = (torch.randn(n, vocab, generator=gen) * scale).to(dtype)  # (N, V)
    ids = torch.randint(0, vocab, (n,), generator=gen)  # (N,)
    return logits, ids


def reference(logits: torch.Tensor, ids: torch.Tensor, temperature: float = 1.0):
    """float64 (logp, lse, entropy) of logits (..., V)."""
    z = logits.double() / temperature
    logsm = torch.log_softmax(z, dim=-1)
    logp = logsm.gather(-1, ids[..., None]).squeeze(-1)
    return logp, torch.logsumexp(z, dim=-1), -(logsm.exp() * logsm).sum(-1)


def rel_err(got: torch.Tensor, want: torch.Tensor) -> float:
    return ((got.double() - want).abs().max() / want.abs().max()).item()


@pytest.mark.parametrize(
    ("n", "vocab", "temperature"),
    [(37, 1000, 1.0), (9, 1000, 0.7), (3, 50257, 1.0), (2, 50257, 1.3), (5, 7, 1.0), (130, 64, 1.0)],
)
def test_forward_matches_float64(n: int, vocab: int, temperature: float) -> None:
    logits, ids = make(n, vocab)
    logp, lse, entropy = ops.logprobs_forward(logits, ids, temperature)
    want_logp, want_lse, want_entropy = reference(logits, ids, temperature)
    assert logp.dtype == lse.dtype == entropy.dtype == torch.float32
    assert (logp.double() - want_logp).abs().max().item() <= LOGP_TOL
    assert (lse.double() - want_lse).abs().max().item() <= LOGP_TOL * 2
    assert (entropy.double() - want_entropy).abs().max().item() <= 2e-5


@pytest.mark.parametrize(("n", "vocab", "temperature"), [(37, 1000, 1.0), (9, 1000, 0.7), (3, 50257, 1.0), (2, 50257, 0.6)])
def test_token_logprobs_gradient_matches_float64(n: int, vocab: int, temperature: float) -> None:
    logits, ids = make(n, vocab, seed=1)
    grad = torch.randn(n, generator=torch.Generator().manual_seed(2))  # (N,)
    x = logits.clone().requires_grad_(True)
    token_logprobs(x, ids, temperature).backward(grad)
    x64 = logits.double().requires_grad_(True)
    reference(x64, ids, temperature)[0].backward(grad.double())
    assert x.grad.dtype == torch.float32
    assert rel_err(x.grad, x64.grad) <= GRAD_TOL


def test_backward_launcher_in_place_and_into_out() -> None:
    logits, ids = make(11, 1000, seed=3)
    _, lse, _ = ops.logprobs_forward(logits, ids, 0.8)
    grad = torch.randn(11)
    fresh = ops.logprobs_backward(logits, ids, lse, grad, 0.8)
    out = torch.full_like(logits, float("nan"))
    assert ops.logprobs_backward(logits, ids, lse, grad, 0.8, out=out) is out
    buf = logits.clone()
    assert ops.logprobs_backward(buf, ids, lse, grad, 0.8, out=buf) is buf
    torch.testing.assert_close(out, fresh, rtol=0, atol=0)
    torch.testing.assert_close(buf, fresh, rtol=0, atol=0)
    assert fresh.sum(-1).abs().max() <= 1e-5 * grad.abs().max() / 0.8  # softmax gradient rows sum to 0


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_low_precision_logits_give_fp32_close_to_float64(dtype: torch.dtype) -> None:
    logits, ids = make(23, 1000, dtype=dtype, seed=4)
    x = logits.clone().requires_grad_(True)
    logp, entropy = token_logprobs(x, ids, 0.9, with_entropy=True)
    want_logp, _, want_entropy = reference(logits, ids, 0.9)  # float64 of the same low-precision values
    assert logp.dtype == entropy.dtype == torch.float32
    assert (logp.double() - want_logp).abs().max().item() <= LOGP_TOL
    assert (entropy.double() - want_entropy).abs().max().item() <= 2e-5
    grad = torch.randn(23)
    logp.backward(grad)
    x64 = logits.double().requires_grad_(True)
    reference(x64, ids, 0.9)[0].backward(grad.double())
    assert x.grad.dtype == dtype
    assert rel_err(x.grad.float(), x64.grad) <= 1e-2  # dlogits rounded to the logits dtype


@pytest.mark.parametrize(
    "view",
    [
        pytest.param(lambda t: t[:, :8, :1000], id="vocab-slice-row-stride"),
        pytest.param(lambda t: t[:, :-1, :1000], id="time-slice-one-view-per-sequence"),
        pytest.param(lambda t: t[:, :8, :1000].transpose(0, 1), id="transposed-batch"),
        pytest.param(lambda t: t[1:, :, 1:], id="storage-offset"),
        pytest.param(lambda t: t[:, 1:, 1:], id="storage-offset-per-sequence"),
    ],
)
def test_strided_logits_match_a_contiguous_copy(view) -> None:
    base, _ = make(4 * 9, 1001, seed=5)  # (4, 9, 1001) viewed below
    strided_src = base.view(4, 9, 1001).clone().requires_grad_(True)
    contiguous_src = strided_src.detach().clone().requires_grad_(True)
    ids = torch.randint(0, 1000, view(strided_src).shape[:-1])
    got = token_logprobs(view(strided_src), ids, 0.7)
    want = token_logprobs(view(contiguous_src).contiguous(), ids, 0.7)
    torch.testing.assert_close(got, want, rtol=0, atol=0)
    grad = torch.randn(ids.shape)
    got.backward(grad)
    want.backward(grad)
    torch.testing.assert_close(strided_src.grad, contiguous_src.grad, rtol=0, atol=0)


def test_inplace_backward_gives_the_same_gradient_and_reuses_the_buffer() -> None:
    logits, ids = make(12, 1000, seed=6)
    leaf_a = logits.view(3, 4, 1000).clone().requires_grad_(True)
    leaf_b = leaf_a.detach().clone().requires_grad_(True)
    grad = torch.randn(3, 4)
    buf_a = leaf_a * 1.0  # non-leaf logits buffer, as from an LM head
    token_logprobs(buf_a, ids.view(3, 4), inplace_backward=True).backward(grad)
    token_logprobs(leaf_b * 1.0, ids.view(3, 4)).backward(grad)
    torch.testing.assert_close(leaf_a.grad, leaf_b.grad, rtol=0, atol=0)
    assert not torch.equal(buf_a.detach(), leaf_a.detach())  # the logits buffer now holds dlogits


def test_entropy_is_not_differentiable_and_optional() -> None:
    logits, ids = make(4, 50)
    x = logits.requires_grad_(True)
    logp = token_logprobs(x, ids)
    assert isinstance(logp, torch.Tensor) and logp.shape == (4,)
    _, entropy = token_logprobs(x, ids, with_entropy=True)
    assert not entropy.requires_grad


def test_bad_inputs_raise_typed_errors() -> None:
    logits, ids = make(4, 50)
    with pytest.raises(ShapeError, match="ids"):
        token_logprobs(logits, ids[:3])
    with pytest.raises(ShapeError, match="int64"):
        token_logprobs(logits, ids.int())
    with pytest.raises(ShapeError, match="dtype"):
        token_logprobs(logits.double(), ids)
    with pytest.raises(OptionError, match="temperature"):
        token_logprobs(logits, ids, 0.0)


@pytest.mark.parametrize("threads", [1, 2])
def test_small_chunks_over_threads_give_the_same_results(monkeypatch: pytest.MonkeyPatch, threads: int) -> None:
    logits, ids = make(37, 1000, seed=8)
    grad = torch.randn(37)
    whole = ops.logprobs_forward(logits, ids, 0.9)
    whole_d = ops.logprobs_backward(logits, ids, whole[1], grad, 0.9)
    before = torch.get_num_threads()
    monkeypatch.setattr(ops, "CHUNK_ELEMENTS", 3000)  # 3 rows per chunk: 13 chunks shared by the threads
    torch.set_num_threads(threads)
    try:
        chunked = ops.logprobs_forward(logits.requires_grad_(True), ids, 0.9)  # grad mode on: must not matter
        chunked_d = ops.logprobs_backward(logits, ids, chunked[1], grad, 0.9)
        assert torch.get_num_threads() == threads  # restored after the pool ran
    finally:
        torch.set_num_threads(before)
    for got, want in zip((*chunked, chunked_d), (*whole, whole_d)):
        torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-7)
    assert (chunked[0].double() - reference(logits.detach(), ids, 0.9)[0]).abs().max().item() <= LOGP_TOL


def test_chunked_bf16_backward_over_threads_matches_float64(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ops, "CHUNK_ELEMENTS", 2048)
    logits, ids = make(9, 1000, dtype=torch.bfloat16, seed=9)
    x = logits.clone().requires_grad_(True)
    logp = token_logprobs(x, ids, 1.1)
    grad = torch.randn(9)
    logp.backward(grad)
    x64 = logits.double().requires_grad_(True)
    reference(x64, ids, 1.1)[0].backward(grad.double())
    assert (logp.double() - reference(logits, ids, 1.1)[0]).abs().max().item() <= LOGP_TOL
    assert rel_err(x.grad.float(), x64.grad) <= 1e-2

