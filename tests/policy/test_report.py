"""policy.report: the window, the seeded bootstrap interval, run summaries from real metrics records."""

from __future__ import annotations

import random
import statistics

import pytest

from policy.report import bootstrap_ci, metric_names, summarise_metric, summarise_records, window


def test_window_is_a_fifth_at_least_one_and_capped() -> None:
    assert [window(n, None) for n in (0, 1, 4, 5, 12, 100)] == [0, 1, 1, 1, 2, 20]
    assert window(10, 3) == 3 and window(3, 10) == 3


def test_bootstrap_interval_is_seeded_and_brackets_the_mean() -> None:
    rng = random.Random(5)
    values = [rng.gauss(1.0, 0.3) for _ in range(40)]
    lo, hi = bootstrap_ci(values)
    assert bootstrap_ci(values) == (lo, hi) and bootstrap_ci(values, seed=1) != (lo, hi)
    mean = statistics.fmean(values)
    assert lo < mean < hi
    # the bootstrap standard error of a mean is ~ s / sqrt(n): a 95% interval spans about 2 * 1.96 of it
    se = statistics.stdev(values) / len(values) ** 0.5
    assert 2.5 * se < hi - lo < 5.5 * se
    assert bootstrap_ci([0.3] * 7) == (0.3, 0.3) and bootstrap_ci([2.0]) == (2.0, 2.0)


def test_summaries_of_records() -> None:
    records = [{"step": s, "loss": float(s), "kl": None, "reward_mean": 0.1 * s, "reward/tests_mean": 1.0, "entropy": float("nan")} for s in range(1, 11)]
    records.append({"step": 10, "loss": 100.0, "reward_mean": 1.0, "reward/tests_mean": 1.0})  # a repeated step keeps the last
    assert metric_names(records) == ["reward_mean", "loss", "reward/tests_mean"]
    out = summarise_records(records)
    assert out["steps"] == 10 and out["last_step"] == 10 and out["window"] == 2
    loss = out["metrics"]["loss"]
    assert loss["mean"] == (9 + 100) / 2 and loss["first"] == 1.5 and loss["change"] == loss["mean"] - 1.5
    assert loss["lo"] <= loss["mean"] <= loss["hi"] and 9 <= loss["lo"] and loss["hi"] <= 100
    one = summarise_metric([0.25])
    assert one == {"mean": 0.25, "lo": 0.25, "hi": 0.25, "first": 0.25, "change": 0.0, "n": 1, "values": 1}
    assert summarise_records([])["steps"] == 0


@pytest.mark.parametrize("last", [1, 3, 50])
def test_last_n_values(last: int) -> None:
    values = [float(i) for i in range(10)]
    m = summarise_metric(values, last)
    n = min(last, 10)
    assert m["n"] == n and m["mean"] == statistics.fmean(values[-n:]) and m["first"] == statistics.fmean(values[:n])
