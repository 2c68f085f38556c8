"""The console's pure parts: number and sparkline rendering (NaN/inf/null safe) and the alert rules."""

from __future__ import annotations

import math

from console_fixed import NOW, snapshot

from grpo_tui.console.alerts import evaluate
from grpo_tui.console.render import BAD_POINT, ago, last_min_max, num, sparkline, timeline
from grpo_tui.console.widgets import metric_values


def test_numbers_never_raise_and_say_what_they_are() -> None:
    assert [num(x) for x in (None, math.nan, math.inf, -math.inf, 0, 3, 0.5, 1e-5, 2.5e7)] == \
        ["—", "NaN", "inf", "-inf", "0", "3", "0.5", "1.00e-05", "2.50e+07"]
    assert num("text") == "text" and num(None, missing="NaN/inf") == "NaN/inf"
    assert [ago(s) for s in (None, 5, 65, 3 * 3600 + 60, 2 * 86400 + 7200)] == ["—", "5s", "1m05s", "3h01m", "2d2h"]


def test_sparkline_marks_bad_points_and_scales_to_finite_values() -> None:
    line = sparkline([0.0, None, 1.0, math.nan, 0.5, math.inf], width=6).plain
    assert line[0] == "▁" and line[2] == "█" and [line[i] for i in (1, 3, 5)] == [BAD_POINT] * 3
    assert sparkline([], 5).plain == "—"
    assert sparkline([2.0, 2.0], 5).plain == "▄▄"  # flat series: mid bars, no division by zero
    assert len(sparkline(list(range(100)), 12).plain) == 12  # the newest `width` points
    assert last_min_max([1.0, None, math.nan, -2.0]) == (-2.0, -2.0, 1.0)
    assert last_min_max([None]) == (None, None, None)


def test_clip_fraction_sums_low_and_high_and_keeps_nulls() -> None:
    recs = [{"clip_frac_low": 0.1, "clip_frac_high": 0.2}, {"clip_frac_low": None, "clip_frac_high": 0.1}]
    got = metric_values(recs, ("clip_frac_low", "clip_frac_high"))
    assert got is not None and abs(got[0] - 0.3) < 1e-12 and got[1] is None
    assert metric_values(recs, ("grad_norm",)) is None  # never logged: no row at all


def test_timeline_has_a_symbol_per_outcome_oldest_first() -> None:
    cycles = [{"outcome": o} for o in ("ok", "skipped", "failed", "stopped")]
    assert timeline(cycles, width=6).plain == "··✓○✗■"
    assert timeline([{"outcome": "ok"}] * 25, width=20).plain == "✓" * 20


def test_alerts_for_nan_kl_stall_guard_and_no_scheduler() -> None:
    assert evaluate(snapshot(), kl_max=1.0) == []
    keys = {a.key: a for a in evaluate(snapshot(nan=True, guard_ok=False), kl_max=0.01)}
    assert {"nan:global", "guard", "kl:global", "kl:signature", "kl:patch"} <= set(keys)
    assert "loss" in keys["nan:global"].text and keys["guard"].severity == "error"
    # a training job whose metrics stopped growing: stall after stall_s, counted from the later of job start and last write
    snap = snapshot()
    assert evaluate(snap, stall_s=60, job_started=NOW - 30) == []
    stalled = evaluate(snap, stall_s=1, job_started=NOW - 600)
    assert [a.key for a in stalled] == ["stall"] and "heartbeat" in stalled[0].text
    assert [a.key for a in evaluate(snapshot(scheduler=False))] == ["scheduler"]


def test_metrics_panel_shows_online_rows_only_for_online_runs() -> None:
    from dataclasses import replace

    from grpo_tui.console.widgets import MetricsPanel, View

    offline = snapshot()
    online_recs = [{"step": i, "loss": 0.1, "reward_mean": 0.1 * i, "completion_len_mean": 12.0 + i,
                    "frac_truncated": 0.25, "gen_tokens_per_s": 900.0} for i in range(1, 4)]
    online = replace(offline, metrics={"global": online_recs})
    panel = MetricsPanel()
    off_text, on_text = panel.build(offline, View()).plain, panel.build(online, View()).plain
    assert " len " not in off_text and " trunc " not in off_text
    assert " len " in on_text and " trunc " in on_text and "gen/s" in on_text and "15" in on_text


def test_metrics_panel_headline_is_the_held_out_quality() -> None:
    from dataclasses import replace

    from grpo_tui.console.widgets import MetricsPanel, View

    recs = [{"step": 1, "loss": 0.2}, {"step": 20, "loss": 0.1, "val_pairwise_acc": 0.7, "policy_expected_reward": 0.5},
            {"step": 40, "loss": 0.1, "val_pairwise_acc": 0.8125, "policy_expected_reward": 0.61}]
    text = MetricsPanel().build(replace(snapshot(), metrics={"global": recs}), View()).plain
    first = text.splitlines()[0]
    assert first.startswith("global") and "held-out acc 0.812" in first and "from 0.7" in first
    assert "expected reward 0.61" in first and "@ step 40" in first
    recs[0]["val_pairwise_acc_start"] = 0.5  # the untrained baseline, when the run logged it, is the "from"
    assert "from 0.5)" in MetricsPanel().build(replace(snapshot(), metrics={"global": recs}), View()).plain


def test_metrics_panel_shows_the_world_size_of_a_data_parallel_run() -> None:
    from dataclasses import replace

    from grpo_tui.console.widgets import MetricsPanel, View

    recs = [{"step": i, "loss": 0.1, "reward_mean": 0.2, "kl": 0.01, "world_size": 2} for i in range(1, 4)]
    text = MetricsPanel().build(replace(snapshot(), metrics={"global": recs}), View()).plain
    assert "world 2" in text.splitlines()[2]  # under the level and its step, beside the third metric row
    for single in ({"world_size": 1}, {}):  # one process (or a record from before --nproc): nothing extra
        plain = [{k: v for k, v in r.items() if k != "world_size"} | single for r in recs]
        assert "world" not in MetricsPanel().build(replace(snapshot(), metrics={"global": plain}), View()).plain
