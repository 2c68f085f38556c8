"""Every Triton kernel compiles ahead of time for sm_80 and sm_90a, without spills (no GPU needed)."""

from __future__ import annotations

import pytest

from kernels import aot, triton_logprobs

ARCHS = ("sm_80", "sm_90a")


@pytest.fixture(scope="module")
def report() -> list[dict]:
    return aot.compile_report(ARCHS)  # ~10 s cold, ~2 s from triton's cache


def test_every_variant_is_compiled(report):
    expected = {
        (f"{name}({dtype},BLOCK_V={block_v},warps={warps},{alignment})", arch)
        for name in ("_logprobs_fwd_kernel", "_logprobs_bwd_kernel")
        for dtype in ("fp32", "bf16")
        for block_v, warps in triton_logprobs.CONFIGS
        for alignment in ("aligned", "odd")
        for arch in ARCHS
    }
    assert {(row["kernel"], row["arch"]) for row in report} == expected
    assert len(report) == len(expected)
    assert all(set(row) == {"kernel", "arch", "registers", "spills", "shared"} for row in report)


def test_no_spills_and_registers_reported(report):
    spilling = [(row["kernel"], row["arch"], row["spills"]) for row in report if row["spills"] != 0]
    assert spilling == []
    for row in report:
        assert 0 < row["registers"] <= 255, row
        # streaming kernels: <= 128 registers keeps >= 2 programs of 8 warps resident per SM
        assert row["registers"] <= 128, row
        assert 0 <= row["shared"] <= 1024, row  # only reduction scratch: no pipelining buffers


def test_report_from_an_interpreting_process(monkeypatch):
    """With TRITON_INTERPRET=1 (interpreter tests), the report is compiled in a clean child process."""
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    rows = aot.compile_report(("sm_90a",))
    assert len(rows) == 2 * 2 * len(triton_logprobs.CONFIGS) * 2
    assert all(row["arch"] == "sm_90a" and row["spills"] == 0 and row["registers"] > 0 for row in rows)


def test_bad_arch():
    with pytest.raises(aot.KernelError, match="unknown arch"):
        aot.compile_report(("gfx90a",))
