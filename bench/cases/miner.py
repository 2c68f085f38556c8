"""Case `miner`: mine N stream entries (`--tokens` = entries, default 200,000) from a real Redis.

Providers: ours (`miner.mine.mine`, global level: read the 48 h window with XREVRANGE pages, parse
with orjson, group, write global.jsonl), hierarchical (the same, three levels), naive (the raw read
rate of the same entries: redis-py XRANGE pages of 1000, no parsing). `time x naive` is therefore
mining time over raw read time; the miner's entries/s over the raw rate is its inverse (target
>= 0.5, i.e. time x naive <= 2). Each worker seeds a fresh embedded store in a temp folder
(`bench.miner.seed`) and stops it on exit. Not part of a bare `grpo bench`; `python -m bench.miner`
prints the same comparison as entries/s.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path
from typing import Any

from bench.registry import Case, Size, register


def build(size: Size, provider: str) -> dict[str, Any]:
    from bench.miner import seed
    from miner.store import open_store

    tmp = Path(tempfile.mkdtemp(prefix="grpo-bench-miner-"))
    store = open_store(tmp / ".grpo")

    def cleanup() -> None:
        if store.server is not None:
            store.server.stop()
        shutil.rmtree(tmp, ignore_errors=True)

    atexit.register(cleanup)
    seed(store, size.tokens)
    return {"store": store, "home": tmp / ".grpo"}


def run(provider: str, inputs: dict[str, Any]) -> dict[str, Any]:
    from bench.miner import read_raw, run_mine

    if provider == "naive":
        return {"entries": read_raw(inputs["store"])}
    return {"entries": run_mine(inputs["store"], inputs["home"], hierarchical=provider == "hierarchical")}


register(
    Case(
        name="miner",
        summary="mine N stream entries vs the raw XRANGE read of the same entries",
        providers=("ours", "hierarchical", "naive"),
        tokens=(200_000,),
        vocabs=(None,),
        hidden=None,
        build=build,
        run=run,
        default=False,
        order=50,
    )
)
