"""`--plot FILE.png`: peak extra memory and p50 time against tokens, one line per (case, provider, vocab).

matplotlib is optional (`pip install matplotlib`, or the `plot` extra); `require_matplotlib()` fails
before any benchmark runs when it is missing. The PNG is written atomically.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from bench.errors import BenchError
from grpo_tui.figures import save_png


def require_matplotlib() -> None:
    if importlib.util.find_spec("matplotlib") is None:
        raise BenchError("--plot needs matplotlib: pip install matplotlib (or pip install 'grpo-tui[plot]')")


def plot(rows: list[dict[str, Any]], path: Path) -> Path:
    require_matplotlib()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lines: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        if "error" not in r:
            vocab = f" V={r['vocab']}" if r["vocab"] else ""
            lines.setdefault(f"{r['case']} {r['provider']}{vocab} {r['dtype']}", []).append(r)
    fig, (mem_ax, time_ax) = plt.subplots(1, 2, figsize=(12, 4.5))
    for label, points in lines.items():
        points.sort(key=lambda r: r["tokens"])
        tokens = [r["tokens"] for r in points]
        mem_ax.plot(tokens, [r["peak_extra_mib"] for r in points], marker="o", label=label)
        time_ax.plot(tokens, [r["time_ms_p50"] for r in points], marker="o", label=label)
    for ax, ylabel in ((mem_ax, "peak extra memory (MiB)"), (time_ax, "time p50 (ms)")):
        ax.set_xlabel("tokens")
        ax.set_ylabel(ylabel)
        ax.grid(True, alpha=0.3)
    time_ax.legend(fontsize="small")
    fig.tight_layout()
    return save_png(fig, path)
