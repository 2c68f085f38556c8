"""The console's pure parts: number and sparkline rendering (NaN/inf/null safe) and the alert rules."""

from __future__ import annotations

import math

from console_fixed import NOW, snapshot

from grpo_tui.console.alerts import evaluate
from grpo_tui.console.render import BAD_POINT, BARS, ago, last_min_max, num, sparkline, timeline
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
    assert "exp reward 0.61" in first
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


def _labels(text: str) -> list[str]:
    """The metric label of each row of a metrics panel (column 11..19); the headline line left out."""
    return [ln[11:19].strip() for ln in text.splitlines() if ln[11:19].strip() and "held-out acc" not in ln]


def test_metrics_panel_leads_with_quality_and_collapses_constant_rows_offline() -> None:
    from dataclasses import replace

    from grpo_tui.console.widgets import MetricsPanel, View

    recs = [{"step": i, "loss": 0.04 * (0.01 * i), "kl": 0.01 * i, "entropy": 2.0 - 0.01 * i, "reward_mean": 0.3 + 0.01 * (i % 3),
             "lr": 1e-4, "clip_frac_low": 0.0, "clip_frac_high": 0.0, "grad_norm": 1.0 + 0.1 * (i % 2)} for i in range(1, 21)]
    for i in (4, 9, 14, 19):  # held-out quality is logged every few steps only
        recs[i] |= {"val_pairwise_acc": 0.6 + 0.01 * i, "policy_expected_reward": 0.4 + 0.01 * i}
    recs[0]["val_pairwise_acc_start"] = 0.55
    text = MetricsPanel().build(replace(snapshot(), metrics={"global": recs}), View()).plain
    labels = _labels(text)
    assert labels[:4] == ["val acc", "exp rew", "kl", "entropy"]  # quality first, then KL and entropy
    assert labels.index("loss") < labels.index("data rew") == len(labels) - 2  # the logged data's mean: last
    assert "reward" not in labels  # an offline run's reward_mean is the data's, labelled so
    steady = text.splitlines()[-1]
    assert "steady" in steady and "lr 1e-4 (constant)" in steady and "clip 0 (always)" in steady
    assert "lr" not in labels and "clip" not in labels  # no sparkline each for constants
    val = next(ln for ln in text.splitlines() if ln[11:19].strip() == "val acc")
    assert "×" not in val and len(val[20:40].strip()) == 4  # one bar per measurement, no gaps for the other steps
    # loss (here 0.04 * kl) and KL must not draw the same shape: the loss row has no sparkline, KL one from 0
    loss = next(ln for ln in text.splitlines() if ln[11:19].strip() == "loss")
    kl = next(ln for ln in text.splitlines() if ln[11:19].strip() == "kl")
    assert not set(loss[20:40]) & set(BARS) and kl[20] in "▁▂" and kl[39] == "█"


def test_metrics_panel_online_rows_are_per_function_rewards_then_the_policy_reward() -> None:
    from dataclasses import replace

    from grpo_tui.console.widgets import MetricsPanel, View

    recs = [{"step": i, "loss": 0.1 * i, "kl": 0.01 * i, "reward_mean": 0.1 * i, "reward/format_mean": 0.2 * i,
             "reward/length_mean": 0.5, "completion_len_mean": 12.0 + i, "frac_truncated": 0.0, "lr": 1e-4}
            for i in range(1, 6)]
    text = MetricsPanel().build(replace(snapshot(), metrics={"global": recs}), View()).plain
    labels = _labels(text)
    assert labels[:3] == ["r:format", "reward", "kl"] and "data rew" not in labels
    assert "r:length 0.5 (constant)" in text and "trunc 0 (always)" in text


def test_percentage_sparklines_have_a_fixed_0_to_100_scale() -> None:
    from dataclasses import replace

    from grpo_tui.console.widgets import SystemPanel, View

    assert sparkline([100.0] * 8, 8, lo=0, hi=100).plain == "█" * 8  # constant 100 %: full height, not mid
    blip = sparkline([100.0] * 7 + [99.5], 8, lo=0, hi=100).plain
    assert blip[-1] != "▁" and blip[-1] in "▇█"  # a 99.5 % blip is not the floor
    assert sparkline([0.0, 50.0], 2, lo=0, hi=100).plain == "▁▅"
    snap = snapshot()
    series = dict(snap.series, cpu=[100.0] * 59 + [99.5], ram=[50.0] * 60)
    text = SystemPanel().build(replace(snap, series=series), View()).plain
    cpu, ram = (next(ln for ln in text.splitlines() if ln.startswith(k)) for k in ("CPU", "RAM"))
    assert {ch for ch in cpu if ch in BARS} == {"█"}  # 100 % and the 99.5 % blip: full height
    assert {ch for ch in ram if ch in BARS} == {"▅"}  # a constant 50 %: half height, whatever the history


def test_system_sparklines_fill_the_panel_width_at_80_columns() -> None:
    import asyncio

    from console_fixed import fixed_source

    from grpo_tui.console.app import GrpoConsole

    async def run() -> str:
        app = GrpoConsole(fixed_source(), refresh=60)
        async with app.run_test(size=(80, 24)) as pilot:
            while app.polls < 1:
                await pilot.pause(0.05)
            await pilot.pause(0.2)
            panel = app.query_one("#system")
            return str(panel.render()), panel.content_size.width

    text, width = asyncio.run(run())
    cpu, ram = (next(ln for ln in text.splitlines() if ln.startswith(k)) for k in ("CPU", "RAM"))
    assert sum(ch in BARS for ch in cpu) > 12  # not the old 12 columns
    assert len(ram.rstrip()) >= width - 2  # the widest row ends at the border: no empty tail after the sparkline


def test_job_line_from_a_scheduler_status_and_the_level_run() -> None:
    from dataclasses import replace

    from grpo_tui import observe
    from grpo_tui.console.widgets import AutoPanel, View

    snap = snapshot()
    recs = [{"step": 400 + i, "loss": 0.1, "timestamp": NOW - 40 + 2 * i} for i in range(1, 21)]
    status = dict(snap.status, phase="train global", job_running_for=75.0)
    runs = {"global": {"start_step": 400, "target_step": 800, "started": NOW - 42}}
    text = AutoPanel().build(replace(snap, status=status, metrics={"global": recs}, runs=runs), View()).plain
    job = next(ln for ln in text.splitlines() if ln.startswith("job"))
    assert job.split(None, 1)[1] == "cycle: train global · step 420/800 · for 1m15s · ~12m40s left"  # 0.5 steps/s
    # the manifest is an older run's (written before this job began): no step yet, the trainer is loading
    old = {"global": dict(runs["global"], started=NOW - 600)}
    progress = observe.job_progress(status, {"global": recs}, old, NOW)
    assert observe.job_line(progress) == "cycle: train global · loading · for 1m15s"
    assert observe.job_line(observe.job_progress(dict(status, job="mine", phase="mine"), {}, {}, NOW)) == "mine · for 1m15s"
    assert observe.job_progress(dict(status, job=None), {}, {}, NOW) is None
