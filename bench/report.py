"""Render results: the rich table of cases, the AOT table, and the one-line JSON object.

Columns: time p20/p50/p80 in ms over the repeats; peak extra MiB over the footprint of the inputs
(fresh subprocess per row); max abs err against float64 over all outputs (loss and gradients);
time and memory as a multiple of `naive` at the same size; on CUDA, roofline = achieved bandwidth
(minimum bytes moved / p50 time) as a fraction of the device's peak. A case with an `extra` hook gets
a second table of its own numbers (`extra_tables`: one column per key of the rows' `extra`, the same
names as in the JSON), e.g. `rollout`'s generation and update tokens/s and its step-time split.
"""

from __future__ import annotations

import json
from typing import Any

from rich.table import Table

JSON_DROP = ("stderr",)


def _num(value: float | None, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def cases_table(rows: list[dict[str, Any]], device: str) -> Table:
    table = Table(title=f"grpo bench ({device})", show_lines=False)
    columns = ["case", "provider", "tokens", "vocab", "hidden", "dtype", "p20 ms", "p50 ms", "p80 ms",
               "peak extra MiB", "max abs err", "time x naive", "mem x naive"]
    if device == "cuda":
        columns.append("roofline %")
    for name in columns:
        table.add_column(name, justify="left" if name in ("case", "provider", "dtype") else "right")
    for r in rows:
        provider = f"{r['provider']} ({r['backend']})" if r.get("backend") else r["provider"]
        head = [r["case"], provider, str(r["tokens"]), _num(r["vocab"], "d"), _num(r["hidden"], "d"), r["dtype"]]
        if "error" in r:
            table.add_row(*head, f"[red]failed: {r['error']}[/red]", *[""] * (len(columns) - len(head) - 1))
            continue
        cells = [
            _num(r["time_ms_p20"], ".2f"), _num(r["time_ms_p50"], ".2f"), _num(r["time_ms_p80"], ".2f"),
            _num(r["peak_extra_mib"], ".1f"), _num(r["max_abs_err"], ".1e"),
            _num(r.get("time_vs_naive"), ".2f"), _num(r.get("mem_vs_naive"), ".2f"),
        ]
        if device == "cuda":
            cells.append(_num(None if r.get("roofline") is None else 100 * r["roofline"], ".1f"))
        table.add_row(*head, *cells)
    return table


def _extra_num(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.0f}" if abs(value) >= 1000 else format(value, ".4g")
    return "-" if value is None else str(value)


def extra_tables(rows: list[dict[str, Any]]) -> list[Table]:
    """One table per case whose rows carry `extra`: case, provider, tokens, then each extra key."""
    by_case: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        if r.get("extra") and "error" not in r:
            by_case.setdefault(r["case"], []).append(r)
    tables = []
    for case, case_rows in by_case.items():
        keys = list(dict.fromkeys(k for r in case_rows for k in r["extra"]))
        table = Table(title=f"{case}: the case's own numbers (JSON `extra`)")
        for name in ["case", "provider", "tokens", *keys]:
            table.add_column(name, justify="left" if name in ("case", "provider") else "right")
        for r in case_rows:
            table.add_row(r["case"], r["provider"], str(r["tokens"]), *[_extra_num(r["extra"].get(k)) for k in keys])
        tables.append(table)
    return tables


def aot_table(rows: list[dict[str, Any]]) -> Table:
    table = Table(title="AOT compile (triton.compile)")
    columns = ["kernel", "arch", "registers", "spills", "shared"]
    columns += sorted({k for r in rows for k in r} - set(columns))
    for name in columns:
        table.add_column(name, justify="left" if name in ("kernel", "arch") else "right")
    for r in rows:
        table.add_row(*[str(r.get(name, "-")) for name in columns])
    return table


def to_json(device: str, rows: list[dict[str, Any]], aot: list[dict[str, Any]], skipped: list[str], ddp: dict[str, Any] | None = None) -> str:
    """The one JSON object `--json` prints as the last line (`ddp`: `bench.ddp.run_bench`'s result, when run)."""
    cases = [{k: v for k, v in r.items() if k not in JSON_DROP} for r in rows]
    extra = {} if ddp is None else {"ddp": ddp}
    return json.dumps({"device": device, "cases": cases, "aot": aot, "skipped": skipped, **extra}, separators=(",", ":"))
