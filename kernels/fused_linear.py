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
`kernels.loss`. That is the fp32-weight path.
With bf16/fp16 hidden and weight (the model's precision) every product keeps them as operands: logits =
h @ W.T, d_hidden = dlogits @ W and d_weight += dlogits.T @ h, with dlogits rounded once to the operand
dtype. On CUDA they run with `out_dtype=torch.float32` (cuBLAS accumulates in fp32 and writes fp32; d_weight
accumulates in place through `torch.addmm(..., out=d_weight)`, no (V, H) temporary per chunk). The CPU has
no such kernel: its low-precision GEMM (fp32 accumulation) writes the operand dtype, which is widened to fp32
(one extra rounding per element; d_weight through one (V, H) scratch allocated once).
Peak extra memory: the (C, V) fp32 chunk buffer (+ a (C, V) operand-dtype copy for bf16) + d_weight in fp32
+ the launchers' small temporaries.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .dispatch import launchers
from .errors import OptionError, ShapeError
from .layout import aligned_rows
from .loss import IS_CAP, GRPOStats, check_options, grpo_loss_from_logp

VOCAB_BLOCK = 1024  # inner-dimension slice of d_hidden = dlogits @ W (see the module docstring)
CHUNK_CAP_BYTES = 384 << 20  # most the per-chunk (C, V) buffers may take (fp32 logits + the bf16 dlogits copy)
ROW_ALIGN = 128  # chunk rows are a multiple of a tensor-core tile
HBM_BYTES_PER_S = 3.35e12  # H100 SXM
PEAK_FLOPS = {torch.bfloat16: 989e12, torch.float16: 989e12, torch.float32: 67e12}  # H100 SXM dense, no TF32


def default_chunk_tokens(vocab: int, dtype: torch.dtype = torch.float32, hidden: int = 4096) -> int:
    """Rows C per chunk from the FLOP-per-byte balance of the chunk's logits GEMM, within CHUNK_CAP_BYTES.

    The GEMM (C, H) @ (H, V) does 2 C V H FLOPs and moves 2 C H + 2 V H bytes of bf16 operands plus 4 C V
    bytes of fp32 logits (which the logprob kernels then read back, memory-bound whatever C is). With V >> C
    its intensity is 2 C V H / (2 V H + 4 C V) = C H / (H + 2 C) FLOP/byte (operands of 2 bytes; 4 bytes
    in fp32: C H / (2 H + 2 C)), which must reach the ridge R = peak FLOP/s / HBM bytes/s for the GEMM to
    stay compute-bound: on an H100, R = 989e12 / 3.35e12 = 295 in bf16 (20 in fp32 without TF32), hence
    C >= R H / (H - 2 R): for H = 4096, C >= 345 -> 384 rows (a (384, 151936) fp32 buffer + its bf16
    copy: 350 MB); for H = 8192, 318 -> 384. With H <= 2 R (e.g. H = 256) no C makes it compute-bound: the
    logits traffic dominates, so C = H rows (one re-read of W per chunk costs <= 1/4 of that chunk's logits
    traffic), at least ROW_ALIGN. C is rounded up to ROW_ALIGN and capped so the buffers stay within
    CHUNK_CAP_BYTES (C = 1 for absurd V).
    """
    ridge = PEAK_FLOPS.get(dtype, PEAK_FLOPS[torch.float32]) / HBM_BYTES_PER_S
    size = 2 if dtype in (torch.bfloat16, torch.float16) else 4  # operand bytes
    # bf16: C H / (H + 2 C) >= R  <=>  C >= R H / (H - 2 R);  fp32: C H / (2 H + 2 C) >= R  <=>  C >= 2 R H / (H - 2 R)
    rows = ridge * (size / 2) * hidden / (hidden - 2 * ridge) if hidden > 2 * ridge else hidden
    rows = max(ROW_ALIGN, -(-int(rows + 0.999) // ROW_ALIGN) * ROW_ALIGN)
    per_row = vocab * (4 + (2 if size == 2 else 0))  # fp32 logits (+ the bf16 dlogits copy)
    return max(1, min(rows, CHUNK_CAP_BYTES // per_row))


_FP32_OUT: dict[tuple[str, str], bool] = {}  # (device type, op) -> does the backend run it with out_dtype=float32


def _fp32_out(device: torch.device, op: str) -> bool:
    """Whether `torch.mm` / `torch.addmm` take low-precision operands with out_dtype=torch.float32 here (CUDA
    in recent PyTorch: cuBLAS accumulates in fp32 and writes fp32; the CPU has no such kernel)."""
    key = (device.type, op)
    if key not in _FP32_OUT:
        a = torch.ones(2, 2, dtype=torch.bfloat16, device=device)
        acc = torch.zeros(2, 2, dtype=torch.float32, device=device)
        try:
            if op == "mm":
                torch.mm(a, a, out_dtype=torch.float32, out=acc)
            else:
                torch.addmm(acc, a, a, out_dtype=torch.float32, out=acc)
            _FP32_OUT[key] = bool((acc == 2).all())
        except (RuntimeError, TypeError, NotImplementedError):
            _FP32_OUT[key] = False
    return _FP32_OUT[key]


def _mm_into(a: Tensor, b: Tensor, out: Tensor, scratch: Tensor | None) -> Tensor:
    """out (M, N) fp32 = a (M, K) @ b (K, N), a and b in their own dtype (bf16 operands stay bf16).

    fp32 operands: one fp32 GEMM. Low precision on CUDA: out_dtype=float32 (fp32 accumulation and output).
    Elsewhere: the backend's low-precision GEMM (fp32 accumulation on the CPU too) writes `scratch` (M, N)
    in the operands' dtype, rounded once per element, and that is widened into `out`.
    """
    if a.dtype == torch.float32:
        return torch.mm(a, b, out=out)
    if _fp32_out(a.device, "mm"):
        return torch.mm(a, b, out_dtype=torch.float32, out=out)
    assert scratch is not None
    return out.copy_(torch.mm(a, b, out=scratch))


def _blocked_mm(dlogits: Tensor, weight: Tensor) -> Tensor:
    """(C, H) fp32 = dlogits (C, V) @ weight (V, H): fp32 GEMMs over VOCAB_BLOCK-wide slices of V, added in float64."""
    acc = torch.zeros(dlogits.shape[0], weight.shape[1], dtype=torch.float64, device=dlogits.device)
    for lo in range(0, weight.shape[0], VOCAB_BLOCK):
        acc += torch.mm(dlogits[:, lo : lo + VOCAB_BLOCK], weight[lo : lo + VOCAB_BLOCK]).float()
    return acc.float()


def _chunk_logits(hidden: Tensor, weight: Tensor, bias: Tensor | None, out: Tensor, scratch: Tensor | None) -> Tensor:
    """out (C, V) fp32 = hidden (C, H) @ weight.T (+ bias), the product in the operands' dtype."""
    if bias is None or hidden.dtype != torch.float32:
        _mm_into(hidden, weight.t(), out, scratch)
        return out if bias is None else out.add_(bias)
    return torch.addmm(bias, hidden, weight.t(), out=out)


class FusedLinearLogprobsFunction(torch.autograd.Function):
    """(hidden (N, H), weight (V, H), bias (V,) | None, ids (N,)) -> (logp (N,) fp32, entropy (N,) fp32).

    hidden and weight share a dtype; every product keeps it as its operand dtype (bf16 stays bf16) with an
    fp32 result: logits, dlogits and d_weight are fp32 whatever the operands are.
    """

    @staticmethod
    def forward(ctx, hidden, weight, bias, ids, temperature: float, chunk_tokens: int):  # type: ignore[override]
        ops = launchers(hidden.device)
        n, vocab = hidden.shape[0], weight.shape[0]
        logp = torch.empty(n, dtype=torch.float32, device=hidden.device)  # (N,)
        lse, entropy = torch.empty_like(logp), torch.empty_like(logp)  # (N,)
        buf, scratch = _buffers(min(chunk_tokens, n), vocab, hidden)  # (C, V) fp32, (C, V) operand dtype | None
        for start in range(0, n, chunk_tokens):
            stop = min(start + chunk_tokens, n)
            c = stop - start
            logits = _chunk_logits(hidden[start:stop], weight, bias, buf[:c], None if scratch is None else scratch[:c])
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
        low = hidden.dtype != torch.float32  # bf16/fp16 operands
        f32 = dict(dtype=torch.float32, device=hidden.device)
        d_hidden = torch.empty(hidden.shape, **f32) if need_h else None  # (N, H)
        d_weight = torch.zeros(weight.shape, **f32) if need_w else None  # (V, H)
        d_bias = torch.zeros(vocab, **f32) if need_b else None  # (V,)
        buf, dl_low = _buffers(min(step, n), vocab, hidden)  # (C, V) fp32 logits -> dlogits; (C, V) bf16 copy
        native = low and _fp32_out(hidden.device, "mm")
        h_scratch = None if not low or native or not need_h else torch.empty(min(step, n), hidden.shape[1], dtype=hidden.dtype, device=hidden.device)
        accumulate = low and need_w and _fp32_out(hidden.device, "addmm")
        w_scratch = None if not low or not need_w or accumulate or native else torch.empty_like(weight)  # (V, H) once
        w_f32 = None if not low or not need_w or accumulate or not native else torch.empty_like(d_weight)  # (V, H) once
        for start in range(0, n, step):
            stop = min(start + step, n)
            c, h = stop - start, hidden[start:stop]  # (C, H)
            logits = _chunk_logits(h, weight, bias, buf[:c], None if dl_low is None else dl_low[:c])  # (C, V) fp32
            dlogits = ops.logprobs_backward(logits, ids[start:stop], lse[start:stop], grad_logp[start:stop], ctx.temperature, out=logits)
            if need_b:
                d_bias.add_(dlogits.sum(0, dtype=torch.float32))
            if not low:
                if need_h:
                    d_hidden[start:stop] = _blocked_mm(dlogits, weight)  # (C, H)
                if need_w:
                    d_weight.addmm_(dlogits.t(), h)  # (V, H) += (V, C) @ (C, H)
                continue
            dl = dl_low[:c].copy_(dlogits)  # (C, V) the operand dtype: one rounding per element
            if need_h:
                _mm_into(dl, weight, d_hidden[start:stop], None if h_scratch is None else h_scratch[:c])  # (C, H)
            if accumulate:
                torch.addmm(d_weight, dl.t(), h, out_dtype=torch.float32, out=d_weight)  # fp32 += (V, C) @ (C, H), in place
            elif need_w:
                d_weight.add_(_mm_into(dl.t(), h, w_f32, None) if native else torch.mm(dl.t(), h, out=w_scratch))
        cast = lambda g, like: None if g is None else g.to(like.dtype)  # noqa: E731
        return cast(d_hidden, hidden), cast(d_weight, weight), None if bias is None else cast(d_bias, bias), None, None, None


def _buffers(rows: int, vocab: int, hidden: Tensor) -> tuple[Tensor, Tensor | None]:
    """The chunk's (C, V) fp32 logits buffer and, for low-precision operands, a (C, V) buffer in their dtype
    (the CPU's low-precision GEMM output in the forward, the dlogits operand copy in the backward)."""
    buf = aligned_rows(rows, vocab, torch.float32, hidden.device)  # 16-element row stride: vector loads at odd V
    return buf, None if hidden.dtype == torch.float32 else aligned_rows(rows, vocab, hidden.dtype, hidden.device)


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

    Rows with mask == 0 or a negative id (HF's -100) are dropped before any product: logp 0, entropy 0,
    zero gradient, and the other rows' results do not depend on them. `chunk_tokens` defaults to
    `default_chunk_tokens(V, dtype, H)` (FLOP-per-byte balance, see there). The off-policy
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
    if mask.shape != ids.shape:
        raise ShapeError(f"mask {tuple(mask.shape)} must be (B, T) = {tuple(ids.shape)}")
    step = chunk_tokens or default_chunk_tokens(weight.shape[0], hidden.dtype, hidden.shape[-1])
    bsz, seq = ids.shape
    flat_ids, flat_h = ids.reshape(-1), hidden.reshape(bsz * seq, -1)  # (N,), (N, H)
    keep = ((mask.reshape(-1) != 0) & (flat_ids >= 0)).nonzero().squeeze(1)  # (N',) rows that count
    dropped = keep.numel() < flat_ids.numel()
    if dropped:  # gather the live rows once: masked rows cost no GEMM, no kernel, no logits
        flat_h, flat_ids = flat_h.index_select(0, keep), flat_ids.index_select(0, keep)  # (N', H), (N',)
    logp, entropy = FusedLinearLogprobsFunction.apply(flat_h, weight, bias, flat_ids, float(temperature), int(step))  # (N',)
    if dropped:  # scatter back: masked rows get logp 0, entropy 0 and (index_select's backward) zero gradient
        logp = logp.new_zeros(bsz * seq).index_copy(0, keep, logp)  # (N,)
        entropy = entropy.new_zeros(bsz * seq).index_copy(0, keep, entropy)  # (N,)
    return grpo_loss_from_logp(
        logp.view(bsz, seq), old_logp, ref_logp, advantages, mask,
        loss_type=loss_type, eps_low=eps_low, eps_high=eps_high, delta=delta, beta=beta,
        ratio_level=ratio_level, normalizer=normalizer, entropy=entropy.view(bsz, seq), behavior_logp=behavior_logp,
        is_level=is_level, is_mode=is_mode, is_cap=is_cap, top_entropy_quantile=top_entropy_quantile,
    )  # fmt: skip
