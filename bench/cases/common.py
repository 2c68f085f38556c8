"""Helpers shared by the kernel cases: shapes, GRPO inputs, float64 references, provider availability.

Inputs are built without large temporaries (memory is measured against the footprint after building).
The float64 references work in row chunks, so checking never holds (N, V) in float64.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Iterator
from typing import Any

import torch

from bench.grpo_math import LOSS, grpo_loss_from_logp
from bench.registry import Size

TORCH_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
BUILD_CHUNK_ELEMS = 1 << 22  # fp32 temporaries while building inputs stay <= 16 MiB
CHECK_CHUNK_ELEMS = 1 << 23  # float64 temporaries while checking stay <= 64 MiB


def batch_shape(tokens: int) -> tuple[int, int]:
    """(B, T) with B * T = tokens: 8 sequences when tokens divides by 8, else one."""
    b = 8 if tokens % 8 == 0 and tokens >= 8 else 1
    return b, tokens // b


def row_chunks(total: int, width: int, budget: int) -> Iterator[tuple[int, int]]:
    """[start, stop) ranges over `total` rows so that rows * width <= budget (at least one row)."""
    step = max(1, budget // max(width, 1))
    for start in range(0, total, step):
        yield start, min(total, start + step)


def grpo_side_inputs(logp: torch.Tensor, device: str) -> dict[str, torch.Tensor]:
    """old/ref log-probs near the current ones, advantages and a mask with ~10% padding. logp (B, T) fp32."""
    b, t = logp.shape
    return {
        "old_logp": logp + 0.05 * torch.randn(b, t, device=device),  # (B, T): ratios near 1, some clipped
        "ref_logp": logp + 0.05 * torch.randn(b, t, device=device),  # (B, T)
        "advantages": torch.randn(b, device=device),  # (B,)
        "mask": (torch.rand(b, t, device=device) > 0.1).float(),  # (B, T)
    }


@torch.no_grad()
def chunked_logp(row_logits: Callable[[int, int, int], torch.Tensor], ids: torch.Tensor, v: int, dtype=torch.float32) -> torch.Tensor:
    """log_softmax(logits / T)[ids] per row, one row chunk at a time. row_logits(b, t0, t1) -> (rows, V)."""
    b, t = ids.shape
    out = torch.empty(b, t, dtype=dtype, device=ids.device)  # (B, T)
    budget = BUILD_CHUNK_ELEMS if dtype == torch.float32 else CHECK_CHUNK_ELEMS
    for i in range(b):
        for t0, t1 in row_chunks(t, v, budget):
            z = row_logits(i, t0, t1).to(dtype) / LOSS["temperature"]  # (rows, V)
            out[i, t0:t1] = torch.log_softmax(z, dim=-1).gather(-1, ids[i, t0:t1, None]).squeeze(-1)
    return out


def reference_dlogp(logp64: torch.Tensor, inputs: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
    """(loss, dloss/dlogp) in float64 from float64 log-probs (B, T), by autograd on the loss math."""
    logp64 = logp64.detach().requires_grad_(True)
    loss = grpo_loss_from_logp(
        logp64,
        inputs["old_logp"].double(),
        inputs["ref_logp"].double(),
        inputs["advantages"].double(),
        inputs["mask"].double(),
        **LOSS,
    )
    (dlogp,) = torch.autograd.grad(loss, logp64)
    return loss.detach(), dlogp  # (), (B, T)


def abs_err(value: torch.Tensor, reference: torch.Tensor) -> float:
    return float((value.detach().double() - reference).abs().max()) if reference.numel() else 0.0


def module_missing(name: str) -> str | None:
    return None if importlib.util.find_spec(name) else f"{name} is not installed"


def third_party_skip(provider: str, device: str) -> str | None:
    """Why `trl` / `liger` cannot run here (not installed; Liger's Triton kernels need CUDA)."""
    if provider == "trl":
        return module_missing("trl")
    if provider == "liger":
        return module_missing("liger_kernel") or (None if device == "cuda" else "Liger-Kernel needs a CUDA device")
    return None


def random_logits(b: int, t: int, v: int, size: Size, extra_rows: int = 0) -> torch.Tensor:
    """(B, T + extra_rows, V) logits with std 3, drawn per sequence in place (no temporaries).

    The first T rows of every sequence get the same values whatever `extra_rows` is, so providers that
    need a longer buffer (Liger's (B, T+1, V) convention) see the same logits as the others."""
    buf = torch.empty(b, t + extra_rows, v, dtype=TORCH_DTYPES[size.dtype], device=size.device)
    buf[:, t:].zero_()
    for i in range(b):
        buf[i, :t].normal_(0.0, 3.0)
    return buf
