"""policy.data: validation with file:line errors, skipping, truncation, blocklist, reward axes, fingerprint."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from policy.data import load_dataset
from policy.errors import DatasetError


def write(path: Path, *lines: object) -> Path:
    path.write_text("".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines), encoding="utf-8")
    return path


GOOD = {"prompt": "Refactor function for clarity", "candidates": [{"text": "A", "reward": 0.2}, {"text": "B", "reward": 0.8}], "meta": {"context_hash": "x"}}


def test_reads_groups_tolerating_missing_meta_extra_keys_and_blank_lines(tmp_path: Path) -> None:
    path = write(tmp_path / "d.jsonl", GOOD, "", {"prompt": "p2 long enough", "candidates": [{"text": "c", "reward": 1}], "extra": 1})
    data = load_dataset(path)
    assert [g.prompt for g in data.groups] == ["Refactor function for clarity", "p2 long enough"]
    assert data.groups[0].rewards == [0.2, 0.8] and data.groups[0].meta == {"context_hash": "x"}
    assert data.groups[1].meta == {} and data.groups[1].line == 3
    assert data.fingerprint == hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_non_numeric_reward_is_named_by_file_and_line(tmp_path: Path) -> None:
    bad = {"prompt": "p", "candidates": [{"text": "a", "reward": 1}, {"text": "b", "reward": "high"}]}
    path = write(tmp_path / "d.jsonl", GOOD, GOOD, bad)
    with pytest.raises(DatasetError) as info:
        load_dataset(path)
    assert str(info.value).startswith(f"{path}:3: candidates[1].reward is not a finite number: 'high'")


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("{not json", "not valid JSON"),
        ([1, 2], "expected a JSON object"),
        ({"prompt": "", "candidates": []}, "prompt must be a non-empty string"),
        ({"prompt": "p", "candidates": []}, "candidates must be a non-empty list"),
        ({"prompt": "p", "candidates": [{"text": 3, "reward": 1}]}, "candidates[0].text must be a string"),
        ({"prompt": "p", "candidates": [{"text": "t"}]}, "candidates[0] has no reward"),
        ({"prompt": "p", "candidates": [{"text": "t", "reward": True}]}, "reward is not a finite number"),
        ({"prompt": "p", "candidates": [{"text": "t", "rewards": {"x": "?"}}]}, "candidates[0].rewards.x is not a finite number"),
    ],
)
def test_each_kind_of_bad_line_says_why(tmp_path: Path, line: object, reason: str) -> None:
    path = write(tmp_path / "d.jsonl", line)
    with pytest.raises(DatasetError, match=rf"^{path}:1: .*{reason[:20]}".replace("[", r"\[").replace("]", r"\]")):
        load_dataset(path)


def test_skip_bad_lines_counts_them(tmp_path: Path) -> None:
    path = write(tmp_path / "d.jsonl", GOOD, "{oops", {"prompt": "p", "candidates": [{"text": "t", "reward": "x"}]}, GOOD)
    data = load_dataset(path, skip_bad_lines=True)
    assert data.bad_lines == 2 and len(data) == 2 and [g.line for g in data.groups] == [1, 4]


def test_a_file_with_no_valid_group_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="no valid groups"):
        load_dataset(write(tmp_path / "d.jsonl", "{oops"), skip_bad_lines=True)
    with pytest.raises(DatasetError, match="cannot read dataset"):
        load_dataset(tmp_path / "missing.jsonl")


def test_long_prompts_fail_or_are_truncated_and_counted(tmp_path: Path) -> None:
    path = write(tmp_path / "d.jsonl", GOOD)
    with pytest.raises(DatasetError, match=r":1: prompt has 29 characters, more than --max-prompt-chars 10"):
        load_dataset(path, max_prompt_chars=10)
    data = load_dataset(path, max_prompt_chars=10, truncate_prompts=True)
    assert data.groups[0].prompt == "Refactor f" and data.truncated_prompts == 1


def test_blocklisted_candidates_get_the_dataset_minimum_reward(tmp_path: Path) -> None:
    other = {"prompt": "q", "candidates": [{"text": "rm -rf / now", "reward": 0.9}, {"text": "ok", "reward": -0.5}]}
    path = write(tmp_path / "d.jsonl", GOOD, other)
    block = tmp_path / "block.txt"
    block.write_text("# comment\nRM -RF\n\n", encoding="utf-8")
    data = load_dataset(path, blocklist=block)
    assert data.groups[1].rewards == [-0.5, -0.5] and data.groups[1].candidates[0].blocked
    assert data.groups[0].rewards == [0.2, 0.8] and data.blocked == 1


def test_reward_axes_are_mixed_by_weights_and_their_means_kept(tmp_path: Path) -> None:
    line = {"prompt": "p", "candidates": [{"text": "a", "reward": 9, "rewards": {"tests": 1.0, "style": 0.0}}, {"text": "b", "rewards": {"tests": 0.0, "style": 1.0}}]}
    path = write(tmp_path / "d.jsonl", line)
    mixed = load_dataset(path, reward_weights={"tests": 1.0, "style": 0.25})
    assert mixed.groups[0].rewards == [1.0, 0.25]
    assert mixed.axis_means == {"style": 0.5, "tests": 0.5}
    plain = load_dataset(path)  # no weights: `reward` when present, else the mean of the axes
    assert plain.groups[0].rewards == [9.0, 0.5]
    with pytest.raises(DatasetError, match=r":1: candidates\[0\].rewards has no axis 'speed'"):
        load_dataset(path, reward_weights={"speed": 1.0})


def test_behavior_logprobs_are_read_and_a_bad_shape_is_a_bad_line(tmp_path: Path) -> None:
    behavior = {"token_ids": [3, 4], "logprobs": [-0.5, -1]}
    good = {"prompt": "Fix the pagination bug", "candidates": [{"text": "a", "reward": 1, "behavior_logprobs": behavior}, {"text": "b", "reward": 0}]}
    data = load_dataset(write(tmp_path / "ok.jsonl", good))
    a, b = data.groups[0].candidates
    assert a.behavior == ((3, 4), (-0.5, -1.0)) and b.behavior is None
    bad = {"prompt": "Fix the pagination bug", "candidates": [{"text": "a", "reward": 1, "behavior_logprobs": {"token_ids": [3], "logprobs": [-0.5, -1]}}]}
    with pytest.raises(DatasetError, match="bad.jsonl:1: candidates\\[0\\].behavior_logprobs"):
        load_dataset(write(tmp_path / "bad.jsonl", bad))
