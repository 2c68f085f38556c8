"""policy.rewards: loading specs, the TRL calling convention, checks on what comes back, the mix, format and overlong."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import pytest

from policy import rewards
from policy.errors import RewardError
from policy.rewards import RewardFn, RewardOptions, load_reward_fn, load_reward_fns, score

OPTS = RewardOptions()


def _score(fns: list[RewardFn], completions: list[str], *, columns: dict | None = None, weights: dict | None = None,
           ids: list[list[int]] | None = None) -> rewards.Scored:
    n = len(completions)
    return score(fns, [f"prompt {i}" for i in range(n)], completions, completion_ids=ids or [[1, 2]] * n,
                 columns=columns or {}, weights=weights or {})


def _fn(name: str, body) -> RewardFn:  # noqa: ANN001
    body.__name__ = name
    return RewardFn(name, body, f"test:{name}")


@pytest.fixture()
def module_in_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A module `grpo_test_reward_mod` in a fresh current directory, forgotten afterwards."""
    (tmp_path / "grpo_test_reward_mod.py").write_text(
        "def length_reward(prompts, completions, completion_ids, **kw):\n"
        "    return [float(len(ids)) for ids in completion_ids]\n"
        "NOT_A_FUNCTION = 3\n"
    )
    monkeypatch.chdir(tmp_path)
    yield tmp_path
    sys.modules.pop("grpo_test_reward_mod", None)


def test_module_function_spec_imports_from_the_current_directory(module_in_cwd: Path) -> None:
    fn = load_reward_fn("grpo_test_reward_mod:length_reward", OPTS)
    assert (fn.name, fn.spec) == ("length_reward", "grpo_test_reward_mod:length_reward")
    assert str(module_in_cwd) not in sys.path  # only while importing
    assert _score([fn], ["a", "b"], ids=[[1], [1, 2, 3]]).total == [1.0, 3.0]


def test_file_spec_loads_the_file_and_its_neighbours(tmp_path: Path) -> None:
    (tmp_path / "helpers.py").write_text("BONUS = 0.5\n")
    (tmp_path / "my_rewards.py").write_text(
        "import helpers\n"
        "def has_answer(prompts, completions, **kw):\n"
        "    return [1.0 + helpers.BONUS if 'answer' in c else 0.0 for c in completions]\n"
        "short = lambda prompts, completions, **kw: [1.0 if len(c) < 8 else 0.0 for c in completions]\n"
    )
    fns = load_reward_fns([f"{tmp_path}/my_rewards.py:has_answer", f"{tmp_path / 'my_rewards.py'}:short"], OPTS)
    assert [f.name for f in fns] == ["has_answer", "short"]  # a lambda is named by its attribute
    out = _score(fns, ["the answer is 4", "no"])
    assert out.per_fn == {"has_answer": [1.5, 0.0], "short": [0.0, 1.0]}
    assert out.total == [1.5, 1.0]
    sys.modules.pop("helpers", None)


def test_columns_and_completion_ids_reach_the_function_aligned_with_the_samples() -> None:
    seen: dict = {}

    def probe(prompts, completions, completion_ids, answer, difficulty, **kw):  # noqa: ANN001, ANN202
        seen.update(prompts=prompts, completion_ids=completion_ids, extra=kw)
        return [float(c == a) * d for c, a, d in zip(completions, answer, difficulty)]

    out = _score([_fn("probe", probe)], ["4", "5", "6"], ids=[[4], [5], [6]],
                 columns={"answer": ["4", "4", "6"], "difficulty": [1, 2, 3]})
    assert out.total == [1.0, 0.0, 3.0]
    assert seen == {"prompts": ["prompt 0", "prompt 1", "prompt 2"], "completion_ids": [[4], [5], [6]], "extra": {}}


def test_none_is_left_out_of_the_weighted_mix_and_an_unscored_sample_warns_once(
        caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rewards, "_warned_unscored", set())
    a = _fn("a", lambda prompts, completions, **kw: [1.0, None, None])
    b = _fn("b", lambda prompts, completions, **kw: [3.0, 2.0, None])
    with caplog.at_level(logging.WARNING, logger="policy"):
        out = _score([a, b], ["x", "y", "z"], weights={"b": 0.5})
        again = _score([a, b], ["x", "y", "z"], weights={"b": 0.5})
    assert out.total == again.total == [2.5, 1.0, 0.0]
    assert out.per_fn == {"a": [1.0, None, None], "b": [3.0, 2.0, None]}
    warnings = [r for r in caplog.records if "returned None" in r.getMessage()]
    assert len(warnings) == 1 and "1 of 3 samples" in warnings[0].getMessage()


def test_weights_naming_no_function_are_refused_with_the_known_names() -> None:
    a = _fn("alpha", lambda prompts, completions, **kw: [1.0])
    with pytest.raises(RewardError, match=r"beta.*known: alpha"):
        _score([a], ["x"], weights={"beta": 2.0})


def test_duplicate_names_are_refused(module_in_cwd: Path) -> None:
    (module_in_cwd / "other.py").write_text("def length_reward(prompts, completions, **kw):\n    return [0.0] * len(completions)\n")
    with pytest.raises(RewardError, match="two reward functions are named 'length_reward'"):
        load_reward_fns(["grpo_test_reward_mod:length_reward", "other.py:length_reward"], OPTS)


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("no_colon", "use module:function"),
        ("builtin:nope", "builtin:exec_tests, builtin:format, builtin:overlong"),
        ("grpo_no_such_module_xyz:f", "no module named 'grpo_no_such_module_xyz'"),
        ("missing_dir/missing.py:f", "no file"),
        ("grpo_test_reward_mod:nope", "has no attribute 'nope'"),
        ("grpo_test_reward_mod:NOT_A_FUNCTION", "not a function"),
        ("grpo_test_reward_mod:", "use module:function"),
        ("broken.py:f", "loading broken.py raised ZeroDivisionError"),
    ],
)
def test_bad_specs_name_the_spec_and_what_to_do(module_in_cwd: Path, spec: str, expected: str) -> None:
    (module_in_cwd / "broken.py").write_text("1 / 0\n")
    with pytest.raises(RewardError) as err:
        load_reward_fn(spec, OPTS)
    assert expected in str(err.value) and repr(spec) in str(err.value)


def test_a_raising_function_names_itself_and_the_first_failing_sample() -> None:
    def picky(prompts, completions, **kw):  # noqa: ANN001, ANN202
        return [1.0 / (len(c) - 4) for c in completions]  # a 4-character completion divides by zero

    with pytest.raises(RewardError, match=r"picky .*ZeroDivisionError.* on sample 2") as err:
        _score([_fn("picky", picky)], ["a", "bb", "cccc", "dddd"])
    assert isinstance(err.value.__cause__, ZeroDivisionError)


def test_a_function_that_fails_only_on_the_batch_names_the_sample_range() -> None:
    def batch_only(prompts, completions, **kw):  # noqa: ANN001, ANN202
        if len(completions) > 1:
            raise RuntimeError("batch too big")
        return [0.0]

    with pytest.raises(RewardError, match=r"batch_only .*batch too big while scoring samples 0\.\.2"):
        _score([_fn("batch_only", batch_only)], ["a", "b", "c"])


@pytest.mark.parametrize(
    ("returned", "expected"),
    [
        ([1.0], r"liar .*returned 1 values for 2 samples: sample 1 has no value"),
        ([1.0, 2.0, 3.0], r"liar .*returned 3 values for 2 samples"),
        ([1.0, float("nan")], r"liar .*returned nan for sample 1"),
        ([1.0, float("inf")], r"liar .*returned inf for sample 1"),
        (["1.0", 2.0], r"liar .*returned '1.0' for sample 0"),
        (1.0, r"liar .*returned a float"),
    ],
)
def test_what_comes_back_is_checked(returned: object, expected: str) -> None:
    with pytest.raises(RewardError, match=expected):
        _score([_fn("liar", lambda prompts, completions, **kw: returned)], ["x", "y"])


def test_columns_must_align_and_must_not_shadow_arguments() -> None:
    a = _fn("a", lambda prompts, completions, **kw: [0.0] * len(completions))
    with pytest.raises(RewardError, match="column 'answer' has 1 values for 2 samples"):
        _score([a], ["x", "y"], columns={"answer": ["4"]})
    with pytest.raises(RewardError, match="column 'completions' clashes"):
        _score([a], ["x", "y"], columns={"completions": ["4", "5"]})


def test_format_rewards_a_match_anywhere_across_lines() -> None:
    (fmt,) = load_reward_fns(["builtin:format"], RewardOptions(format_regex=r"<answer>.+</answer>"))
    assert fmt.name == "format"
    out = _score([fmt], ["think...\n<answer>4\n</answer>", "<answer></answer>", "4"])
    assert out.total == [1.0, 0.0, 0.0]
    with pytest.raises(RewardError, match="builtin:format needs --format-regex R"):
        load_reward_fn("builtin:format", OPTS)
    with pytest.raises(RewardError, match="not a regular expression"):
        load_reward_fn("builtin:format", RewardOptions(format_regex="(unclosed"))


def test_overlong_punishes_softly_inside_the_buffer_and_fully_beyond() -> None:
    (over,) = load_reward_fns(["builtin:overlong"], RewardOptions(max_new_tokens=8, overlong_buffer=4))
    lengths = [0, 4, 5, 6, 7, 8, 9]
    out = _score([over], ["x"] * len(lengths), ids=[[7] * n for n in lengths])
    assert out.total == [0.0, 0.0, -0.25, -0.5, -0.75, -1.0, -1.0]
    default = load_reward_fn("builtin:overlong", RewardOptions(max_new_tokens=64))  # L_cache = 16
    assert _score([default], ["x", "y"], ids=[[7] * 48, [7] * 56]).total == [0.0, -0.5]
    with pytest.raises(RewardError, match="overlong buffer"):
        load_reward_fn("builtin:overlong", RewardOptions(max_new_tokens=8, overlong_buffer=9))
