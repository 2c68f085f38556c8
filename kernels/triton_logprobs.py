"""Triton launchers for per-token log-probs, log-sum-exp and entropy over a vocabulary (CUDA backend).

Contract (shared with `kernels/torch_logprobs.py`, see DESIGN section 4):

    logprobs_forward(logits (N, V), ids (N,), temperature) -> (logp, lse, entropy), each (N,) fp32
    logprobs_backward(logits, ids, lse, grad_logp, temperature, out=None) -> dlogits (N, V) in logits.dtype

One program per token row on grid axis 0 (no 65,535 grid-y limit). Each program loops over the vocabulary
in BLOCK_V chunks with an online max / sum-exp / sum p*(z - max) (entropy), so `(N, V)` fp32 is never
built. V and the row strides are runtime integers (no recompile per sequence length or vocabulary), the
vocabulary tail is masked (odd V such as 50257), all math is fp32 whatever the logits dtype, and row
offsets are int64 (N * V may exceed 2**31). The backward re-reads the logits and writes
dlogits = g * (onehot(ids) - softmax(logits / T)) / T, optionally in place into the logits buffer.

A negative id (the Hugging Face ignore index -100 on a masked position) marks an ignored row: its program
writes logp = lse = entropy = 0 and returns without reading the logits, and the backward writes a zero
dlogits row (also in place), so padded tokens cost nothing and never poison the loss with NaN. Any other
id must lie in [0, V): an id >= V is not read (the load is masked) and yields a NaN log-prob.
When V and the row stride are multiples of 16 (128256, 151936) the JIT's divisibility hints give 16-byte
vector loads; an odd V (50257) misaligns rows and the loads stay scalar (still correct, and reported
separately by kernels/aot.py). The kernels use only triton.language (tl.max, tl.sum, ...), so the tests
can run them in the Triton interpreter.
Importing this module imports triton; only `kernels.dispatch` imports it, lazily.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .errors import OptionError, ShapeError

# Chunk of the vocabulary one program reduces per loop step, and warps per program. 4096 fp32 over 8
# warps is 16 elements per thread: enough bytes in flight per SM on H100, few registers, no spills.
BLOCK_V = 4096
NUM_WARPS = 8
# Small vocabularies (tests, toy models) use a smaller chunk so most lanes are not masked off.
SMALL_BLOCK_V = 1024
SMALL_NUM_WARPS = 4
# Every (BLOCK_V, num_warps) pair `_config` can return: compiled ahead of time by kernels/aot.py.
CONFIGS = ((BLOCK_V, NUM_WARPS), (SMALL_BLOCK_V, SMALL_NUM_WARPS))
# Let ptxas fuse multiply-adds, stated explicitly: Triton 3.9 warns when unset and 3.10 flips the default.
FP_FUSION = True
LOGITS_DTYPES = (torch.float32, torch.bfloat16, torch.float16)
# Finite stand-in for -inf as the initial running max: keeps exp(m_old - m_new) and (m_old - m_new) * s
# free of inf * 0 even when a whole chunk is -inf (masked or padded vocabulary entries).
_NEG_BIG = tl.constexpr(-1.0e30)


@triton.jit
def _online_step(z, m, s, u):
    """Fold one block z (BLOCK_V,) fp32 into the running (m, s, u); masked lanes are -inf and add nothing."""
    m_new = tl.maximum(m, tl.max(z, axis=0))
    shift = m - m_new  # <= 0, finite
    alpha = tl.exp(shift)
    # z - m_new clamped to a finite floor: masked lanes and -inf logits give e = 0 and e * d = 0, not NaN
    d = tl.maximum(z - m_new, _NEG_BIG)
    e = tl.exp(d)
    # sum e^(z - m_new) (z - m_new) over seen chunks = alpha * (u + shift * s) + this chunk
    u = alpha * (u + shift * s) + tl.sum(e * d, axis=0)
    s = alpha * s + tl.sum(e, axis=0)
    return m_new, s, u


@triton.jit
def _row_softmax_stats(row_ptr, V, inv_temperature, BLOCK_V: tl.constexpr):
    """(m, log s, u / s) of z = x / T over one row of V logits: m the max of z, s = sum exp(z - m) and
    u = sum exp(z - m) (z - m); so lse = m + log s, entropy = log s - u / s, logp = (z_tok - m) - log s.

    Unmasked main loop over the full BLOCK_V blocks (vector loads when the row stride is 16-aligned,
    whatever V), then one masked tail block (V % BLOCK_V entries) when V is not a multiple of BLOCK_V."""
    cols = tl.arange(0, BLOCK_V)
    m = tl.full((), _NEG_BIG, tl.float32)
    s = tl.full((), 0.0, tl.float32)
    u = tl.full((), 0.0, tl.float32)
    v_main = (V // BLOCK_V) * BLOCK_V
    for start in range(0, v_main, BLOCK_V):
        x = tl.load(row_ptr + start + cols)
        m, s, u = _online_step(x.to(tl.float32) * inv_temperature, m, s, u)
    if v_main < V:
        offs = v_main + cols
        x = tl.load(row_ptr + offs, mask=offs < V, other=float("-inf"))
        m, s, u = _online_step(x.to(tl.float32) * inv_temperature, m, s, u)
    return m, tl.log(s), u / s


@triton.jit
def _row_logp(row_ptr, tok, m, log_s, V, inv_temperature):
    """log_softmax(z)[tok] in the shifted form (z_tok - m) - log s, not z_tok - lse, so the fp32 rounding
    of lse does not enter it; an id >= V is not read and gives NaN."""
    x_tok = tl.load(row_ptr + tok, mask=tok < V, other=float("nan"))
    return (x_tok.to(tl.float32) * inv_temperature - m) - log_s


@triton.jit
def _row_dlogits(row_ptr, out_ptr, tok, lse, coef, V, inv_temperature, BLOCK_V: tl.constexpr):
    """out = coef * (onehot(tok) - softmax(z)) over one row, in out's dtype (coef already includes 1 / T).
    Each block is read before it is written, so out may alias the row itself (in place)."""
    cols = tl.arange(0, BLOCK_V)
    v_main = (V // BLOCK_V) * BLOCK_V  # full blocks: unmasked; then one masked tail block
    for start in range(0, v_main, BLOCK_V):
        offs = start + cols
        x = tl.load(row_ptr + offs)
        p = tl.exp(x.to(tl.float32) * inv_temperature - lse)  # softmax(z), (BLOCK_V,)
        d = coef * (tl.where(offs == tok, 1.0, 0.0) - p)
        tl.store(out_ptr + offs, d.to(out_ptr.dtype.element_ty))
    if v_main < V:
        offs = v_main + cols
        mask = offs < V
        x = tl.load(row_ptr + offs, mask=mask, other=0.0)
        p = tl.exp(x.to(tl.float32) * inv_temperature - lse)
        d = coef * (tl.where(offs == tok, 1.0, 0.0) - p)
        tl.store(out_ptr + offs, d.to(out_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _zero_row(out_ptr, V, BLOCK_V: tl.constexpr):
    """out[:V] = 0 (an ignored or masked row's gradient), without reading anything."""
    cols = tl.arange(0, BLOCK_V)
    zero = tl.zeros((BLOCK_V,), dtype=out_ptr.dtype.element_ty)
    v_main = (V // BLOCK_V) * BLOCK_V
    for start in range(0, v_main, BLOCK_V):
        tl.store(out_ptr + start + cols, zero)
    if v_main < V:
        offs = v_main + cols
        tl.store(out_ptr + offs, zero, mask=offs < V)


@triton.jit
def _logprobs_fwd_kernel(
    logits_ptr,  # (N, V) fp32/bf16/fp16, last dim contiguous
    stride_row,  # elements between rows of logits (runtime)
    ids_ptr,  # (N,) int64
    logp_ptr,  # (N,) fp32 out: log_softmax(logits / T)[ids]
    lse_ptr,  # (N,) fp32 out: logsumexp(logits / T)
    entropy_ptr,  # (N,) fp32 out: -sum p log p
    V,  # vocabulary size (runtime)
    inv_temperature,  # fp32 1 / T
    BLOCK_V: tl.constexpr,
):
    row = tl.program_id(0).to(tl.int64)
    tok = tl.load(ids_ptr + row)
    if tok < 0:  # ignored row (id -100): zeros, no logits read
        tl.store(logp_ptr + row, 0.0)
        tl.store(lse_ptr + row, 0.0)
        tl.store(entropy_ptr + row, 0.0)
        return
    row_ptr = logits_ptr + row * stride_row
    m, log_s, u_over_s = _row_softmax_stats(row_ptr, V, inv_temperature, BLOCK_V)
    tl.store(logp_ptr + row, _row_logp(row_ptr, tok, m, log_s, V, inv_temperature))
    tl.store(lse_ptr + row, m + log_s)
    tl.store(entropy_ptr + row, log_s - u_over_s)  # -sum p log p with log p = (z - m) - log s


@triton.jit
def _logprobs_bwd_kernel(
    logits_ptr,  # (N, V) fp32/bf16/fp16, last dim contiguous
    stride_row,  # elements between rows of logits (runtime)
    dlogits_ptr,  # (N, V) out, logits dtype; may be logits_ptr itself (in place)
    stride_out_row,  # elements between rows of dlogits (runtime)
    ids_ptr,  # (N,) int64
    lse_ptr,  # (N,) fp32 from the forward
    grad_ptr,  # (N,) fp32 upstream gradient of logp
    V,  # vocabulary size (runtime)
    inv_temperature,  # fp32 1 / T
    BLOCK_V: tl.constexpr,
):
    row = tl.program_id(0).to(tl.int64)
    out_ptr = dlogits_ptr + row * stride_out_row
    tok = tl.load(ids_ptr + row)
    if tok < 0:  # ignored row (id -100): a zero dlogits row, no logits read
        _zero_row(out_ptr, V, BLOCK_V)
        return
    g = tl.load(grad_ptr + row) * inv_temperature  # d logp / d z = onehot - p, and dz / dx = 1 / T
    # rows are disjoint, so out may alias logits
    _row_dlogits(logits_ptr + row * stride_row, out_ptr, tok, tl.load(lse_ptr + row), g, V, inv_temperature, BLOCK_V)


# Every @triton.jit function of this module (kernels and the helpers they call): a harness that swaps
# interpreted / compiled function objects (tests/kernels/test_triton_logprobs.py) must swap all of them.
JIT_FUNCTIONS = (
    "_online_step", "_row_softmax_stats", "_row_logp", "_row_dlogits", "_zero_row",
    "_logprobs_fwd_kernel", "_logprobs_bwd_kernel",
)  # fmt: skip


def _config(V: int) -> tuple[int, int]:
    """(BLOCK_V, num_warps) for a vocabulary of V entries; always one of CONFIGS."""
    if V <= SMALL_BLOCK_V:
        return SMALL_BLOCK_V, SMALL_NUM_WARPS
    return BLOCK_V, NUM_WARPS


def _check(logits: torch.Tensor, ids: torch.Tensor, temperature: float) -> None:
    if logits.dim() != 2:
        raise ShapeError(f"logits must be (N, V), got shape {tuple(logits.shape)}; flatten the leading dims")
    if logits.dtype not in LOGITS_DTYPES:
        raise ShapeError(f"logits dtype {logits.dtype} unsupported; use float32, bfloat16 or float16")
    if logits.shape[1] > 0 and logits.stride(1) != 1:
        raise ShapeError("logits last dim must be contiguous (stride 1); call .contiguous() first")
    if ids.shape != logits.shape[:1]:
        raise ShapeError(f"ids must be (N,) = {tuple(logits.shape[:1])}, got {tuple(ids.shape)}")
    if ids.device != logits.device:
        raise ShapeError(f"ids on {ids.device} but logits on {logits.device}; move them to one device")
    if not temperature > 0:
        raise OptionError(f"temperature must be > 0, got {temperature}")


def _rows(t: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """A contiguous (N,) view or copy of t in dtype."""
    return t.to(dtype=dtype).contiguous()


def logprobs_forward(
    logits: torch.Tensor, ids: torch.Tensor, temperature: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """logits (N, V) fp32/bf16/fp16, any row stride (last dim contiguous); ids (N,) int64 in [0, V), or
    negative for an ignored row (logp = lse = entropy = 0). Returns logp (N,) fp32 = log_softmax(logits/T)[ids], lse (N,) fp32 = logsumexp(logits/T),
    entropy (N,) fp32 = -sum p log p of softmax(logits/T). Never materialises (N, V) fp32."""
    _check(logits, ids, temperature)
    n, v = logits.shape
    logp = torch.empty(n, dtype=torch.float32, device=logits.device)  # (N,)
    lse = torch.empty_like(logp)  # (N,)
    entropy = torch.empty_like(logp)  # (N,)
    if n == 0:
        return logp, lse, entropy
    if v == 0:
        raise ShapeError("logits has an empty vocabulary (V == 0)")
    block_v, num_warps = _config(v)
    _logprobs_fwd_kernel[(n,)](
        logits,
        logits.stride(0),
        _rows(ids, torch.int64),
        logp,
        lse,
        entropy,
        v,
        1.0 / float(temperature),
        BLOCK_V=block_v,
        num_warps=num_warps,
        enable_fp_fusion=FP_FUSION,
    )
    return logp, lse, entropy


def logprobs_backward(
    logits: torch.Tensor,
    ids: torch.Tensor,
    lse: torch.Tensor,
    grad_logp: torch.Tensor,
    temperature: float,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """dlogits (N, V) in logits.dtype = grad_logp[:, None] * (onehot(ids) - softmax(logits/T)) / T,
    computed in fp32 and written into `out` when given (out may be `logits` itself: in-place). Rows with a
    negative id get zeros."""
    _check(logits, ids, temperature)
    n, v = logits.shape
    if lse.shape != (n,) or grad_logp.shape != (n,):
        raise ShapeError(
            f"lse and grad_logp must be (N,) = ({n},), got {tuple(lse.shape)} and {tuple(grad_logp.shape)}"
        )
    if out is None:
        out = torch.empty((n, v), dtype=logits.dtype, device=logits.device)  # (N, V)
    elif out.shape != logits.shape or out.dtype != logits.dtype or out.device != logits.device:
        raise ShapeError(
            f"out must be {tuple(logits.shape)} {logits.dtype} on {logits.device}, "
            f"got {tuple(out.shape)} {out.dtype} on {out.device}"
        )
    elif v > 0 and out.stride(1) != 1:
        raise ShapeError("out last dim must be contiguous (stride 1)")
    if n == 0 or v == 0:
        return out
    block_v, num_warps = _config(v)
    _logprobs_bwd_kernel[(n,)](
        logits,
        logits.stride(0),
        out,
        out.stride(0),
        _rows(ids, torch.int64),
        _rows(lse, torch.float32),
        _rows(grad_logp, torch.float32),
        v,
        1.0 / float(temperature),
        BLOCK_V=block_v,
        num_warps=num_warps,
        enable_fp_fusion=FP_FUSION,
    )
    return out
