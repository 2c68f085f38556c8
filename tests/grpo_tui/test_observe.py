"""grpo_tui.observe: metric tails, checkpoints and the log tail read safely from a live home."""

from __future__ import annotations

import math
import os
from pathlib import Path

import orjson

from grpo_tui import observe


def _write(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return path


def test_metrics_tail_skips_a_torn_line_and_reads_nan_tokens(tmp_path: Path) -> None:
    lines = [orjson.dumps({"step": i, "loss": 1.0 / i}).decode() for i in range(1, 301)]
    body = "\n".join(lines) + '\n{"step": 301, "loss": NaN, "kl": Infinity}\n{"step": 302, "lo'
    _write(tmp_path / "auto" / "ckpts_global" / "metrics.jsonl", body)
    _write(tmp_path / "auto" / "ckpts_patch" / "metrics.jsonl", "")
    _write(tmp_path / "metrics.jsonl", '{"step": 1, "loss": null}\n')
    got = observe.metrics(tmp_path, limit=50)
    assert list(got) == ["global", "patch", "one-off"]  # level order, then the one-off run
    steps = [r["step"] for r in got["global"]]
    assert steps == list(range(252, 302))  # newest 50, the torn 302 dropped
    assert math.isnan(got["global"][-1]["loss"]) and math.isinf(got["global"][-1]["kl"])
    assert got["patch"] == [] and got["one-off"] == [{"step": 1, "loss": None}]


def test_tail_of_a_big_file_reads_only_its_end(tmp_path: Path) -> None:
    path = _write(tmp_path / "m.jsonl", b"".join(orjson.dumps({"step": i, "pad": "x" * 200}) + b"\n" for i in range(20_000)))
    assert path.stat().st_size > 4 * 2**20
    records = observe.read_records(path, limit=10, max_bytes=64 * 1024)
    assert [r["step"] for r in records] == list(range(19_990, 20_000))


def test_checkpoints_newest_first_ignoring_unfinished(tmp_path: Path) -> None:
    root = tmp_path / "auto" / "ckpts_global" / "checkpoints"
    for step, age in ((100, 300), (200, 100)):
        folder = root / f"step_{step:06d}"
        _write(folder / "meta.json", orjson.dumps({"step": step, "metrics": {"loss": step / 1000}}))
        _write(folder / "weights.bin", b"\0" * 2048)
        os.utime(folder, (os.path.getmtime(folder) - age,) * 2)
    _write(root / "step_000300.tmp" / "meta.json", "{}")  # still being written
    _write(tmp_path / "checkpoints" / "step_000050" / "bow.json", "{}")  # one-off run, no meta
    rows = observe.checkpoints(tmp_path)
    assert [(r["level"], r["step"]) for r in rows][:2] == [("one-off", 50), ("global", 200)]
    by_step = {r["step"]: r for r in rows}
    assert by_step[200]["loss"] == 0.2 and by_step[50]["loss"] is None
    assert 300 not in by_step and by_step[100]["size_mb"] > 0


def test_log_tail_prefers_the_newest_child_log(tmp_path: Path) -> None:
    assert observe.log_tail(tmp_path) == {"name": None, "path": None, "lines": []}
    _write(tmp_path / "auto" / "daemon.log", "daemon up\n")
    assert observe.log_tail(tmp_path)["lines"] == ["daemon up"]
    old = _write(tmp_path / "auto" / "logs" / "cycle_00001_mine.log", "old\n")
    os.utime(old, (1, 1))
    _write(tmp_path / "auto" / "logs" / "cycle_00002_train_global.log", "\n".join(f"line {i}" for i in range(100)))
    tail = observe.log_tail(tmp_path, lines=3)
    assert tail["name"] == "cycle_00002_train_global.log" and tail["lines"] == ["line 97", "line 98", "line 99"]


def test_collect_on_an_empty_or_missing_home(tmp_path: Path) -> None:
    for home in (tmp_path, tmp_path / "missing"):
        got = observe.collect(home)
        assert got == {"metrics": {}, "heartbeats": {}, "checkpoints": [], "log": {"name": None, "path": None, "lines": []}, "runs": {}}
