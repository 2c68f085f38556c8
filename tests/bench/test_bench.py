"""`grpo bench` end to end on tiny sizes: real workers in fresh subprocesses, the JSON line, the probes.

No timed assertions: speed goals are what `grpo bench` reports, not what tests enforce.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from bench.worker import percentile

HAS_MATPLOTLIB = importlib.util.find_spec("matplotlib") is not None


def last_json(out: str) -> dict:
    return json.loads(out.strip().splitlines()[-1])


def test_kernel_cases_run_side_by_side_with_a_profile(grpo, tmp_path: Path) -> None:
    prof = tmp_path / "prof"
    code, out, err = grpo("bench", "--tokens", "64", "--vocab", "1000", "--repeats", "2", "--json", "--profile", str(prof))
    assert code == 0, err
    assert len(out.strip().splitlines()) == 1  # with --json, stdout is the JSON object alone
    data = last_json(out)
    assert data["aot"] == [] and data["device"] in ("cpu", "cuda")
    rows: dict[str, dict[str, dict]] = {}
    for row in data["cases"]:
        rows.setdefault(row["case"], {})[row["provider"]] = row
    assert set(rows) == {"logprob", "loss", "fused-linear"}
    for case, by_provider in rows.items():
        assert {"ours", "naive"} <= set(by_provider), case
        for provider, r in by_provider.items():
            assert (r["tokens"], r["vocab"], r["dtype"]) == (64, 1000, "fp32")
            assert r["time_ms_p20"] <= r["time_ms_p50"] <= r["time_ms_p80"]
            assert r["time_ms_p20"] > 0
            # 250 KiB temporaries may land in pages the allocator already holds (RSS high-water marks depend on
            # the allocator and transparent huge pages): only the 100 MiB calibration case asserts a size
            assert r["peak_extra_mib"] >= 0
        assert by_provider["ours"]["max_abs_err"] < 1e-5, by_provider["ours"]["errors"]
        assert by_provider["naive"]["time_vs_naive"] == 1.0 and by_provider["naive"]["mem_vs_naive"] == 1.0
        assert by_provider["ours"]["time_vs_naive"] > 0
    assert set(rows["loss"]["ours"]["errors"]) == {"loss", "grad_logits"}
    assert set(rows["fused-linear"]["ours"]["errors"]) == {"loss", "grad_hidden", "grad_weight"}
    assert rows["fused-linear"]["ours"]["hidden"] == 256 and rows["loss"]["ours"]["hidden"] is None
    for provider, package in (("trl", "trl"), ("liger", "liger_kernel")):
        if importlib.util.find_spec(package) is None:
            assert f"skipping provider {provider}: {package} is not installed" in err
    (trace,) = prof.glob("*.json")
    assert trace.name.startswith("logprob-ours-N64-V1000")  # the first case's `ours` run
    assert json.loads(trace.read_text())["traceEvents"]


def test_memory_probe_sees_a_100_mib_allocation(grpo) -> None:
    code, out, err = grpo("bench", "calibrate", "--tokens", "100", "--repeats", "1", "--json")
    assert code == 0, err
    (row,) = last_json(out)["cases"]
    assert 90 <= row["peak_extra_mib"] <= 130, row


def test_rollout_case_reports_generation_update_and_the_step_split(grpo) -> None:
    code, out, err = grpo("bench", "rollout", "--tokens", "4", "--hidden", "16", "--repeats", "2", "--warmup", "0", "--json")
    assert code == 0, err
    rows = {r["provider"]: r for r in last_json(out)["cases"]}
    assert set(rows) == {"ours", "naive"}  # naive: the same step, generation without the KV cache
    for provider, r in rows.items():
        assert (r["case"], r["tokens"], r["vocab"], r["hidden"]) == ("rollout", 4, None, 16)
        assert 0 < r["time_ms_p20"] <= r["time_ms_p50"] <= r["time_ms_p80"] and r["peak_extra_mib"] >= 0
        x = r["extra"]
        assert (x["num_generations"], x["prompts_per_step"], x["max_new_tokens"]) == (8, 2, 4), provider
        assert x["steps"] == 2  # the probe run (the first step, a warmup) is left out; the 2 timed steps are summed
        assert 1 <= x["completion_len_mean"] <= 4
        assert x["gen_tokens_per_s"] > 0 and x["update_tokens_per_s"] > 0
        assert x["rollout_pct"] > 0 and x["update_pct"] > 0 and x["other_pct"] >= -1e-9
        assert x["rollout_pct"] + x["update_pct"] + x["other_pct"] == pytest.approx(100.0)
    assert rows["naive"]["time_vs_naive"] == 1.0 and rows["ours"]["time_vs_naive"] > 0
    assert "rollout: the case's own numbers" in err and "gen_tokens_per_s" in err and "update_pct" in err  # the table
    code, out, _ = grpo("bench", "--help")
    assert code == 0 and "rollout" in out


def test_unknown_case_or_provider_is_a_usage_error(grpo) -> None:
    code, out, err = grpo("bench", "logprob", "nope")
    assert code == 2 and out == ""
    assert "unknown bench case 'nope'; valid cases:" in err and "fused-linear" in err and "logprob" in err
    code, _, err = grpo("bench", "logprob", "--provider", "fastest")
    assert code == 2 and "unknown provider 'fastest'" in err


@pytest.mark.skipif(not HAS_MATPLOTLIB, reason="matplotlib is not installed (pip install matplotlib)")
def test_plot_draws_memory_and_time_against_tokens(grpo, tmp_path: Path) -> None:
    png = tmp_path / "plots" / "bench.png"
    code, _, err = grpo("bench", "calibrate", "--tokens", "8,16", "--repeats", "1", "--plot", str(png))
    assert code == 0, err
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.skipif(HAS_MATPLOTLIB, reason="matplotlib is installed: the missing-matplotlib message cannot show")
def test_plot_without_matplotlib_says_how_to_install(grpo, tmp_path: Path) -> None:
    png = tmp_path / "bench.png"
    code, _, err = grpo("bench", "calibrate", "--plot", str(png))
    assert code == 1 and "pip install matplotlib" in err
    assert not png.exists()


def test_percentiles_interpolate() -> None:
    assert percentile([3.0], 50) == 3.0
    assert percentile([4.0, 1.0, 3.0, 2.0, 5.0], 50) == 3.0
    assert percentile([1.0, 2.0], 20) == pytest.approx(1.2)


def test_ddp_compares_one_process_with_n_on_the_same_global_batch(grpo) -> None:
    code, out, err = grpo("bench", "ddp", "--nproc", "2", "--model", "bow", "--steps", "2", "--groups-per-step", "4", "--json")
    assert code == 0, err
    ddp = last_json(out)["ddp"]
    assert (ddp["nproc"], ddp["groups_per_step"]) == (2, 4)
    one, two = ddp["rows"]
    assert (one["nproc"], one["world_size"], one["groups_per_rank"]) == (1, 1, 4)
    assert (two["nproc"], two["world_size"], two["groups_per_rank"]) == (2, 2, 2)
    for row in (one, two):
        assert row["steps"] == 2 and row["groups_per_step"] == 4
        assert row["train_s"] > 0 and row["steps_per_s"] > 0 and row["wall_s"] > 0 and row["wall_steps_per_s"] > 0
    assert ddp["speedup"] > 0 and ddp["efficiency"] == pytest.approx(ddp["speedup"] / 2)
    assert ddp["wall_speedup"] > 0 and ddp["wall_efficiency"] > 0
    assert "same global batch" in ddp["note"] and "grpo bench ddp" in err and "efficiency" in err  # the table (stderr with --json)


def test_ddp_groups_per_step_must_divide_by_nproc(grpo) -> None:
    code, out, err = grpo("bench", "ddp", "--nproc", "3", "--groups-per-step", "4")
    assert code == 2 and "must divide by --nproc 3" in err
