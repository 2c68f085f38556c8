"""`save_png(fig, path)`: a matplotlib figure written atomically as PNG (the old file or the new one, never
half a file), then closed. Shared by `grpo eval --sweep --plot` and `grpo bench --plot` (bench may import
grpo_tui; not the other way round)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from miner.atomic import write_atomic


def save_png(fig: Any, path: Path) -> Path:
    import matplotlib.pyplot as plt

    png = io.BytesIO()
    try:
        fig.savefig(png, format="png", dpi=110)
    finally:
        plt.close(fig)
    write_atomic(path, png.getvalue())
    return path
