"""`grpo report` on real training runs: JSON summaries, intervals, a one-step run, errors."""

from __future__ import annotations

import json
from pathlib import Path

import orjson
import pytest

from test_train_cli import dataset


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def last_json(out: str) -> dict:
    return orjson.loads(out.strip().splitlines()[-1])


def test_report_two_runs_and_a_one_step_run(grpo, home: Path, tmp_path: Path) -> None:
    data = dataset(tmp_path / "d.jsonl")
    runs = {"a": (10, "0.05"), "b": (10, "0.01"), "one": (1, "0.05")}
    for name, (steps, lr) in runs.items():
        code, _, err = grpo("train", "--dataset", str(data), "--steps", str(steps), "--lr", lr, "--out", str(tmp_path / name),
                            "--val-dataset", str(data), "--val-interval", "2", "--json")
        assert code == 0, err
    code, out, err = grpo("report", *(str(tmp_path / n) for n in runs), "--json")
    assert code == 0, err
    result = last_json(out)
    assert [r["run"] for r in result["runs"]] == [str(tmp_path / n) for n in runs]
    assert result["resamples"] == 1000 and result["ci"] == 0.95
    a, b, one = result["runs"]
    assert a["steps"] == b["steps"] == 10 and one["steps"] == 1
    assert a["window"] == 2 and one["window"] == 1  # 20% of the run, at least 1
    for run in result["runs"]:
        assert {"reward_mean", "loss", "kl", "entropy", "clip_frac_low", "clip_frac_high", "val_pairwise_acc"} <= set(run["metrics"])
        records = [json.loads(line) for line in Path(run["metrics_file"]).read_text().splitlines()]
        for name, m in run["metrics"].items():
            assert m["lo"] <= m["mean"] <= m["hi"], (run["run"], name, m)
            values = [r[name] for r in records if r.get(name) is not None]
            tail = values[-m["n"]:]
            assert m["mean"] == pytest.approx(sum(tail) / len(tail), rel=1e-12, abs=1e-15)
            assert min(tail) <= m["lo"] and m["hi"] <= max(tail)  # resampled means stay within the values
            assert m["change"] == pytest.approx(m["mean"] - m["first"], rel=1e-12, abs=1e-15)
    for name, m in one["metrics"].items():  # one step: the interval is the value itself, no change
        assert m["lo"] == m["mean"] == m["hi"] and m["change"] == 0 and m["n"] == 1, name
    assert a["metrics"]["val_pairwise_acc"]["values"] == 5  # every 2nd step of 10
    code, out, err = grpo("report", str(tmp_path / "a"), "--last", "4", "--json")
    assert code == 0, err
    assert all(m["n"] == min(4, m["values"]) for m in last_json(out)["runs"][0]["metrics"].values())
    code, out, err = grpo("report", str(tmp_path / "a"), str(tmp_path / "b"))  # the table, runs side by side
    assert code == 0, err
    assert "reward_mean" in out and "steps" in out


def test_report_errors(grpo, home: Path, tmp_path: Path) -> None:
    code, _, err = grpo("report", str(tmp_path))
    assert code == 1 and "no metrics.jsonl" in err
    (tmp_path / "metrics.jsonl").write_text("")
    code, _, err = grpo("report", str(tmp_path))
    assert code == 1 and "no metrics records" in err
    code, _, err = grpo("report")
    assert code == 2
