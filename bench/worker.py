"""One measurement in a fresh process: `python -m bench.worker SPEC_JSON` prints one JSON line.

SPEC: {"case", "provider", "tokens", "vocab", "hidden", "dtype", "device", "repeats", "warmup",
"profile_dir" (optional)}. Order inside the process: build inputs, run `warmup` times (only where
the CPU high-water mark can be reset; always on CUDA), take the memory baseline, run once under the
memory probe (its outputs are checked against float64), then time `repeats` runs (each after the
previous one's outputs and gradients are dropped; CUDA synchronised around each), then optionally run
once more under torch.profiler and write a chrome trace. The result is the spec plus time_ms_p20/
p50/p80, peak_extra_mib, mem_probe, max_abs_err, errors, backend, bytes_moved, `extra` (the case's own
numbers, when it has an `extra` hook) and, on CUDA, roofline.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


def percentile(values: list[float], q: float) -> float:
    """Linear-interpolated q-th percentile (0..100) of a non-empty list."""
    xs = sorted(values)
    pos = (len(xs) - 1) * q / 100
    lo = int(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def _drop_grads(inputs: dict[str, Any]) -> None:
    import torch

    for value in inputs.values():
        if isinstance(value, torch.Tensor) and value.grad is not None:
            value.grad = None


def _profile(case, provider: str, inputs: dict[str, Any], spec: dict[str, Any], sync) -> str:
    import torch
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if spec["device"] == "cuda" else [])
    _drop_grads(inputs)
    with profile(activities=activities, record_shapes=True, profile_memory=True) as prof:
        with torch.profiler.record_function(f"{spec['case']}/{provider}"):
            out = case.run(provider, inputs)
            sync()
    del out
    folder = Path(spec["profile_dir"])
    folder.mkdir(parents=True, exist_ok=True)
    vocab = f"-V{spec['vocab']}" if spec["vocab"] else ""
    path = folder / f"{spec['case']}-{provider}-N{spec['tokens']}{vocab}-{spec['dtype']}.json"
    fd, tmp = tempfile.mkstemp(dir=folder, suffix=".json.tmp")
    os.close(fd)
    prof.export_chrome_trace(tmp)
    os.replace(tmp, path)
    return str(path)


def measure(spec: dict[str, Any]) -> dict[str, Any]:
    import torch

    from bench import registry
    from bench.memory import probe_for

    case = registry.load()[spec["case"]]
    provider, device = spec["provider"], spec["device"]
    size = registry.Size(spec["tokens"], spec["vocab"], spec["hidden"], spec["dtype"], device)

    def sync() -> None:
        if device == "cuda":
            torch.cuda.synchronize()

    backend = None
    if provider == "ours":
        import kernels

        backend = kernels.backend()
    torch.manual_seed(0)
    inputs = case.build(size, provider)
    probe = probe_for(device)
    warmup = spec["warmup"] if probe.resettable else 0
    for _ in range(warmup):
        out = case.run(provider, inputs)
        sync()
        del out
        _drop_grads(inputs)
    probe.start()
    out = case.run(provider, inputs)
    sync()
    peak_extra_mib = probe.peak_extra_mib()
    errors = case.check(inputs, out) if case.check else {}
    del out
    times = []
    for _ in range(spec["repeats"]):
        _drop_grads(inputs)
        sync()
        start = time.perf_counter()
        out = case.run(provider, inputs)
        sync()
        times.append((time.perf_counter() - start) * 1e3)
        del out
    result = dict(spec)
    result.update(
        backend=backend,
        time_ms_p20=percentile(times, 20),
        time_ms_p50=percentile(times, 50),
        time_ms_p80=percentile(times, 80),
        peak_extra_mib=peak_extra_mib,
        mem_probe=probe.name,
        max_abs_err=max(errors.values()) if errors else None,
        errors=errors,
        bytes_moved=case.bytes_moved(size) if case.bytes_moved else None,
        roofline=None,
    )
    flops = case.flops(size) if case.flops else None
    if flops is not None:
        result["flops"] = flops
    if device == "cuda" and result["bytes_moved"]:
        from bench.roofline import peak_bandwidth_gbs, peak_tflops, roofline_point

        gbs, source = peak_bandwidth_gbs()
        time_s = result["time_ms_p50"] / 1e3
        achieved = result["bytes_moved"] / time_s / 1e9
        result.update(achieved_gbs=achieved, peak_gbs=gbs, peak_gbs_source=source, roofline=achieved / gbs if gbs else None)
        if flops:
            import torch

            tflops, tsource = peak_tflops(torch.cuda.get_device_name(), spec["dtype"])
            point = roofline_point(flops, result["bytes_moved"], time_s, tflops * 1e12 if tflops else None, gbs * 1e9 if gbs else None)
            result.update(peak_tflops=tflops, peak_tflops_source=tsource, **point)
    if case.extra is not None:
        result["extra"] = case.extra(inputs)
    if spec.get("profile_dir"):
        result["trace"] = _profile(case, provider, inputs, spec, sync)
    return result


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m bench.worker SPEC_JSON", file=sys.stderr)
        return 2
    result = measure(json.loads(argv[0]))
    sys.stdout.write("\n" + json.dumps(result) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
