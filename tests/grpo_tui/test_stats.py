"""The stats sampler on this machine: numbers for CPU/RAM/disk, reasons for missing GPU and docker."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from grpo_tui.stats import StatsSampler, gpu_stats


def test_sample_has_numbers_and_reasons(tmp_path: Path) -> None:
    stats = StatsSampler(tmp_path / "not-yet" / ".grpo").sample()
    assert 0 <= stats["cpu"]["percent"] <= 100 and stats["cpu"]["cores"] >= 1
    assert stats["ram"]["total_gb"] > 0 and stats["ram"]["available_gb"] > 0
    assert stats["disk"]["free_gb"] > 0 and Path(stats["disk"]["path"]) == tmp_path
    assert stats["processes"]["items"] and all("pid" in p for p in stats["processes"]["items"])
    for source in ("gpus", "containers"):
        if "unavailable" in stats[source]:
            assert stats[source]["unavailable"].strip()


def _nvml_sees_a_gpu() -> bool:
    """What gpu_stats asks (NVML), not torch: a CPU build of torch on a GPU box still has NVML and a GPU."""
    try:
        import pynvml

        pynvml.nvmlInit()
    except Exception:  # noqa: BLE001 - not installed, no driver, no device: all mean "no GPU" here
        return False
    try:
        return pynvml.nvmlDeviceGetCount() > 0
    finally:
        pynvml.nvmlShutdown()


def test_no_gpu_here_is_reported_with_a_reason() -> None:
    if _nvml_sees_a_gpu():
        pytest.skip("NVML sees a GPU on this machine")
    result = gpu_stats()
    assert "devices" not in result
    assert any(word in result["unavailable"] for word in ("driver", "NVML", "nvidia-ml-py")), result


def test_hanging_source_costs_the_caller_at_most_the_deadline(tmp_path: Path) -> None:
    release = threading.Event()

    def hang() -> dict:
        release.wait(30)
        return {"devices": []}

    sampler = StatsSampler(tmp_path, timeout=1.0, sources={"gpus": hang})
    try:
        for _ in range(2):  # the second call must not pile up another thread or wait again in full
            stats = sampler.sample()  # returns while the source still hangs (it is released only below)
            assert not release.is_set() and "did not answer" in stats["gpus"]["unavailable"]
            assert stats["ram"]["total_gb"] > 0
        hung = [t for t in threading.enumerate() if t.name == "bounded-gpus"]
        assert len(hung) == 1
    finally:
        release.set()


def test_a_failing_source_is_unavailable_not_raised(tmp_path: Path) -> None:
    def broken() -> dict:
        raise PermissionError("no permission to read /dev/nvidiactl")

    stats = StatsSampler(tmp_path, sources={"gpus": broken}).sample()
    assert "PermissionError" in stats["gpus"]["unavailable"]
