"""Row-aligned buffers: (n, v) views whose row stride is a multiple of 16 elements, whatever v.

    aligned_rows(n, v, dtype, device) -> torch.empty((n, padded_width(v)), ...)[:, :v]

Triton's JIT marks an integer argument divisible by 16 (`tt.divisibility=16`), and the logprob kernels
(kernels/triton_logprobs.py) load their full BLOCK_V blocks without a mask, so a 16-aligned row stride
gives 16-byte vector loads and stores even for an odd vocabulary such as V = 50257 (only the one masked
tail block per row stays scalar). A buffer the project allocates for (rows, V) logits, e.g. the fused-linear
(C, V) chunk, should come from `aligned_rows`; the padding columns are never read or written by the kernels.
No triton import: usable by the Torch fallback too.
"""

from __future__ import annotations

import torch

ROW_ALIGN = 16  # elements; the divisibility Triton's JIT specialises integer arguments on


def padded_width(v: int, align: int = ROW_ALIGN) -> int:
    """v rounded up to a multiple of `align` (>= 1)."""
    if v < 0 or align < 1:
        raise ValueError(f"need v >= 0 and align >= 1, got v={v}, align={align}")
    return -(-v // align) * align


def aligned_rows(
    n: int, v: int, dtype: torch.dtype, device: torch.device | str | None = None, align: int = ROW_ALIGN
) -> torch.Tensor:
    """An uninitialised (n, v) tensor, last dim contiguous, row stride padded_width(v) (a multiple of
    `align` elements), a view into an (n, padded_width(v)) allocation (so its data pointer is as aligned
    as the allocator's)."""
    return torch.empty((n, padded_width(v, align)), dtype=dtype, device=device)[:, :v]
