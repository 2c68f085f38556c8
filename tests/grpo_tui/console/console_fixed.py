"""Fixed console data for the SVG snapshots: a hierarchical auto mode mid-run on a one-GPU box.

Every time is relative to NOW, and the stats, series and files are constants, so a screenshot of the
console on `fixed_source()` is the same on every run and machine.
"""

from __future__ import annotations

import math
from pathlib import Path

from grpo_tui.console.source import FixedSource, Snapshot

NOW = 1_800_000_000.0


def _metrics(level: int, steps: int = 40, nan_at: int | None = None) -> list[dict]:
    out = []
    for i in range(1, steps + 1):
        x = i / steps
        rec = {"step": 400 * level + i, "loss": 0.9 * math.exp(-3 * x) + 0.05 * math.sin(7 * i),
               "reward_mean": 0.3 + 0.4 * x + 0.03 * math.cos(5 * i), "kl": 0.002 + 0.05 * x * x,
               "clip_frac_low": 0.01 * (i % 3), "clip_frac_high": 0.02 * x, "lr": 1e-4 if i < 30 else 5e-5,
               "grad_norm": 0.8 + 0.3 * math.sin(i / 3), "nan_skips": 0, "timestamp": NOW - 60 + i,
               "entropy": 2.1 - 0.6 * x, "world_size": 1}
        if i % 10 == 0:  # held-out quality every 10 steps, beside the run's untrained baseline
            rec.update(val_pairwise_acc=0.55 + 0.25 * x, val_pairwise_acc_start=0.55, policy_expected_reward=0.35 + 0.2 * x)
        if nan_at is not None and i >= nan_at:
            rec["loss"] = None
            rec["grad_norm"] = None
        out.append(rec)
    return out


def _cycles() -> list[dict]:
    outcomes = ["ok", "ok", "skipped", "ok", "failed", "ok", "ok", "stopped", "ok", "skipped", "ok", "ok"]
    out = []
    for i, outcome in enumerate(outcomes, start=1):
        start = NOW - (len(outcomes) - i + 1) * 600 - 120
        reason = {"ok": "trained global, signature, patch", "skipped": "too few new groups (global 4 < 20)",
                  "failed": "cycle_00005_train_patch killed by SIGKILL (out of memory?): Killed",
                  "stopped": "stopped during cycle_00008_train_global"}[outcome]
        out.append({"cycle": i, "job": "cycle", "start": start, "end": start + 95, "outcome": outcome,
                    "reason": reason, "groups": {"global": 31, "signature": 44, "patch": 22}})
    return out


def snapshot(nan: bool = False, gpu: bool = True, guard_ok: bool = True, scheduler: bool = True) -> Snapshot:
    cycles = _cycles()
    stats = {
        "time": NOW,
        "cpu": {"percent": 38.5, "load1": 3.1, "load5": 2.7, "load15": 2.2, "cores": 16},
        "ram": {"total_gb": 125.8, "available_gb": 97.2, "percent": 22.7},
        "disk": {"path": "/data", "total_gb": 1862.0, "free_gb": 840.5, "percent": 54.9},
        "gpus": ({"devices": [{"index": 0, "name": "NVIDIA H100 80GB HBM3", "util": 87, "mem_used_mb": 41230.0,
                                "mem_total_mb": 81559.0, "temp_c": 64, "power_w": 412.3,
                                "processes": [{"pid": 4242, "mem_mb": 40960.0}]}]}
                 if gpu else {"unavailable": "no NVIDIA driver or GPU (NVML Shared Library Not Found)"}),
        "containers": {"unavailable": "docker SDK not installed (pip install 'grpo-tui[containers]')"},
        "processes": {"items": [{"pid": 4242, "name": "python", "cpu_percent": 99.1, "mem_mb": 6120.0},
                                {"pid": 4100, "name": "redis-server", "cpu_percent": 2.0, "mem_mb": 48.0},
                                {"pid": 4001, "name": "grpo-tui", "cpu_percent": 0.7, "mem_mb": 92.0}]},
    }
    free = 840.5 if guard_ok else 3.2
    stats["disk"]["free_gb"] = free
    checks = [
        {"name": "disk", "value": free, "threshold": 5.0, "unit": "GB", "ok": guard_ok,
         "reason": "disk ok" if guard_ok else "disk: 3.2 GB free < 5 GB required", "verdict": "ok" if guard_ok else "FAIL"},
        {"name": "ram", "value": 97.2, "threshold": 2.0, "unit": "GB", "ok": True, "reason": "ram ok", "verdict": "ok"},
        {"name": "vram", "value": 40329.0 if gpu else None, "threshold": 0.0, "unit": "MB", "ok": True,
         "reason": "vram check off", "verdict": "off"},
    ]
    guard = {"ok": guard_ok, "reason": "all checks pass" if guard_ok else "disk: 3.2 GB free < 5 GB required",
             "checks": checks}
    config = {"period_sec": 600.0, "hours": 24.0, "min_groups": 20, "mode": "hierarchical",
              "levels": ["global", "signature", "patch"], "steps": 400, "model": "bow", "device": "auto",
              "apply_policy": False, "workspace": None, "top_k": 3, "bottom_k": 1, "lr": 0.0001, "lr_step": None,
              "lr_gamma": 0.5, "beta": 0.04, "kl_warmup": 0, "kl_target": None,
              "guard": {"min_free_gb": 5.0, "min_ram_gb": 2.0, "min_vram_mb": 0.0}}
    status = {"ok": True, "state": "running", "job": "cycle", "config": config, "next_cycle_in": None,
              "cycle_running_for": 75.0, "phase": "train global", "cycles_run": 12, "last_cycle": cycles[-1], "cycles": cycles, "pid": 4200,
              "home": "/data/agent/.grpo", "guard": guard, "stats": stats}
    series = {"cpu": [20 + 30 * abs(math.sin(i / 5)) for i in range(60)],
              "ram": [20 + i / 20 for i in range(60)]}
    if gpu:
        series["gpu0.util"] = [60 + 35 * abs(math.sin(i / 4)) for i in range(60)]
        series["gpu0.mem"] = [45 + 5 * (i % 10) / 10 for i in range(60)]
    metrics = {"global": _metrics(0, nan_at=37 if nan else None), "signature": _metrics(1), "patch": _metrics(2)}
    ckpts = [{"level": lvl, "step": 400 * k + 400, "path": f"/data/agent/.grpo/auto/ckpts_{lvl}/checkpoints/step_{400 * k + 400:06d}",
              "mtime": NOW - 700 - 100 * k, "size_mb": 0.5 + k, "loss": 0.05 + 0.01 * k}
             for k, lvl in enumerate(["global", "signature", "patch"])]
    log = {"name": "cycle_00013_train_global.log", "path": "/data/agent/.grpo/auto/logs/cycle_00013_train_global.log",
           "lines": ["INFO policy: loading 31 groups from /data/agent/.grpo/auto/global.jsonl",
                     "INFO policy: computing reference log-probs for 31 groups",
                     "INFO kernels: Triton kernels on (cuda:0, sm_90)",
                     "INFO policy: step 1630 loss 0.0512 reward 0.69 kl 0.043",
                     "INFO policy: step 1640 loss 0.0498 reward 0.70 kl 0.046"]}
    return Snapshot(time=NOW, status=status if scheduler else None,
                    status_error=None if scheduler else "no scheduler is running for /data/agent/.grpo (no control.sock)",
                    stats=stats, stats_origin="scheduler" if scheduler else "local", guard=guard, metrics=metrics,
                    heartbeats={"global": NOW - 2}, checkpoints=ckpts, log=log, series=series,
                    runs={"global": {"start_step": 0, "target_step": 400, "started": NOW - 61}})


def fixed_source(**kw: bool) -> FixedSource:
    return FixedSource(snapshot(**kw), now=NOW, home=Path("/data/agent/.grpo"))


def plain_screen(app) -> str:
    """The console's current screen as plain text (what a person reads), for assertions."""
    import io

    from rich.console import Console

    width, height = app.size
    console = Console(width=width, height=height, file=io.StringIO(), force_terminal=True, record=True, color_system=None)
    console.print(app.screen._compositor.render_update(full=True, screen_stack=app._background_screens))
    return console.export_text()
