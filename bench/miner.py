"""Benchmark of the miner: entries/s of full mining beside the raw read rate of the same entries.

`run_bench(entries=200_000)` seeds a fresh embedded store (in a temp folder) with `entries` demo
actions spread over the last day, then measures, each in a fresh subprocess (so peak memory is the
measured call's own), interleaved over `rounds` rounds so machine load hits every kind alike:

  raw         redis-py XRANGE pages of `page_size` over the whole stream, no parsing (the baseline)
  mine        `miner.mine.mine`: read the 48 h window, parse, group, write global.jsonl
  mine-hier   the same with the three levels (global, signature, patch)

Rows: entries, seconds (wall, median over rounds), entries_per_s, rate_vs_raw (mining rate / raw
rate; the target is >= 0.5), the same over the client process's CPU time (cpu_seconds,
entries_per_cpu_s, cpu_rate_vs_raw: steadier on a busy machine, and blind to time spent waiting on
the server) and peak_extra_mib (resident-set high-water mark over the baseline).
`python -m bench.miner [--entries N] [--rounds R] [--json]` prints them; `bench/cases/miner.py`
registers the same measurement as the `grpo bench miner` case.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

KINDS = ("raw", "mine", "mine-hier")
STREAM = "rl_actions"
PAGE_SIZE = 1000


def seed(store: Any, entries: int, seed: int = 0, now: float | None = None, distinct: int = 4000) -> None:
    """`entries` demo actions over the last day: `distinct` generated records, repeated with a unique
    action id, timestamp and a suffix on the answer (so every candidate text stays distinct)."""
    from miner.demo import demo_actions, stream_ids

    now = time.time() if now is None else now
    base, _ = demo_actions(min(entries, distinct), seed, now, days=1.0)
    times = [now - 86_400 + 86_400 * (i + 0.5) / entries for i in range(entries)]
    ids = stream_ids(times, None)
    client = store.client
    with store.errors():
        client.delete(STREAM)
        for lo in range(0, entries, 2000):
            pipe = client.pipeline(transaction=False)
            for i in range(lo, min(lo + 2000, entries)):
                rec = dict(base[i % len(base)])
                result = dict(rec["result"])
                key = next(k for k in ("output", "stdout", "patch_content") if k in result)
                result[key] = f"{result[key]}\n[run {i}]"
                rec.update(result=result, action_id=f"bench-{i}", timestamp=times[i])
                pipe.xadd(STREAM, {"data": orjson.dumps(rec)}, id=ids[i])
            pipe.execute()


def read_raw(store: Any, page_size: int = PAGE_SIZE) -> int:
    """The baseline: XRANGE pages over the whole stream with plain redis-py, no parsing."""
    n, low = 0, "-"
    with store.errors():
        while True:
            page = store.client.xrange(STREAM, min=low, count=page_size)
            n += len(page)
            if len(page) < page_size:
                return n
            low = b"(" + page[-1][0]


def run_mine(store: Any, home: Path, hierarchical: bool, page_size: int = PAGE_SIZE) -> int:
    from miner.groups import LEVELS
    from miner.mine import MineParams, mine

    params = MineParams(hours=48, levels=LEVELS if hierarchical else ("global",), page_size=page_size)
    result = mine(store, params, home, out=home / "bench" / "global.jsonl", out_dir=home / "bench")
    return result.entries_read


def measure(kind: str, home: Path, page_size: int = PAGE_SIZE) -> dict[str, Any]:
    """One timed call of `kind` in this process, with its peak extra memory."""
    import miner.mine  # noqa: F401  (imported before the clock starts, as in a warm process)
    from bench.memory import CpuProbe
    from miner.store import open_store

    store = open_store(home)
    store.client.ping()
    probe = CpuProbe()
    probe.start()
    cpu0 = time.process_time()
    start = time.perf_counter()
    if kind == "raw":
        n = read_raw(store, page_size)
    elif kind in ("mine", "mine-hier"):
        n = run_mine(store, home, kind == "mine-hier", page_size)
    else:
        raise ValueError(f"unknown kind {kind!r}; choose from {', '.join(KINDS)}")
    seconds = time.perf_counter() - start
    cpu_seconds = time.process_time() - cpu0
    return {"kind": kind, "entries": n, "seconds": seconds, "cpu_seconds": cpu_seconds,
            "peak_extra_mib": probe.peak_extra_mib(), "mem_probe": probe.name}


def _measure_in_subprocess(kind: str, home: Path, page_size: int) -> dict[str, Any]:
    root = Path(__file__).resolve().parents[1]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")])))
    proc = subprocess.run([sys.executable, "-m", "bench.miner", "--measure", kind, "--home", str(home), "--page-size", str(page_size)],
                          capture_output=True, text=True, env=env, check=False)
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"miner bench {kind} failed (exit {proc.returncode}): {proc.stderr.strip()[-2000:]}")
    return json.loads(lines[-1])


def run_bench(entries: int = 200_000, rounds: int = 3, page_size: int = PAGE_SIZE, kinds: tuple[str, ...] = KINDS,
              log: Any = None) -> list[dict[str, Any]]:
    """Seed a fresh store, measure every kind `rounds` times (interleaved), return one row per kind."""
    from miner.store import open_store

    tmp = Path(tempfile.mkdtemp(prefix="grpo-bench-miner-"))
    home = tmp / ".grpo"
    store = open_store(home)
    try:
        t0 = time.perf_counter()
        seed(store, entries)
        if log:
            log(f"seeded {entries} entries in {time.perf_counter() - t0:.1f}s")
        runs: dict[str, list[dict[str, Any]]] = {k: [] for k in kinds}
        for r in range(rounds):
            for kind in kinds:
                run = _measure_in_subprocess(kind, home, page_size)
                runs[kind].append(run)
                if log:
                    log(f"round {r + 1}/{rounds} {kind}: {run['entries'] / run['seconds']:,.0f} entries/s, "
                        f"peak extra {run['peak_extra_mib']:.1f} MiB")
    finally:
        if store.server is not None:
            store.server.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    rows = []
    for kind, kind_runs in runs.items():
        seconds = statistics.median(run["seconds"] for run in kind_runs)
        n = kind_runs[0]["entries"]
        cpu = statistics.median(run["cpu_seconds"] for run in kind_runs)
        rows.append({"case": "miner", "provider": kind, "entries": n, "page_size": page_size, "rounds": rounds,
                     "seconds": seconds, "entries_per_s": n / seconds, "cpu_seconds": cpu, "entries_per_cpu_s": n / cpu,
                     "peak_extra_mib": max(run["peak_extra_mib"] for run in kind_runs),
                     "mem_probe": kind_runs[0]["mem_probe"]})
    raw = next((row for row in rows if row["provider"] == "raw"), None)
    for row in rows:
        row["rate_vs_raw"] = row["entries_per_s"] / raw["entries_per_s"] if raw else None
        row["cpu_rate_vs_raw"] = row["entries_per_cpu_s"] / raw["entries_per_cpu_s"] if raw else None
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.miner", description=__doc__.split("\n\n")[0])
    parser.add_argument("--entries", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--page-size", type=int, default=PAGE_SIZE)
    parser.add_argument("--json", action="store_true", help="print the rows as one JSON object (last line)")
    parser.add_argument("--measure", choices=KINDS, help=argparse.SUPPRESS)  # internal: one run in this process
    parser.add_argument("--home", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.measure:
        print(json.dumps(measure(args.measure, args.home, args.page_size)))
        return 0
    rows = run_bench(args.entries, args.rounds, args.page_size, log=lambda line: print(line, file=sys.stderr))
    if args.json:
        print(json.dumps({"case": "miner", "rows": rows}))
    else:
        for row in rows:
            print(f"{row['provider']:>10}: {row['entries_per_s']:>10,.0f} entries/s  x{row['rate_vs_raw']:.2f} of raw  "
                  f"(client CPU: {row['entries_per_cpu_s']:,.0f} entries/s, x{row['cpu_rate_vs_raw']:.2f})  "
                  f"median {row['seconds']:.2f}s  peak extra {row['peak_extra_mib']:.1f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
