"""policy.exec_tests through `builtin:exec_tests`: real subprocesses, limits enforced, score() always returns."""

from __future__ import annotations

import pytest

from policy.errors import RewardError
from policy.exec_tests import strip_fence
from policy.rewards import RewardOptions, load_reward_fn, score

SQUARE_TESTS = ["assert square(2) == 4", "assert square(3) == 9"]


def _exec_scores(completions: list[str], tests: list, **options: object) -> list[float | None]:
    options.setdefault("exec_timeout_s", 30.0)  # generous: a loaded machine must not turn a pass into a timeout
    fn = load_reward_fn("builtin:exec_tests", RewardOptions(**options))
    n = len(completions)
    out = score([fn], ["write square"] * n, completions, completion_ids=[[1]] * n, columns={"tests": tests}, weights={})
    assert out.total == [0.0 if r is None else r for r in out.per_fn["exec_tests"]]
    return out.per_fn["exec_tests"]


def test_reward_is_the_fraction_of_tests_that_pass() -> None:
    completions = [
        "def square(x):\n    print('{\"passed\": 99}')  # noise on stdout changes nothing\n    return x * x\n",
        "def square(x):\n    return 4\n",  # passes one of two
        "def square(x):\n    return -1\n",
        "def square(x) return x * x\n",  # syntax error
        "Here you go:\n```python\ndef square(x):\n    return x ** 2\n```\nIt squares.",  # fenced
        "import sys\nsys.exit(3)\n",  # exits while being exec'd
        "import os\nos.kill(os.getpid(), 9)\n",  # dies before reporting
        "def square(x):\n    return x * x\n",  # a row without tests
        "def square(x):\n    return x * x\n",  # one test as a string, multi-line
    ]
    tests = [SQUARE_TESTS] * 7 + [None, "for x in range(5):\n    assert square(x) == x * x"]
    assert _exec_scores(completions, tests) == [1.0, 0.5, 0.0, 0.0, 1.0, 0.0, 0.0, None, 1.0]


def test_the_column_may_be_absent_and_must_hold_strings() -> None:
    fn = load_reward_fn("builtin:exec_tests", RewardOptions())
    assert score([fn], ["p"], ["x = 1"], completion_ids=[[1]], columns={}, weights={}).per_fn == {"exec_tests": [None]}
    with pytest.raises(RewardError, match=r"exec_tests .*column 'tests' must hold .* on sample 1"):
        _exec_scores(["x = 1", "x = 1"], [["assert x == 1"], [1, 2]])


def test_a_completion_that_never_ends_is_killed_and_scores_zero() -> None:
    assert _exec_scores(["while True:\n    pass\n"], [SQUARE_TESTS], exec_timeout_s=1.0) == [0.0]


def test_the_address_space_is_capped() -> None:
    hog = "x = bytearray(10 * 1024**3)\ndef square(x):\n    return x * x\n"
    caught = "try:\n    x = bytearray(10 * 1024**3)\nexcept MemoryError:\n    capped = True\n"
    assert _exec_scores([hog, caught], [SQUARE_TESTS, ["assert capped"]], exec_memory_mb=512) == [0.0, 1.0]


def test_each_completion_runs_in_a_fresh_directory_without_our_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRPO_TEST_SECRET", "hunter2")
    code = "import os\nopen('scratch.txt', 'w').write('x')\n"
    tests = ["assert os.listdir('.') == ['scratch.txt']", "assert 'GRPO_TEST_SECRET' not in os.environ"]
    assert _exec_scores([code, code], [tests, tests]) == [1.0, 1.0]


def test_strip_fence_takes_the_last_python_block() -> None:
    text = "```bash\npip install x\n```\nthen\n```python\ndef a(): pass\n```\nor\n```py\ndef b(): pass\n```\n"
    assert strip_fence(text) == "def b(): pass\n"
    assert strip_fence("```\ndef c(): pass\n") == "def c(): pass\n"  # untagged and unclosed (truncated)
    assert strip_fence("```bash\nls\n```\nprose") == "```bash\nls\n```\nprose"  # no Python block: as is
    assert strip_fence("def d(): pass") == "def d(): pass"


def test_limits_must_make_sense() -> None:
    with pytest.raises(RewardError, match="positive time limit"):
        load_reward_fn("builtin:exec_tests", RewardOptions(exec_timeout_s=0.0))
    with pytest.raises(RewardError, match="MiB"):
        load_reward_fn("builtin:exec_tests", RewardOptions(exec_memory_mb=0))
