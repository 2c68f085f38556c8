"""policy.metrics: DESIGN keys, non-finite as null, truncation on resume."""

from __future__ import annotations

from pathlib import Path

import orjson

from policy.metrics import KEYS, MetricsWriter, read_metrics, truncate_after


def test_records_carry_the_design_keys_and_null_for_non_finite(tmp_path: Path) -> None:
    writer = MetricsWriter(tmp_path / "metrics.jsonl")
    writer.write({"step": 1, "loss": float("nan"), "kl": float("inf"), "extra": [1.0, float("-inf")]})
    text = (tmp_path / "metrics.jsonl").read_text()
    assert "NaN" not in text and "Infinity" not in text
    (rec,) = read_metrics(tmp_path / "metrics.jsonl")
    assert list(rec)[: len(KEYS)] == list(KEYS)
    assert rec["loss"] is None and rec["kl"] is None and rec["extra"] == [1.0, None] and rec["lr"] is None


def test_truncate_keeps_earlier_lines_byte_for_byte_and_drops_a_torn_line(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    lines = [orjson.dumps({"step": s, "loss": s / 3}) for s in range(1, 6)]
    path.write_bytes(b"\n".join(lines) + b'\n{"step": 6, "lo')
    assert truncate_after(path, 3) == 3
    assert path.read_bytes() == b"\n".join(lines[:3]) + b"\n"
    assert truncate_after(tmp_path / "absent.jsonl", 3) == 0
