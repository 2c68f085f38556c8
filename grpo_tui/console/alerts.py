"""Alert rules over a `Snapshot`: what the operator must see now, as a toast once and in the alert list.

Rules (each alert has a stable `key`, so a standing alert toasts once, and again only after it cleared):
- `nan:<level>`      the newest metrics record of a level has a null (non-finite) core metric, or
                     its `nan_skips` grew within the shown window;
- `kl:<level>`       the newest KL is above `kl_max`;
- `stall`            a training job runs but no level's metrics.jsonl was written for `stall_s`
                     seconds (the trainer's heartbeat), measured from the later of the last write and
                     the job's start;
- `guard`            the capacity guard fails (auto cycles skip and start is refused);
- `scheduler`        no scheduler answers.
"""

from __future__ import annotations

from dataclasses import dataclass

from grpo_tui.console.render import finite, num
from grpo_tui.console.source import Snapshot

CORE = ("loss", "kl", "reward_mean", "grad_norm")


@dataclass(frozen=True)
class Alert:
    key: str
    severity: str  # "error" | "warning"
    text: str


def evaluate(snap: Snapshot, kl_max: float = 1.0, stall_s: float = 300.0,
             job_started: float | None = None) -> list[Alert]:
    out: list[Alert] = []
    if snap.status is None:
        out.append(Alert("scheduler", "warning", f"no scheduler: {snap.status_error or 'not reachable'}"))
    if snap.guard is not None and not snap.guard.get("ok", True):
        out.append(Alert("guard", "error", f"guard failing: {snap.guard.get('reason', '?')}"))
    for level, records in snap.metrics.items():
        if not records:
            continue
        newest = records[-1]
        bad = [k for k in CORE if k in newest and finite(newest[k]) is None]
        skips = [finite(r.get("nan_skips")) for r in records]
        grew = [s for s in skips if s is not None]
        if bad:
            out.append(Alert(f"nan:{level}", "error",
                             f"{level}: {', '.join(bad)} NaN/inf at step {newest.get('step', '?')}"))
        elif grew and grew[-1] > grew[0]:
            out.append(Alert(f"nan:{level}", "warning",
                             f"{level}: {int(grew[-1] - grew[0])} non-finite steps skipped recently"))
        kl = finite(newest.get("kl"))
        if kl is not None and kl > kl_max:
            out.append(Alert(f"kl:{level}", "warning", f"{level}: KL {num(kl)} above {num(kl_max)}"))
    status = snap.status or {}
    training = status.get("job") in ("cycle", "train")
    if training and job_started is not None:
        beats = [t for t in snap.heartbeats.values() if t is not None]
        since = max([job_started, *beats])
        quiet = snap.time - since
        if quiet > stall_s:
            out.append(Alert("stall", "error",
                             f"no trainer heartbeat for {quiet / 60:.0f} min (metrics.jsonl not written)"))
    return sorted(out, key=lambda a: a.severity != "error")  # errors first, then warnings, each in rule order
