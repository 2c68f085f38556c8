"""Capacity guard: each check's value, threshold and verdict; 0 turns a check off; persistence; exit 3."""

from __future__ import annotations

import orjson
import pytest

from grpo_tui import guard
from grpo_tui.config import GuardConfig
from grpo_tui.errors import ConfigError, GuardRefused

STATS = {"disk": {"free_gb": 50.0}, "ram": {"available_gb": 8.0}, "gpus": {"unavailable": "no NVIDIA driver"}}


def test_checks_pass_fail_and_off(tmp_path) -> None:
    report = guard.check(tmp_path, GuardConfig(min_free_gb=10, min_ram_gb=16, min_vram_mb=0), STATS)
    by = {c.name: c for c in report.checks}
    assert (by["disk"].verdict, by["ram"].verdict, by["vram"].verdict) == ("ok", "FAIL", "off")
    assert by["ram"].value == 8.0 and by["ram"].threshold == 16
    assert not report.ok and "ram: 8.0 GB free < 16 GB required" in report.reason


def test_all_zero_thresholds_pass_even_without_measurements(tmp_path) -> None:
    report = guard.check(tmp_path, GuardConfig(min_free_gb=0, min_ram_gb=0, min_vram_mb=0), {"gpus": {}})
    assert report.ok and all(c.verdict == "off" for c in report.checks)


def test_vram_required_without_gpu_fails_with_reason(tmp_path) -> None:
    report = guard.check(tmp_path, GuardConfig(min_free_gb=0, min_ram_gb=0, min_vram_mb=1000), STATS)
    assert not report.ok and "cannot measure (no NVIDIA driver)" in report.reason


def test_vram_uses_the_emptiest_gpu(tmp_path) -> None:
    stats = dict(STATS, gpus={"devices": [{"mem_total_mb": 80000, "mem_used_mb": 79000},
                                          {"mem_total_mb": 80000, "mem_used_mb": 10000}]})
    assert guard.check(tmp_path, GuardConfig(min_vram_mb=60000), stats).ok


def test_thresholds_persist_atomically_and_bad_file_is_named(tmp_path) -> None:
    assert guard.load_thresholds(tmp_path) == GuardConfig()
    guard.save_thresholds(tmp_path, GuardConfig(min_free_gb=0, min_ram_gb=1.5))
    assert guard.load_thresholds(tmp_path).min_ram_gb == 1.5
    assert [p.name for p in tmp_path.iterdir()] == ["guard.json"]
    (tmp_path / "guard.json").write_text("{not json")
    with pytest.raises(ConfigError, match="guard.json"):
        guard.load_thresholds(tmp_path)


def test_require_raises_guard_refused(tmp_path) -> None:
    with pytest.raises(GuardRefused, match="disk"):
        guard.require(tmp_path, GuardConfig(min_free_gb=1e9))


def test_cli_exits_3_when_failing_and_persists_flags(grpo, home) -> None:
    code, out, err = grpo("guard", "--min-free-gb", "1000000000", "--json")
    assert code == 3 and "capacity guard fails: disk" in err
    assert orjson.loads(out.strip().splitlines()[-1])["ok"] is False
    assert orjson.loads((home / "guard.json").read_bytes())["min_free_gb"] == 1e9
    code, out, _ = grpo("guard", "--min-free-gb", "0", "--min-ram-gb", "0")
    assert code == 0 and "off" in out


def test_failing_guard_refuses_grpo_train_with_exit_3(grpo, home, tmp_path) -> None:
    dataset = tmp_path / "groups.jsonl"
    dataset.write_bytes(b"".join(
        orjson.dumps({"prompt": f"fix the failing test number {i}",
                      "candidates": [{"text": "ran pytest, fixed", "reward": 1.0}, {"text": "no idea", "reward": 0.0}]}) + b"\n"
        for i in range(4)
    ))
    assert grpo("guard", "--min-free-gb", "1000000000")[0] == 3
    code, _, err = grpo("train", "--dataset", str(dataset), "--steps", "2", "--model", "bow", "--json")
    assert code == 3 and "capacity guard refused: disk" in err
    assert not (home / "checkpoints").exists()
    assert grpo("guard", "--min-free-gb", "0")[0] == 0
    code, out, _ = grpo("train", "--dataset", str(dataset), "--steps", "2", "--model", "bow", "--json")
    assert code == 0 and orjson.loads(out.strip().splitlines()[-1])["step"] == 2


@pytest.mark.parametrize(("flag", "value"), [("--min-free-gb", "inf"), ("--min-ram-gb", "nan"),
                                             ("--min-vram-mb", "-inf"), ("--min-free-gb", "-1")])
def test_cli_refuses_non_finite_or_negative_thresholds_exit_2(grpo, home, flag: str, value: str) -> None:
    saved = (home / "guard.json").read_bytes()
    code, out, err = grpo("guard", flag, value)
    field = flag[2:].replace("-", "_")
    assert code == 2 and err.startswith("error: command line: ") and err.strip().count("\n") == 0
    assert field in err and flag in err and "a finite number >= 0" in err
    assert "unexpected" not in err and "pydantic" not in err
    assert (home / "guard.json").read_bytes() == saved  # nothing persisted: later runs still work
    code, _, err = grpo("guard")
    assert code == 0, err


def test_guard_json_is_never_written_unreadable(tmp_path) -> None:
    bad = GuardConfig.model_construct(min_free_gb=float("inf"), min_ram_gb=0.0, min_vram_mb=0.0)  # skips validation
    with pytest.raises(ConfigError, match=r"min_free_gb: expected a finite number >= 0"):
        guard.save_thresholds(tmp_path, bad)
    assert not (tmp_path / "guard.json").exists()
    (tmp_path / "guard.json").write_text('{"min_free_gb": null}')  # what an older version wrote for inf
    with pytest.raises(ConfigError) as info:
        guard.load_thresholds(tmp_path)
    message = str(info.value)
    assert "guard.json" in message and "min_free_gb" in message and "delete the file" in message
    assert "\n" not in message and "errors.pydantic.dev" not in message
