"""`grpo train-judge`: demo seed -> mine -> a judge that ranks held-out candidates; typed errors exit 1/2."""

from __future__ import annotations

import json
from pathlib import Path


def test_train_judge_on_mined_demo_groups(grpo, store, tmp_path: Path) -> None:
    assert grpo("demo", "seed", "--json")[0] == 0
    code, _, err = grpo("mine", "--hours", "48", "--out", str(tmp_path / "global.jsonl"), "--json")
    assert code == 0, err
    out = tmp_path / "judge"
    code, stdout, err = grpo("train-judge", "--dataset", str(tmp_path / "global.jsonl"), "--out", str(out), "--device", "cpu", "--json")
    assert code == 0, err
    summary = json.loads(stdout.splitlines()[-1])
    assert summary["out"] == str(out) and summary["model"] == "bow"
    assert summary["val_pairwise_acc"] >= 0.75 and summary["val_pairs"] > 0, summary
    assert {"train_pairwise_acc", "pairs", "groups"} <= summary.keys()
    assert json.loads((out / "judge.json").read_text())["kind"] == "bow"

    from policy.judge import load_judge

    judge = load_judge(out, device="cpu")
    good, bad = judge(["Fix the crash in load_page of pagination.py"] * 2, [
        "```diff\n--- a/pagination.py\n+++ b/pagination.py\n```\nRan the tests: `pytest -q tests/` -> 40 passed, 0 failed.",
        "Done.",
    ])  # fmt: skip
    assert good > bad

    code, stdout, _ = grpo("train-judge", "--dataset", str(tmp_path / "global.jsonl"), "--out", str(out), "--steps", "3")
    assert code == 0 and f"written to {out}" in stdout and "held-out pairwise accuracy" in stdout


def test_bad_dataset_path_and_bad_model_fail_with_one_clear_line(grpo, tmp_path: Path) -> None:
    missing = tmp_path / "nope.jsonl"
    code, _, err = grpo("train-judge", "--dataset", str(missing), "--out", str(tmp_path / "j"))
    assert code == 1 and f"{missing}: cannot read dataset" in err and "Traceback" not in err
    assert not (tmp_path / "j").exists()
    missing.write_text('{"prompt": "p", "candidates": [{"text": "a", "reward": 0}, {"text": "b", "reward": 1}]}\n')
    code, _, err = grpo("train-judge", "--dataset", str(missing), "--model", str(tmp_path / "no-such-model"))
    assert code == 2 and "--model" in err
