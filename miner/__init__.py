"""Miner: agent action streams in Redis to grouped preference datasets.

Public API (imported lazily, so `import miner.schema` stays light for the policy package):
`open_store(home, url)` -> `Store`; `ActionLog(store).record_action(...)` / `.record_retrieval(...)`;
`mine(store, MineParams(...), home, out=..., out_dir=...)` -> `MineResult`; `apply_policy(...)`;
`seed_store(store, n)` for demo data. Modules: store, schema, actionlog, extract, groups, cursor,
mine, nudges, demo, atomic, errors.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "open_store": "miner.store", "Store": "miner.store",
    "ActionLog": "miner.actionlog",
    "ActionRecord": "miner.schema", "RetrievalEvent": "miner.schema",
    "mine": "miner.mine", "collect": "miner.mine", "MineParams": "miner.mine", "MineResult": "miner.mine",
    "apply_policy": "miner.nudges", "NudgeParams": "miner.nudges",
    "seed_store": "miner.demo",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'miner' has no attribute {name!r}")
