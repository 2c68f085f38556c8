"""Roofline formula of the fused-linear case (FLOPs and bytes for a small shape) and CUDA default N."""

from __future__ import annotations

import pytest

from bench import registry
from bench.cases import fused_linear
from bench.registry import Size
from bench.roofline import peak_tflops, roofline_point
from bench.runner import Plan, plan_specs


def test_fused_linear_flops_and_bytes_small_shape():
    n, v, h = 8, 10, 4
    size = Size(n, v, h, "fp32", "cuda")
    assert fused_linear.flops(size) == 4 * 2 * 8 * 10 * 4 == 2560
    operands = 3 * (8 * 4 + 10 * 4) * 4 + 8 * (8 + 16)  # hidden + W read twice, grads written; per-token inputs
    logits = 5 * 80 * 4 + 2 * 80 * 4  # chunk: GEMM write, fwd read, recompute write, bwd read + write; 2 GEMM reads
    assert fused_linear.logits_bytes(size) == logits == 2240
    assert fused_linear.bytes_moved(size) == operands + logits
    bf16 = Size(n, v, h, "bf16", "cuda")
    assert fused_linear.logits_bytes(bf16) == 5 * 80 * 4 + 2 * 80 * 2 + 80 * (4 + 2)


def test_roofline_point():
    # 2 TFLOP in 1 s on a 4 TFLOP/s part: 0.5 s compute bound; 1 GB at 10 GB/s: 0.1 s memory
    p = roofline_point(2e12, 1e9, 1.0, 4e12, 10e9)
    assert p["bound"] == "compute" and p["bound_ms"] == pytest.approx(500.0)
    assert p["roofline"] == pytest.approx(0.5) and p["achieved_tflops"] == pytest.approx(2.0)
    m = roofline_point(1e9, 4e9, 0.8, 1e12, 10e9)  # memory: 0.4 s of 0.8 s
    assert m["bound"] == "memory" and m["roofline"] == pytest.approx(0.5)
    assert roofline_point(1e9, 1e9, 1.0, None, None)["roofline"] is None


def test_peak_tflops_table():
    assert peak_tflops("NVIDIA H200", "bf16")[0] == 989.0
    assert peak_tflops("NVIDIA A100-SXM4-80GB", "fp32")[0] == 19.5
    assert peak_tflops("Some GPU", "fp32")[0] is None


def test_cuda_default_tokens_for_kernel_cases():
    cases = registry.select(["logprob", "loss", "fused-linear"])
    plan = Plan(cases=cases)
    for device, want in (("cuda", 8192), ("cpu", None)):
        specs = plan_specs(plan, device, lambda _: None)
        tokens = {s["case"]: s["tokens"] for s in specs}
        for case in cases:
            if case.name in tokens:
                assert tokens[case.name] == (want or case.tokens[0]), (device, case.name)
                assert device == "cpu" or tokens[case.name] >= 8192
