"""Every Triton kernel compiles ahead of time for sm_80 and sm_90a, without spills (no GPU needed)."""

from __future__ import annotations

import pytest

from kernels import aot, triton_logprobs

ARCHS = ("sm_80", "sm_90a")


@pytest.fixture(scope="module")
def report() -> list[dict]:
    return aot.compile_report(ARCHS)  # ~10 s cold, ~2 s from triton's cache


def test_every_variant_is_compiled(report):
    names = [spec.name for spec in aot.KERNELS]
    assert {"_logprobs_fwd_kernel", "_logprobs_bwd_kernel", "_token_loss_fwd_kernel", "_token_loss_bwd_kernel"} <= set(names)
    expected = {
        (f"{spec.name}({dtype},{','.join(f'{k}={v}' for k, v in consts.items())},warps={warps},{alignment})", arch)
        for spec in aot.KERNELS
        for dtype in ("fp32", "bf16", "fp16")
        for consts, warps in spec.configs
        for alignment in ("aligned", "odd-v", "odd")
        for arch in ARCHS
    }
    assert {(row["kernel"], row["arch"]) for row in report} == expected
    assert len(report) == len(expected)
    assert all(set(row) == {"kernel", "arch", "registers", "spills", "shared", "vector_loads"} for row in report)
    logprob_configs = {consts["BLOCK_V"] for consts, _ in aot.spec_of("_logprobs_fwd_kernel").configs}
    assert logprob_configs == {block_v for block_v, _ in triton_logprobs.CONFIGS}


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
    assert len(rows) == sum(len(spec.configs) for spec in aot.KERNELS) * 3 * 3
    assert all(row["arch"] == "sm_90a" and row["spills"] == 0 and row["registers"] > 0 for row in rows)


def test_bad_arch():
    with pytest.raises(aot.KernelError, match="unknown arch"):
        aot.compile_report(("gfx90a",))


@pytest.mark.parametrize("dtype", ["fp32", "bf16", "fp16"])
def test_odd_vocabulary_loads_are_vectorised(report, dtype):
    """V = 50257 with 16-aligned row strides (kernels.layout.aligned_rows): the unmasked main loop over full
    BLOCK_V blocks loads 16-byte vectors; only the masked tail block is scalar. Fully odd strides stay scalar."""
    by_kernel = {(row["kernel"], row["arch"]): row["vector_loads"] for row in report}
    for spec in aot.KERNELS:
        for consts, warps in spec.configs:
            label = f"{spec.name}({dtype},BLOCK_V={consts['BLOCK_V']},warps={warps},"
            for arch in ARCHS:
                assert by_kernel[(label + "odd-v)", arch)] > 0, (label, arch)
                assert by_kernel[(label + "aligned)", arch)] > 0, (label, arch)
                assert by_kernel[(label + "odd)", arch)] == 0, (label, arch)


def test_odd_v_ptx_main_loop_vector_tail_scalar():
    ptx = aot.compile_ptx("_logprobs_fwd_kernel", "fp32", {"BLOCK_V": 4096}, 8, "odd-v", "sm_90a").asm["ptx"]
    assert aot.vector_loads(ptx) > 0
    assert "ld.global.b32" in ptx or "ld.global.nc.b32" in ptx  # the masked tail block


def test_register_extends_the_registry(monkeypatch):
    monkeypatch.setattr(aot, "KERNELS", list(aot.KERNELS))
    monkeypatch.setattr(aot, "SIGNATURES", dict(aot.SIGNATURES))
    spec = aot.spec_of("_logprobs_fwd_kernel")
    aot.register(spec)  # same module and name: replaced, not duplicated
    assert [k.name for k in aot.KERNELS].count("_logprobs_fwd_kernel") == 1
    with pytest.raises(aot.KernelError, match="no kernel"):
        aot.spec_of("_no_such_kernel")


def test_attrs_per_alignment():
    sig = aot.spec_of("_logprobs_fwd_kernel").signature
    names = list(sig)
    hinted = {a: {names[i] for (i,) in aot._attrs(sig, a)} for a in aot.ALIGNMENTS}
    pointers = {n for n, t in sig.items() if t.startswith("*")}
    assert hinted["aligned"] == pointers | {"stride_row", "V"}
    assert hinted["odd-v"] == pointers | {"stride_row"}
    assert hinted["odd"] == pointers
    loss = aot.spec_of("_token_loss_bwd_kernel")
    names = list(loss.signature)
    hinted = {names[i] for (i,) in aot._attrs(loss.signature, "aligned", loss.vocab_args, loss.flag_args)}
    assert hinted & set(loss.flag_args) == set() and {"stride_row", "stride_out_row", "V"} <= hinted  # 0/1 flags: no hint
