"""token_logprobs: fp32 log-prob (and entropy) of the chosen token per row, differentiable w.r.t. logits.

`TokenLogprobsFunction` calls the active backend's launchers (`kernels.dispatch.launchers`): the forward
saves (logits, ids, lse) and never builds an (N, V) fp32 tensor; the backward re-reads the logits and
writes dlogits, into the logits buffer itself when `inplace_backward=True` (opt-in: the logits are
destroyed, so nothing else may need them afterwards). Entropy is returned for logging and entropy
masks and is not differentiable.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import torch
from torch import Tensor

from .dispatch import launchers
from .errors import OptionError, ShapeError

T = TypeVar("T")


def rows_view(x: Tensor) -> Tensor | None:
    """x (..., V) as an (N, V) view with the last dim contiguous, or None when no such view exists."""
    if x.dim() == 0 or x.stride(-1) != 1:
        return None
    dims = [(s, st) for s, st in zip(x.shape[:-1], x.stride()[:-1]) if s != 1]
    for (_, outer), (size, inner) in zip(dims, dims[1:]):
        if outer != inner * size:
            return None
    row_stride = dims[-1][1] if dims else x.shape[-1]
    return x.as_strided((x.numel() // max(x.shape[-1], 1), x.shape[-1]), (row_stride, 1))


def _layout(logits: Tensor) -> str:
    """How the launchers see logits (..., V): "flat" one (N, V) view, "seq" one view per sequence, or "copy"."""
    if rows_view(logits) is not None:
        return "flat"
    if logits.dim() == 3 and logits.stride(-1) == 1:  # e.g. logits[:, :-1] of a (B, T+1, V) tensor
        return "seq"
    return "copy"  # a layout the launchers cannot stride over: one contiguous copy


def _row_blocks(x: Tensor, layout: str) -> list[Tensor]:
    """(rows, V) pieces of x (..., V) covering its rows in order, per `layout`."""
    if layout == "seq":
        return [x[b] for b in range(x.shape[0])]
    flat = rows_view(x)
    return [flat if flat is not None else x.reshape(-1, x.shape[-1])]


def blockwise_forward(logits: Tensor, run: Callable[[Tensor, int, int], T]) -> list[T]:
    """`run(rows, start, stop)` over (rows, V) blocks of logits (..., V) covering rows start:stop of the flat
    (N, V) order: one block when a flat view exists, one per sequence for a (B, T, V) slice, else a copy."""
    parts, start = [], 0
    for rows in _row_blocks(logits, _layout(logits)):
        parts.append(run(rows, start, start + rows.shape[0]))
        start += rows.shape[0]
    return parts


def blockwise_backward(logits: Tensor, inplace: bool, write: Callable[[Tensor, Tensor, int, int], None]) -> Tensor:
    """dlogits (..., V) shaped like logits, filled by `write(rows, out, start, stop)` block by block (the
    blocks of `blockwise_forward`); with `inplace` it is the logits' own storage (unless a copy was needed)."""
    layout = _layout(logits)
    if inplace and layout != "copy":
        dlogits = logits.detach()  # written over: same storage
    else:
        dlogits = torch.empty(logits.shape, dtype=logits.dtype, device=logits.device)  # (..., V)
    start = 0
    for rows, out in zip(_row_blocks(logits.detach(), layout), _row_blocks(dlogits, layout)):
        write(rows, out, start, start + rows.shape[0])
        start += rows.shape[0]
    return dlogits


def check_ids(logits: Tensor, ids: Tensor) -> None:
    """ShapeError unless ids (...) int64 match logits (..., V) fp32/bf16/fp16 without the vocab dim."""
    if logits.dim() < 1 or ids.shape != logits.shape[:-1]:
        raise ShapeError(f"ids {tuple(ids.shape)} must match logits {tuple(logits.shape)} without the vocab dim")
    if logits.dtype not in (torch.float32, torch.bfloat16, torch.float16):
        raise ShapeError(f"logits dtype {logits.dtype} is not supported: use float32, bfloat16 or float16")
    if ids.dtype != torch.int64:
        raise ShapeError(f"ids dtype {ids.dtype} must be int64 (call ids.long())")


class TokenLogprobsFunction(torch.autograd.Function):
    """(logits (..., V), ids (...)) -> (logp (...) fp32, entropy (...) fp32, not differentiable)."""

    @staticmethod
    def forward(ctx, logits: Tensor, ids: Tensor, temperature: float, inplace_backward: bool):  # type: ignore[override]
        ops = launchers(logits.device)
        flat_ids = ids.reshape(-1)  # (N,)
        outs = blockwise_forward(logits, lambda rows, start, stop: ops.logprobs_forward(rows, flat_ids[start:stop], temperature))
        logp, lse, entropy = (torch.cat(parts) if len(outs) > 1 else parts[0] for parts in zip(*outs))  # (N,)
        ctx.save_for_backward(logits, ids, lse)
        ctx.temperature, ctx.inplace = temperature, inplace_backward
        logp, entropy = logp.view(ids.shape), entropy.view(ids.shape)  # (...)
        ctx.mark_non_differentiable(entropy)
        return logp, entropy

    @staticmethod
    def backward(ctx, grad_logp: Tensor, grad_entropy: Tensor | None):  # type: ignore[override]
        logits, ids, lse = ctx.saved_tensors
        ops = launchers(logits.device)
        grad_flat = grad_logp.reshape(-1)  # (N,)
        flat_ids = ids.reshape(-1)

        def write(rows: Tensor, out: Tensor, start: int, stop: int) -> None:
            ops.logprobs_backward(rows, flat_ids[start:stop], lse[start:stop], grad_flat[start:stop], ctx.temperature, out=out)

        return blockwise_backward(logits, ctx.inplace, write), None, None, None


def token_logprobs(
    logits: Tensor,
    ids: Tensor,
    temperature: float = 1.0,
    *,
    with_entropy: bool = False,
    inplace_backward: bool = False,
) -> Tensor | tuple[Tensor, Tensor]:
    """logp (...) fp32 = log_softmax(logits / T)[ids] for logits (..., V), ids (...) int64.

    With `with_entropy`, also returns the entropy (...) fp32 of softmax(logits / T) from the same pass.
    """
    check_ids(logits, ids)
    if temperature <= 0:
        raise OptionError(f"temperature must be > 0, got {temperature}")
    logp, entropy = TokenLogprobsFunction.apply(logits, ids, float(temperature), bool(inplace_backward))
    return (logp, entropy) if with_entropy else logp
