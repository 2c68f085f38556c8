"""The float64 oracle every kernel test compares against, and the error models behind the tolerances.

Every backend is compared with float64 math on the same inputs, never with another backend, and every
tolerance below is derived from how the kernels compute (module docstrings of `kernels.torch_logprobs`,
`kernels.triton_logprobs`, `kernels.fused_linear`), not from what one machine gave. U is the fp32 unit
roundoff (half an ulp at 1): one correctly rounded fp32 operation is off by at most U relative.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

U = 2.0**-24  # fp32 unit roundoff


BF16_CAST = 2.0**-7  # relative error of one fp32 -> bf16 conversion, truncating or rounding


def half_ulp(x: Tensor) -> Tensor:
    """Half an fp32 ulp at |x|: what rounding the exact result to fp32 costs at most (elementwise, float64)."""
    mag = x.double().abs().clamp(min=2.0**-126)
    return torch.exp2(torch.floor(torch.log2(mag))) * U


def reference(logits: Tensor, ids: Tensor, temperature: float = 1.0) -> tuple[Tensor, Tensor, Tensor]:
    """float64 (logp, lse, entropy) of logits (..., V): log_softmax(logits / T) gathered at ids."""
    z = logits.double() / temperature
    logsm = torch.log_softmax(z, dim=-1)
    logp = logsm.gather(-1, ids[..., None]).squeeze(-1)
    return logp, torch.logsumexp(z, dim=-1), torch.special.entr(logsm.exp()).sum(-1)


# logp = (x[id] - m) / T - log s. The V-wide sum s is accumulated in float64 (Torch) or over a fixed order of
# fp32 blocks (Triton), so its error is the p-weighted average of the per-term errors of exp(d): at most
# 1 ulp (2U) from exp plus the rounding of d itself, independent across terms; 4U bounds the dominant terms
# twice over. The result is then rounded to fp32 once: half an ulp of |logp|.
LOGP_COMPUTE = 4 * U

# entropy = log s - u / s with u = sum d * e: each term d * e carries 3-5 roundings (d, exp, product), each
# <= U relative and independent across terms, averaged with weights p over the softmax support; 16U covers
# it with |d| up to ~10 where p still matters. Plus half an ulp of the fp32 output (|H| < 16: <= 4.8e-7).
ENTROPY_COMPUTE = 16 * U


def logp_tol(want: Tensor) -> Tensor:
    return half_ulp(want) + LOGP_COMPUTE


def triton_logp_tol(want: Tensor, logits: Tensor, ids: Tensor, temperature: float) -> Tensor:
    """logp_tol plus what the Triton kernel's fp32 formulation adds: z = x * fl(1 / T) rounds z (U |z|) and
    uses a 1 / T off by U relative (U |z| again), for the chosen logit and for the max (T != 1 only); and
    (z_tok - m) is one more fp32 rounding (U |z_tok - m| <= U (|logp| + log V))."""
    z = logits.detach().double() / temperature
    z_tok = z.gather(-1, ids[..., None]).squeeze(-1).abs()
    z_max = z.amax(-1).abs()
    scaling = 0.0 if temperature == 1.0 else 2 * U * (z_tok + z_max)
    return logp_tol(want) + U * (want.double().abs() + math.log(logits.shape[-1])) + scaling


def entropy_tol(want: Tensor) -> Tensor:
    return half_ulp(want) + ENTROPY_COMPUTE


def assert_within(got: Tensor, want: Tensor, tol: Tensor | float, what: str) -> float:
    """Elementwise |got - want| <= tol; returns the max error (for reports)."""
    got, want = got.double(), want.double()
    err = torch.where(got == want, 0.0, (got - want).abs())  # equal infinities (masked vocabulary) are exact
    worst = (err - tol).argmax()
    assert bool((err <= tol).all()), f"{what}: error {err.flatten()[worst]:.3e} > tolerance {torch.as_tensor(tol).double().expand_as(err).flatten()[worst]:.3e}"
    return err.max().item()


def dlogits_tol(lse: Tensor, grad: Tensor, temperature: float, dtype: torch.dtype) -> Tensor:
    """Per-row atol of dlogits = g / T * (onehot - exp(z - lse)) computed in fp32 from the fp32 lse.

    exp(z - lse) carries the fp32 rounding of lse (half an ulp of |lse|, absolute in the exponent), of z = x / T
    and of z - lse (each <= U times a magnitude <= |lse| + |log p|, and p * |log p| <= 1/e), and of exp (2U
    relative), times p <= 1, times |g| / T. In bf16 the result is then converted to bf16: one bf16 ulp (2^-7)
    relative of a value <= |g| / T at most (the Triton interpreter truncates; a GPU rounds to nearest,
    within half of that).
    """
    scale = grad.double().abs() / temperature  # (N,)
    fp32 = (half_ulp(lse) + 2 * U * lse.double().abs() + 8 * U) * scale
    if dtype == torch.float32:
        return fp32[:, None]
    return (fp32 + BF16_CAST * scale)[:, None]


def gemm_bound(a: Tensor, b: Tensor) -> Tensor:
    """Worst-case error of an fp32 product a (M, K) @ b (N, K).T in any summation order: K * U * (|a| @ |b|.T).

    Higham's gamma_K bound (a hair under K * U for K * U << 1); it holds for every BLAS kernel, blocking and
    thread count, which is why it is used where a test's own inputs go through a GEMM before the kernel.
    """
    k = a.shape[-1]
    return k * U * (a.detach().double().abs() @ b.detach().double().abs().T)
