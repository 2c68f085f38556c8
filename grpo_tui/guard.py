"""Capacity guard: free disk on the home filesystem, available RAM, free VRAM, each against a threshold.

Thresholds (`GuardConfig`; 0 turns a check off) persist in `<home>/guard.json`, written atomically.
`check(home, thresholds, stats)` returns a `GuardReport` with each value, threshold, verdict and reason;
`require(...)` raises `GuardRefused` (exit 3) when it fails: every training start calls it right
before it starts.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import orjson
from pydantic import ValidationError

from miner.atomic import write_atomic as write_bytes_atomic
from grpo_tui.config import GuardConfig, describe
from grpo_tui.errors import ConfigError, GuardRefused
from grpo_tui.stats import StatsSampler

GUARD_FILE = "guard.json"


@dataclass(frozen=True)
class Check:
    name: str  # "disk" | "ram" | "vram"
    value: float | None  # None when it could not be measured
    threshold: float
    unit: str
    ok: bool
    reason: str

    @property
    def verdict(self) -> str:
        return "off" if self.threshold == 0 else ("ok" if self.ok else "FAIL")


@dataclass(frozen=True)
class GuardReport:
    checks: list[Check] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    @property
    def reason(self) -> str:
        failed = [c.reason for c in self.checks if not c.ok]
        return "; ".join(failed) if failed else "all checks pass"

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "reason": self.reason,
                "checks": [asdict(c) | {"verdict": c.verdict} for c in self.checks]}


def load_thresholds(home: Path) -> GuardConfig:
    """The persisted thresholds, or the defaults when none were saved."""
    path = Path(home) / GUARD_FILE
    if not path.exists():
        return GuardConfig()
    try:
        return GuardConfig.model_validate(orjson.loads(path.read_bytes()))
    except ValidationError as exc:
        raise ConfigError(f"{path}: invalid guard thresholds ({describe(GuardConfig, exc)}); "
                          "fix it or delete the file (the defaults then apply)") from exc
    except (orjson.JSONDecodeError, ValueError) as exc:
        raise ConfigError(f"{path}: invalid guard thresholds ({exc}); fix or delete the file") from exc


def save_thresholds(home: Path, thresholds: GuardConfig) -> Path:
    """Persist atomically; refuses (ConfigError) anything `load_thresholds` could not read back."""
    path = Path(home) / GUARD_FILE
    values = thresholds.model_dump()
    for name, value in values.items():  # JSON has no inf/nan (orjson writes null): never save one
        if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
            raise ConfigError(f"guard threshold {name}: expected a finite number >= 0 (0 turns the check off), got {value!r}")
    write_bytes_atomic(path, orjson.dumps(values, option=orjson.OPT_INDENT_2))
    return path


def _check(name: str, value: float | None, threshold: float, unit: str, missing: str) -> Check:
    if threshold == 0:
        return Check(name, value, 0.0, unit, True, f"{name} check off")
    if value is None:
        return Check(name, None, threshold, unit, False, f"{name}: cannot measure ({missing})")
    if value < threshold:
        return Check(name, value, threshold, unit, False, f"{name}: {value:.1f} {unit} free < {threshold:g} {unit} required")
    return Check(name, value, threshold, unit, True, f"{name}: {value:.1f} {unit} free >= {threshold:g} {unit}")


def check(home: Path, thresholds: GuardConfig, stats: dict[str, Any] | None = None) -> GuardReport:
    """Evaluate every check on `stats` (sampled now when not given)."""
    stats = stats or StatsSampler(home).sample()
    disk, ram, gpus = stats.get("disk", {}), stats.get("ram", {}), stats.get("gpus", {})
    devices = gpus.get("devices") or []
    vram = max((d["mem_total_mb"] - d["mem_used_mb"] for d in devices), default=None)
    return GuardReport([
        _check("disk", disk.get("free_gb"), thresholds.min_free_gb, "GB", disk.get("unavailable", "no disk stats")),
        _check("ram", ram.get("available_gb"), thresholds.min_ram_gb, "GB", ram.get("unavailable", "no RAM stats")),
        _check("vram", vram, thresholds.min_vram_mb, "MB", gpus.get("unavailable", "no GPU visible")),
    ])


def require(home: Path, thresholds: GuardConfig | None = None) -> GuardReport:
    """Check right before work starts; raise GuardRefused (exit 3) naming what failed and what to do."""
    report = check(home, thresholds or load_thresholds(home))
    if not report.ok:
        raise GuardRefused(f"capacity guard refused: {report.reason}; free space or lower the threshold with `grpo guard`")
    return report


__all__ = ["Check", "GuardReport", "check", "load_thresholds", "require", "save_thresholds"]
