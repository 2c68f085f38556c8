"""Torch launchers for token log-probs: the reference backend and the fallback off CUDA.

Same contract as `kernels/triton_logprobs.py` (see the two functions). The work is chunked over rows so
that only a few MiB of fp32 temporaries live at a time, whatever N and V are: no `(N, V)` fp32 tensor is
built except the `dlogits` the backward returns, and that one is written into `out`, which may be
`logits` itself (in place). All math is fp32 whatever the logits dtype.

Per chunk of rows, with x the raw logits and z = x / T, in the shifted form:
    m = max_v x,  d = (x - m) / T <= 0,  e = exp(d),  s = sum_v e,  u = sum_v d * e
    lse = m / T + log s,  logp = (x[id] - m) / T - log s,  entropy = log s - u / s
    dlogits = g / T * (onehot(id) - exp(z - lse))
A negative id (the Hugging Face ignore index -100 on a masked position) marks an ignored row: logp = lse =
entropy = 0 and a zero dlogits row (the gather and scatter use the id clamped to 0, then the row is zeroed),
as in the Triton kernels, so padded tokens cost nothing and never raise or poison the loss.
Both V-wide sums are ATen reductions accumulated in float64 (never a BLAS dot): their result does not
depend on the summation order, so the CPU model, its vector width, the thread count and the row's
alignment do not change it. What is left is the fp32 rounding of each term (d, exp(d), d * e: a few
units in the last place, independent across terms) and the final rounding of each output to fp32.

On CUDA a chunk is a batch of rows (CUDA_CHUNK_ELEMENTS, a few launches each, no host sync) run in order
on the one stream. On CPU the row chunks are shared out among `torch.get_num_threads()` Python threads that each run
single-threaded torch ops on their own L2-sized chunk (the ops release the GIL): one OpenMP barrier per
op and chunk would stall whenever another process holds a core, while whole chunks per thread do not.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import torch
from torch import Tensor

CHUNK_ELEMENTS = 1 << 19  # fp32 elements per row chunk on CPU: 2 MiB, about one core's L2
# On CUDA (one stream: threads are pointless) a chunk is a batch of rows for a handful of launches: 32 MiB
# per fp32 scratch buffer, so V = 151936 takes 55 rows per chunk (300 chunks at N = 16k, not 5,000 of 3 rows).
CUDA_CHUNK_ELEMENTS = 1 << 23

_executor: ThreadPoolExecutor | None = None  # helper threads, created on first use
_executor_size = 0


def _forget_executor() -> None:
    global _executor, _executor_size
    _executor, _executor_size = None, 0  # a forked child has the pool object but none of its threads


os.register_at_fork(after_in_child=_forget_executor)


def _rows_per_chunk(vocab: int, device: torch.device | None = None) -> int:
    budget = CUDA_CHUNK_ELEMENTS if device is not None and device.type == "cuda" else CHUNK_ELEMENTS
    return max(1, budget // max(vocab, 1))


def _for_each_chunk(n: int, vocab: int, device: torch.device, work: Callable[[], Callable[[int, int], None]]) -> None:
    """Run `work()(start, stop)` over all row chunks of an (N, V) problem.

    `work()` is called once per thread and returns that thread's chunk function (own scratch buffers).
    """
    global _executor, _executor_size
    step = _rows_per_chunk(vocab, device)
    chunks = [(start, min(start + step, n)) for start in range(0, n, step)]
    threads = torch.get_num_threads()
    workers = min(threads, len(chunks)) if device.type == "cpu" else 1
    if workers <= 1:
        with torch.no_grad():
            run = work()
            for start, stop in chunks:
                run(start, stop)
        return
    ticket = itertools.count()  # next() on it is atomic under the GIL: chunks are taken dynamically

    def drain() -> None:
        with torch.no_grad():  # grad mode is per thread; the launchers are not differentiable
            run = work()
            while (i := next(ticket)) < len(chunks):
                run(*chunks[i])

    torch.set_num_threads(1)  # this thread's ops, and the pool threads' (initialised from it), run inline
    try:
        if _executor is None or _executor_size < workers - 1:
            _executor, _executor_size = ThreadPoolExecutor(workers - 1, thread_name_prefix="kernels"), workers - 1
        futures = [_executor.submit(drain) for _ in range(workers - 1)]
        drain()
        for future in futures:
            future.result()
    finally:
        torch.set_num_threads(threads)


def logprobs_forward(logits: Tensor, ids: Tensor, temperature: float) -> tuple[Tensor, Tensor, Tensor]:
    """logits (N, V) fp32/bf16/fp16, any row stride (last dim contiguous); ids (N,) int64 in [0, V), or
    negative for an ignored row (logp = lse = entropy = 0).

    Returns logp (N,) fp32 = log_softmax(logits/T)[ids], lse (N,) fp32 = logsumexp(logits/T) and
    entropy (N,) fp32 = -sum p log p of softmax(logits/T). Never materialises (N, V) fp32.
    """
    n, vocab = logits.shape
    logp = torch.empty(n, dtype=torch.float32, device=logits.device)  # (N,)
    lse = torch.empty_like(logp)  # (N,)
    entropy = torch.empty_like(logp)  # (N,)
    rows = min(_rows_per_chunk(vocab, logits.device), n)

    def work() -> Callable[[int, int], None]:
        shift_buf = torch.empty(rows, vocab, dtype=torch.float32, device=logits.device)  # (C, V) d, then d * e
        exp_buf = torch.empty_like(shift_buf)  # (C, V) e

        def run(start: int, stop: int) -> None:
            x = logits[start:stop]  # (C, V) raw logits, any float dtype
            d = shift_buf[: stop - start]
            if x.dtype != torch.float32:
                x = d.copy_(x)  # fp32 (exact for bf16/fp16) before any arithmetic
            m = x.amax(dim=1, keepdim=True)  # (C, 1) max of the raw logits
            tok = ids[start:stop]  # (C,)
            ignored = tok < 0  # (C,) rows with the ignore index: zeros below
            picked = x.gather(1, tok.clamp(min=0)[:, None]).squeeze(1).double()  # (C,) raw logit of the chosen token
            torch.sub(x, m, out=d)  # (C, V) in place when x is the fp32 copy
            if temperature != 1.0:
                d.div_(temperature)
            e = torch.exp(d, out=exp_buf[: stop - start])  # (C, V) in (0, 1], 1 at the max
            s = e.sum(dim=1, dtype=torch.float64)  # (C,) >= 1
            u = d.mul_(e).sum(dim=1, dtype=torch.float64)  # (C,) <= 0
            # The (C,)-sized tail in float64: one rounding per output, to fp32 at the end.
            log_s = s.log()  # (C,)
            m = m.squeeze(1).double()  # (C,)
            lse[start:stop] = (m / temperature + log_s).masked_fill_(ignored, 0.0)
            logp[start:stop] = ((picked - m) / temperature - log_s).masked_fill_(ignored, 0.0)
            entropy[start:stop] = (log_s - u / s).masked_fill_(ignored, 0.0)

        return run

    _for_each_chunk(n, vocab, logits.device, work)
    return logp, lse, entropy


def logprobs_backward(
    logits: Tensor, ids: Tensor, lse: Tensor, grad_logp: Tensor, temperature: float, out: Tensor | None = None
) -> Tensor:
    """dlogits (N, V) in logits.dtype = grad_logp[:, None] * (onehot(ids) - softmax(logits/T)) / T.

    Computed in fp32 and written into `out` when given (`out` may be `logits` itself: in place). Rows with
    a negative id get zeros.
    """
    n, vocab = logits.shape
    if out is None:
        out = torch.empty(n, vocab, dtype=logits.dtype, device=logits.device)  # (N, V)
    scale = grad_logp.float() / temperature  # (N,) g / T
    rows = min(_rows_per_chunk(vocab, logits.device), n)

    def work() -> Callable[[int, int], None]:
        fp32_out, on_cuda = out.dtype == torch.float32, logits.device.type == "cuda"
        buf = None if fp32_out else torch.empty(rows, vocab, dtype=torch.float32, device=logits.device)  # (C, V)

        def run(start: int, stop: int) -> None:
            target = out[start:stop] if buf is None else buf[: stop - start]  # (C, V) fp32
            x = logits[start:stop]  # (C, V)
            if x.dtype != torch.float32:
                x = target.copy_(x)  # fp32 before any arithmetic
            if temperature == 1.0:
                torch.sub(x, lse[start:stop, None], out=target)
            else:
                torch.div(x, temperature, out=target).sub_(lse[start:stop, None])
            target.exp_().mul_(scale[start:stop, None].neg())  # -g/T * p
            tok = ids[start:stop]  # (C,)
            target.scatter_add_(1, tok.clamp(min=0)[:, None], scale[start:stop, None])  # + g/T at the chosen id
            ignored = tok < 0  # (C,) ignore index: lse is 0 there, so the row above is garbage; zero it
            if on_cuda or bool(ignored.any()):  # no host sync per chunk on CUDA
                target.masked_fill_(ignored[:, None], 0.0)
            if buf is not None:
                out[start:stop].copy_(target)

        return run

    _for_each_chunk(n, vocab, logits.device, work)
    return out
