"""Case `calibrate`: allocate and touch `--tokens` MiB (default 100); a check of the memory probe.

Its reported peak extra memory should be about the size asked for, on CPU (RSS high-water mark)
and on CUDA (allocator peak). Not part of a bare `grpo bench`.
"""

from __future__ import annotations

from typing import Any

import torch

from bench.registry import Case, Size, register


def build(size: Size, provider: str) -> dict[str, Any]:
    return {"mib": size.tokens, "device": size.device}


def run(provider: str, inputs: dict[str, Any]) -> dict[str, Any]:
    return {"buffer": torch.ones(inputs["mib"] << 18, dtype=torch.float32, device=inputs["device"])}  # 4 B each: touched


register(
    Case(
        name="calibrate",
        summary="allocate and touch N MiB (checks the memory probe)",
        providers=("alloc",),
        tokens=(100,),
        vocabs=(None,),
        hidden=None,
        build=build,
        run=run,
        default=False,
    )
)
