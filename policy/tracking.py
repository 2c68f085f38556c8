"""Experiment tracking (`--report-to tensorboard|wandb|none`): every logged metrics record, mirrored.

`open_tracker(kind, out, config)` is called when the trainer is built, so a tracker whose package is
missing fails the run at start with a PolicyError naming the extra to install (never silently off).
The writer itself is opened lazily by the first `log(record)` and closed by `close()` (the trainer
uses the tracker as a context manager around its loop). One `log` call per record written to
metrics.jsonl; every finite int/float value except `step` and `timestamp` becomes a scalar at
`record["step"]`, under its metrics key (`loss`, `reward_mean`, `reward/<fn>_mean`, ...).

- tensorboard: `torch.utils.tensorboard.SummaryWriter` into `<out>/tensorboard/` (the `tensorboard`
  extra). The writer is opened with `purge_step` = the first step it logs, so a resumed run drops the
  events a killed run had written past its checkpoint (as metrics.jsonl is cut back).
- wandb: `wandb.init(dir=<out>/wandb, mode=offline)` (the `wandb` extra); offline unless WANDB_MODE
  is set in the environment; upload later with `wandb sync <out>/wandb/wandb/offline-run-*`.
"""

from __future__ import annotations

import importlib.util
import math
import os
from pathlib import Path
from types import TracebackType
from typing import Any

from policy.errors import PolicyError

REPORT_TO = ("none", "tensorboard", "wandb")
SKIP = frozenset({"step", "timestamp"})


def scalars(record: dict[str, Any]) -> dict[str, float]:
    """The record's finite numeric values (bools and nulls left out), minus step and timestamp."""
    out = {}
    for key, value in record.items():
        if key in SKIP or isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        if math.isfinite(value):
            out[key] = float(value)
    return out


class Tracker:
    """The `none` tracker, and the interface of the others."""

    kind = "none"

    def log(self, record: dict[str, Any]) -> None:
        pass

    def close(self) -> None:
        pass

    def __enter__(self) -> Tracker:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


class TensorBoardTracker(Tracker):
    kind = "tensorboard"

    def __init__(self, out: Path) -> None:
        self.dir = Path(out) / "tensorboard"
        self.writer: Any = None

    def log(self, record: dict[str, Any]) -> None:
        step = int(record["step"])
        if self.writer is None:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(log_dir=str(self.dir), purge_step=step)
        for key, value in scalars(record).items():
            self.writer.add_scalar(key, value, step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


class WandbTracker(Tracker):
    kind = "wandb"

    def __init__(self, out: Path, config: dict[str, Any]) -> None:
        self.dir, self.config, self.run_obj = Path(out) / "wandb", config, None
        self.name = Path(out).absolute().name

    def log(self, record: dict[str, Any]) -> None:
        if self.run_obj is None:
            import wandb

            self.dir.mkdir(parents=True, exist_ok=True)
            mode = os.environ.get("WANDB_MODE", "offline")
            self.run_obj = wandb.init(dir=str(self.dir), mode=mode, config=self.config, name=self.name)
        self.run_obj.log(scalars(record), step=int(record["step"]))

    def close(self) -> None:
        if self.run_obj is not None:
            self.run_obj.finish()
            self.run_obj = None


def open_tracker(kind: str, out: Path, config: dict[str, Any]) -> Tracker:
    """The tracker `kind` names; PolicyError when it is unknown or its package is not installed."""
    if kind == "none":
        return Tracker()
    if kind == "tensorboard":
        if importlib.util.find_spec("tensorboard") is None:
            raise PolicyError("--report-to tensorboard needs tensorboard: pip install 'grpo-tui[tensorboard]' (or pip install tensorboard)")
        return TensorBoardTracker(out)
    if kind == "wandb":
        if importlib.util.find_spec("wandb") is None:
            raise PolicyError("--report-to wandb needs wandb: pip install 'grpo-tui[wandb]' (or pip install wandb)")
        return WandbTracker(out, config)
    raise PolicyError(f"unknown --report-to {kind!r}: choose one of {', '.join(REPORT_TO)}")
