"""Benchmark of data-parallel training: offline `grpo train` with `--nproc 1` beside `--nproc N`.

`run_bench(nproc=2, model="tiny", steps=8, groups_per_step=4)` writes a small generated group dataset
into a temp folder and runs the real command twice, each a fresh `python -m grpo_tui.cli` with its own
`--home` and `--out`, `--deterministic --seed 0`, the same steps and the same `--groups-per-step`: the
global batch is the same in both runs (data parallel splits each step's groups over the N ranks, so
groups_per_step must divide by N). Per run, from its metrics.jsonl (one record per step):

  train_s           sum of the records' `train_s` (the update: forward, backward, all-reduce, optimiser)
  steps_per_s       steps / train_s
  wall_s            wall time of the whole command (start-up, torchrun, reference log-probs, checkpoint)
  wall_steps_per_s  steps / wall_s
  world_size        what the records say (1 when they do not carry it)

Both runs get the same CPU threads per process, OMP_NUM_THREADS = cpu count // N (unless it is set
already): one process stands for one device of the N, so the comparison is one device against N (and
the single run does not oversubscribe threads that torchrun would cap at one per rank).
For the N-process run: speedup = steps_per_s(N) / steps_per_s(1) (and the same over wall time),
efficiency = speedup / N. Nothing is asserted about speed: on a 2-core CPU box the gloo ranks share the
cores and efficiency is low. `grpo bench ddp` prints the table; `python -m bench.ddp` the same.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.errors import BenchError, BenchUsageError

ROOT = Path(__file__).resolve().parents[1]
WORDS = "sorted open loads requests pytest archive".split()
MODELS = ("bow", "tiny")


def write_groups(path: Path, n: int) -> Path:
    """n groups whose best candidate names the word the prompt asks for (every word a candidate)."""
    lines = []
    for i in range(n):
        want = WORDS[i % len(WORDS)]
        cands = [{"text": f"use {w} here", "reward": 1.0 if w == want else 0.1 * j} for j, w in enumerate(WORDS)]
        lines.append(json.dumps({"prompt": f"task {i}: we need {want}", "candidates": cands}))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def run_train(tmp: Path, dataset: Path, nproc: int, model: str, steps: int, groups_per_step: int, threads: int) -> dict[str, Any]:
    """One `grpo train --nproc nproc` in a fresh interpreter; its numbers from metrics.jsonl."""
    out = tmp / f"nproc{nproc}"
    argv = [sys.executable, "-m", "grpo_tui.cli", "--home", str(out / "home"), "train", "--dataset", str(dataset),
            "--out", str(out / "run"), "--model", model, "--steps", str(steps), "--groups-per-step", str(groups_per_step),
            "--nproc", str(nproc), "--deterministic", "--seed", "0", "--json"]  # fmt: skip
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env.setdefault("OMP_NUM_THREADS", str(threads))
    start = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=tmp, check=False)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise BenchError(f"grpo train --nproc {nproc} failed (exit {proc.returncode}):\n{proc.stderr[-4000:].rstrip()}")
    metrics = out / "run" / "metrics.jsonl"
    records = [r for r in map(json.loads, metrics.read_text(encoding="utf-8").splitlines()) if "train_s" in r]
    if not records:
        raise BenchError(f"grpo train --nproc {nproc} wrote no step records to {metrics}")
    train_s = sum(r["train_s"] for r in records)
    return {
        "nproc": nproc, "world_size": int(records[-1].get("world_size", 1)), "steps": len(records),
        "groups_per_step": groups_per_step, "groups_per_rank": groups_per_step // nproc,
        "threads_per_process": int(env["OMP_NUM_THREADS"]), "train_s": train_s, "steps_per_s": len(records) / train_s, "wall_s": wall, "wall_steps_per_s": len(records) / wall,
    }  # fmt: skip


def run_bench(nproc: int = 2, model: str = "tiny", steps: int = 8, groups_per_step: int = 4) -> dict[str, Any]:
    """Both runs and the comparison: {"rows": [1 process, N processes], "speedup", "efficiency", ...}."""
    if nproc < 1 or groups_per_step % nproc:
        raise BenchUsageError(f"--groups-per-step {groups_per_step} must divide by --nproc {nproc} (the global batch is split over the ranks)")
    if model not in MODELS:
        raise BenchUsageError(f"--model must be one of {', '.join(MODELS)}, not {model!r}")
    with tempfile.TemporaryDirectory(prefix="grpo-bench-ddp-") as name:
        tmp = Path(name)
        dataset = write_groups(tmp / "groups.jsonl", max(24, steps * groups_per_step))
        threads = max(1, (os.cpu_count() or 1) // nproc)
        rows = [run_train(tmp, dataset, n, model, steps, groups_per_step, threads) for n in dict.fromkeys((1, nproc))]
    one, many = rows[0], rows[-1]
    speedup = many["steps_per_s"] / one["steps_per_s"]
    wall_speedup = many["wall_steps_per_s"] / one["wall_steps_per_s"]
    return {
        "model": model, "nproc": nproc, "steps": steps, "groups_per_step": groups_per_step, "rows": rows,
        "speedup": speedup, "efficiency": speedup / nproc, "wall_speedup": wall_speedup, "wall_efficiency": wall_speedup / nproc,
        "note": f"same global batch in both runs: {groups_per_step} groups per step, {groups_per_step // nproc} per rank with {nproc} ranks",
    }  # fmt: skip


def table(result: dict[str, Any]):
    from rich.table import Table

    t = Table(title=f"grpo bench ddp ({result['model']}, {result['steps']} steps)", caption=result["note"])
    for name in ("nproc", "world", "threads", "groups/step", "groups/rank", "train s", "steps/s", "wall s", "wall steps/s", "speedup", "efficiency"):
        t.add_column(name, justify="right")
    for r in result["rows"]:
        last = r is result["rows"][-1] and r["nproc"] > 1
        t.add_row(
            str(r["nproc"]), str(r["world_size"]), str(r["threads_per_process"]), str(r["groups_per_step"]), str(r["groups_per_rank"]),
            f"{r['train_s']:.3f}", f"{r['steps_per_s']:.2f}", f"{r['wall_s']:.1f}", f"{r['wall_steps_per_s']:.3f}",
            f"{result['speedup']:.2f} (wall {result['wall_speedup']:.2f})" if last else "1.00",
            f"{result['efficiency']:.2f} (wall {result['wall_efficiency']:.2f})" if last else "1.00",
        )  # fmt: skip
    return t


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ddp", description=__doc__.splitlines()[0])
    parser.add_argument("--nproc", type=int, default=2)
    parser.add_argument("--model", choices=MODELS, default="tiny")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--groups-per-step", type=int, default=4)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    result = run_bench(args.nproc, args.model, args.steps, args.groups_per_step)
    if args.json:
        print(json.dumps(result, separators=(",", ":")))
    else:
        from rich.console import Console

        Console().print(table(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
