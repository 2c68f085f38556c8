"""Pure text helpers for the console panels: numbers, ages, sparklines, verdict and outcome marks.

Nothing here imports textual; every function takes plain values and returns `str` or `rich.text.Text`.
Meaning never rides on colour alone: each verdict and outcome has a symbol and a word, so the console
reads the same under NO_COLOR or on a monochrome terminal. Values may be None (a non-finite value
logged as null, or one not measured), NaN or inf: they render as `NaN/inf` / `—`, never raise.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

from rich.text import Text

BARS = "▁▂▃▄▅▆▇█"
BAD_POINT = "×"  # a non-finite (or null) point in a sparkline
DASH = "—"

OUTCOME_MARK = {"ok": ("✓", "ok", "green"), "skipped": ("○", "skipped", "yellow"),
                "failed": ("✗", "failed", "red"), "stopped": ("■", "stopped", "magenta")}
VERDICT_MARK = {"ok": ("✓", "ok", "green"), "FAIL": ("✗", "FAIL", "bold red"), "off": ("○", "off", "dim")}
STATE_MARK = {"idle": ("○", "idle", "dim"), "waiting": ("◷", "waiting", "cyan"), "running": ("▶", "running", "green"),
              "stopping": ("■", "stopping", "yellow"), "no scheduler": ("✗", "no scheduler", "red")}


def finite(value: object) -> float | None:
    """`value` as a float when it is a finite number, else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def num(value: object, missing: str = DASH) -> str:
    """Compact number: 4 significant digits, scientific when tiny or huge; NaN/inf/null shown as such."""
    if value is None:
        return missing
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    if value == 0:
        return "0"
    if isinstance(value, int) and abs(value) < 1e6:
        return str(value)
    mag = abs(value)
    return f"{value:.2e}" if mag < 1e-3 or mag >= 1e5 else f"{value:.4g}"


def ago(seconds: float | None) -> str:
    """A short duration: 42s, 3m05s, 2h10m, 3d4h."""
    if seconds is None or not math.isfinite(seconds):
        return DASH
    s = max(0, int(round(seconds)))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{(s % 3600) // 60:02d}m"
    return f"{s // 86400}d{(s % 86400) // 3600}h"


def age(seconds: float | None) -> str:
    """A coarse age for tables: 42s under a minute, then 10m, 3h05m, 2d4h (changes once a minute)."""
    if seconds is not None and math.isfinite(seconds) and 60 <= seconds < 3600:
        return f"{int(seconds) // 60}m"
    return ago(seconds)


def sparkline(values: Sequence[object], width: int = 20, style: str = "cyan",
              lo: float | None = None, hi: float | None = None) -> Text:
    """The last `width` values as bars; bad points as `×`. The scale is `lo..hi` where given (a fixed scale:
    0..100 for percentages, so 100 % is a full bar and 99.5 % nearly one), else the finite min / max of the
    values shown; values outside a fixed scale are clamped to it."""
    tail = list(values)[-width:]
    good = [v for v in (finite(x) for x in tail) if v is not None]
    text = Text()
    if not tail:
        return Text(DASH, style="dim")
    lo = lo if lo is not None else (min(good) if good else 0.0)
    hi = hi if hi is not None else (max(good) if good else 0.0)
    for raw in tail:
        v = finite(raw)
        if v is None:
            text.append(BAD_POINT, style="bold red")
        elif hi <= lo:
            text.append(BARS[len(BARS) // 2 - 1], style=style)
        else:
            frac = min(1.0, max(0.0, (v - lo) / (hi - lo)))
            text.append(BARS[min(len(BARS) - 1, int(frac * len(BARS)))], style=style)
    return text


def last_min_max(values: Iterable[object]) -> tuple[object, float | None, float | None]:
    """(last raw value, min, max over the finite values)."""
    seq = list(values)
    good = [v for v in (finite(x) for x in seq) if v is not None]
    return (seq[-1] if seq else None), (min(good) if good else None), (max(good) if good else None)


def mark(table: dict[str, tuple[str, str, str]], key: str | None, fallback: str = "?") -> Text:
    """`✓ ok`-style symbol and word, coloured, for a verdict / outcome / state."""
    symbol, word, style = table.get(key or "", ("?", key or fallback, "dim"))
    return Text(f"{symbol} {word}", style=style)


def outcome_symbol(outcome: str | None) -> Text:
    symbol, _word, style = OUTCOME_MARK.get(outcome or "", ("?", "", "dim"))
    return Text(symbol, style=style)


def timeline(cycles: Sequence[dict], width: int = 20) -> Text:
    """One symbol per cycle, oldest left: ✓ ok, ○ skipped, ✗ failed, ■ stopped; dots pad to `width`."""
    tail = list(cycles)[-width:]
    text = Text("·" * (width - len(tail)), style="dim")
    for rec in tail:
        text.append_text(outcome_symbol(rec.get("outcome")))
    return text


def gb(value: object) -> str:
    v = finite(value)
    return DASH if v is None else f"{v:.1f}"
