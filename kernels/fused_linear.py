"""fused_linear_grpo_loss: the GRPO loss from hidden states and the LM head, never building (N, V) logits.

`FusedLinearLogprobsFunction` maps (hidden (N, H), weight (V, H), bias (V,) | None) to logp (N,) and
entropy (N,) in chunks of `chunk_tokens` rows: the forward computes each chunk's logits into one reused
(C, V) buffer, runs the backend's `logprobs_forward` on it and keeps only lse (N,); the backward
recomputes each chunk's logits, turns them into dlogits in place with `logprobs_backward(out=chunk)`,
and accumulates d_weight (V, H) in fp32. d_hidden = dlogits @ W has the vocabulary as its inner dimension
(K = V, up to 150k terms): one fp32 GEMM over it carries an error of about sqrt(K) * 2^-24 relative that
depends on the BLAS kernel, so it is summed over `VOCAB_BLOCK`-wide slices of the vocabulary, each an fp32
GEMM with K = 1024 (error about sqrt(1024) * 2^-24 = 1.9e-6 relative, typically well under), and the
slices are added in float64 (a (C, H) buffer, cheap next to the GEMMs). The loss math on (B, T) is
`kernels.loss`.
Peak extra memory: one (C, V) chunk buffer + d_weight in fp32 + the launchers' small temporaries.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .dispatch import launchers
from .errors import OptionError, ShapeError
from .loss import IS_CAP, GRPOStats, check_options, grpo_loss_from_logp

CHUNK_BYTES = 128 << 20  # the (C, V) logits chunk buffer: ~128 MiB whatever V is
VOCAB_BLOCK = 1024  # inner-dimension slice of d_hidden = dlogits @ W (see the module docstring)


def default_chunk_tokens(vocab: int, dtype: torch.dtype = torch.float32) -> int:
    """Rows per chunk so that the (C, V) logits buffer stays near CHUNK_BYTES."""
    return max(1, CHUNK_BYTES // (vocab * torch.finfo(dtype).bits // 8))


def _blocked_mm(dlogits: Tensor, weight: Tensor) -> Tensor:
    """(C, H) fp32 = dlogits (C, V) @ weight (V, H): fp32 GEMMs over VOCAB_BLOCK-wide slices of V, added in float64."""
    acc = torch.zeros(dlogits.shape[0], weight.shape[1], dtype=torch.float64, device=dlogits.device)  # (C, H)
    for lo in range(0, weight.shape[0], VOCAB_BLOCK):
        acc += torch.mm(dlogits[:, lo : lo + VOCAB_BLOCK], weight[lo : lo + VOCAB_BLOCK]).float()
    return acc.float()


def _chunk_logits(hidden: Tensor, weight: Tensor, bias: Tensor | None, out: Tensor) -> Tensor:
    """out (C, V) = hidden (C, H) @ weight.T (+ bias)."""
    if bias is None:
        return torch.mm(hidden, weight.t(), out=out)
    return torch.addmm(bias, hidden, weight.t(), out=out)


class FusedLinearLogprobsFunction(torch.autograd.Function):
    """(hidden (N, H), weight (V, H), bias (V,) | None, ids (N,)) -> (logp (N,) fp32, entropy (N,) fp32)."""

    @staticmethod
    def forward(ctx, hidden, weight, bias, ids, temperature: float, chunk_tokens: int):  # type: ignore[override]
        ops = launchers(hidden.device)
        n, vocab = hidden.shape[0], weight.shape[0]
        logp = torch.empty(n, dtype=torch.float32, device=hidden.device)  # (N,)
        lse, entropy = torch.empty_like(logp), torch.empty_like(logp)  # (N,)
        buf = torch.empty(min(chunk_tokens, n), vocab, dtype=hidden.dtype, device=hidden.device)  # (C, V)
        for start in range(0, n, chunk_tokens):
            stop = min(start + chunk_tokens, n)
            logits = _chunk_logits(hidden[start:stop], weight, bias, buf[: stop - start])  # (C, V)
            logp[start:stop], lse[start:stop], entropy[start:stop] = ops.logprobs_forward(logits, ids[start:stop], temperature)
        ctx.save_for_backward(hidden, weight, bias, ids, lse)
        ctx.temperature, ctx.chunk_tokens = temperature, chunk_tokens
        ctx.mark_non_differentiable(entropy)
        return logp, entropy

    @staticmethod
    def backward(ctx, grad_logp: Tensor, grad_entropy: Tensor | None):  # type: ignore[override]
        hidden, weight, bias, ids, lse = ctx.saved_tensors
        need_h, need_w, need_b = ctx.needs_input_grad[:3]
        ops = launchers(hidden.device)
        n, vocab, step = hidden.shape[0], weight.shape[0], ctx.chunk_tokens
        f32 = dict(dtype=torch.float32, device=hidden.device)
        d_hidden = torch.empty(hidden.shape, **f32) if need_h else None  # (N, H)
        d_weight = torch.zeros(weight.shape, **f32) if need_w else None  # (V, H)
        d_bias = torch.zeros(vocab, **f32) if need_b else None  # (V,)
        buf = torch.empty(min(step, n), vocab, dtype=hidden.dtype, device=hidden.device)  # (C, V)
        for start in range(0, n, step):
            stop = min(start + step, n)
            h = hidden[start:stop]  # (C, H)
            logits = _chunk_logits(h, weight, bias, buf[: stop - start])  # (C, V)
            dlogits = ops.logprobs_backward(logits, ids[start:stop], lse[start:stop], grad_logp[start:stop], ctx.temperature, out=logits)
            if need_h:
                d_hidden[start:stop] = _blocked_mm(dlogits, weight)  # (C, H)
            if need_w:
                if dlogits.dtype == torch.float32:
                    d_weight.addmm_(dlogits.t(), h)  # (V, H) += (V, C) @ (C, H)
                else:
                    d_weight.add_(torch.mm(dlogits.t(), h))  # low-precision product, fp32 accumulation
            if need_b:
                d_bias.add_(dlogits.sum(0, dtype=torch.float32))
        cast = lambda g, like: None if g is None else g.to(like.dtype)  # noqa: E731
        return cast(d_hidden, hidden), cast(d_weight, weight), None if bias is None else cast(d_bias, bias), None, None, None


def fused_linear_grpo_loss(
    hidden: Tensor,
    weight: Tensor,
    ids: Tensor,
    old_logp: Tensor | None,
    ref_logp: Tensor | None,
    advantages: Tensor,
    mask: Tensor,
    *,
    bias: Tensor | None = None,
    chunk_tokens: int | None = None,
    loss_type: str = "grpo",
    eps_low: float = 0.2,
    eps_high: float = 0.2,
    delta: float | None = None,
    beta: float = 0.0,
    temperature: float = 1.0,
    ratio_level: str = "token",
    normalizer: float | Tensor | None = None,
    behavior_logp: Tensor | None = None,
    is_level: str = "token",
    is_mode: str = "truncate",
    is_cap: float = IS_CAP,
    top_entropy_quantile: float = 1.0,
) -> tuple[Tensor, GRPOStats]:
    """GRPO loss from hidden (B, T, H) and the LM head weight (V, H) [+ bias (V,)]: (loss, GRPOStats).

    `chunk_tokens` defaults to `default_chunk_tokens(V)` (a ~128 MiB logits chunk). The off-policy
    (`behavior_logp`, `is_*`) and `top_entropy_quantile` options are those of `kernels.loss.grpo_loss_from_logp`.
    """
    check_options(
        loss_type, ratio_level, beta, ref_logp, eps_low, eps_high,
        is_level=is_level, is_mode=is_mode, is_cap=is_cap, top_entropy_quantile=top_entropy_quantile,
    )  # fmt: skip
    if hidden.dim() != 3 or weight.dim() != 2 or hidden.shape[-1] != weight.shape[1]:
        raise ShapeError(f"need hidden (B, T, H) and weight (V, H), got {tuple(hidden.shape)} and {tuple(weight.shape)}")
    if ids.shape != hidden.shape[:2] or ids.dtype != torch.int64:
        raise ShapeError(f"ids must be int64 (B, T) = {tuple(hidden.shape[:2])}, got {ids.dtype} {tuple(ids.shape)}")
    if bias is not None and bias.shape != weight.shape[:1]:
        raise ShapeError(f"bias {tuple(bias.shape)} must be (V,) = ({weight.shape[0]},)")
    if temperature <= 0:
        raise OptionError(f"temperature must be > 0, got {temperature}")
    if weight.dtype != hidden.dtype:
        raise ShapeError(f"hidden {hidden.dtype} and weight {weight.dtype} must share a dtype")
    step = chunk_tokens or default_chunk_tokens(weight.shape[0], hidden.dtype)
    bsz, seq = ids.shape
    logp, entropy = FusedLinearLogprobsFunction.apply(
        hidden.reshape(bsz * seq, -1), weight, bias, ids.reshape(-1), float(temperature), int(step)
    )  # (N,), (N,)
    return grpo_loss_from_logp(
        logp.view(bsz, seq), old_logp, ref_logp, advantages, mask,
        loss_type=loss_type, eps_low=eps_low, eps_high=eps_high, delta=delta, beta=beta,
        ratio_level=ratio_level, normalizer=normalizer, entropy=entropy.view(bsz, seq), behavior_logp=behavior_logp,
        is_level=is_level, is_mode=is_mode, is_cap=is_cap, top_entropy_quantile=top_entropy_quantile,
    )  # fmt: skip
