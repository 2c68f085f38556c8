"""`bench.miner`: the miner benchmark runs end to end on a tiny store (rows, not speed, are checked)."""

from __future__ import annotations

import psutil

from bench.miner import KINDS, run_bench


def test_run_bench_reports_each_kind_against_raw():
    rows = run_bench(entries=300, rounds=1)
    assert [r["provider"] for r in rows] == list(KINDS)
    for row in rows:
        assert row["entries"] == 300 and row["entries_per_s"] > 0 and row["peak_extra_mib"] >= 0
        assert row["rate_vs_raw"] > 0 and row["cpu_rate_vs_raw"] > 0
    assert rows[0]["rate_vs_raw"] == 1.0
    left = [p.pid for p in psutil.process_iter(["cmdline", "status"])
            if "grpo-bench-miner-" in " ".join(p.info["cmdline"] or []) and p.info["status"] != psutil.STATUS_ZOMBIE]
    assert left == []  # its embedded server was stopped
