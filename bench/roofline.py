"""Peaks of the CUDA device for the roofline column: memory bandwidth, and (spec table) dense TFLOP/s per
dtype. A case with only `bytes_moved` reports (bytes / time) / peak bandwidth; a case with `flops` too
reports `roofline_point`: the roofline bound max(flops / peak FLOP/s, bytes / peak B/s) over the measured time.

Sources, first that answers: the device properties (memory clock and bus width, when this torch
exposes them), NVML (max memory clock and bus width), then a table of known parts. Each answer names
its source; an unknown part gives (None, why) and the column stays empty.
"""

from __future__ import annotations

# Spec-sheet peak bandwidth in GB/s, matched by substring of the device name, most specific first.
KNOWN_GBS: tuple[tuple[str, float], ...] = (
    ("H200", 4800.0),
    ("H100 NVL", 3900.0),
    ("H100 PCIe", 2000.0),
    ("H100", 3350.0),  # SXM5
    ("A100-SXM4-80GB", 2039.0),
    ("A100 80GB PCIe", 1935.0),
    ("A100", 1555.0),  # 40 GB
)


def _from_properties(props) -> float | None:
    clock_khz = getattr(props, "memory_clock_rate", None)
    bus_bits = getattr(props, "memory_bus_width", None)
    if clock_khz and bus_bits:
        return 2 * clock_khz * 1e3 * bus_bits / 8 / 1e9  # double data rate
    return None


def _from_nvml(index: int) -> float | None:
    import pynvml

    pynvml.nvmlInit()
    try:
        handle = pynvml.nvmlDeviceGetHandleByIndex(index)
        clock_mhz = pynvml.nvmlDeviceGetMaxClockInfo(handle, pynvml.NVML_CLOCK_MEM)
        bus_bits = pynvml.nvmlDeviceGetMemoryBusWidth(handle)
    finally:
        pynvml.nvmlShutdown()
    return 2 * clock_mhz * 1e6 * bus_bits / 8 / 1e9 if clock_mhz and bus_bits else None


def peak_bandwidth_gbs() -> tuple[float | None, str]:
    """(GB/s, source) for the current CUDA device."""
    import torch

    index = torch.cuda.current_device()
    props = torch.cuda.get_device_properties(index)
    gbs = _from_properties(props)
    if gbs:
        return gbs, "device properties"
    try:
        gbs = _from_nvml(index)
    except Exception as exc:  # NVML missing or refusing is one of the expected answers here; the table is next
        nvml_note = f"nvml: {type(exc).__name__}"
    else:
        if gbs:
            return gbs, "nvml"
        nvml_note = "nvml: no clock"
    for part, known in KNOWN_GBS:
        if part in props.name:
            return known, f"spec table ({part})"
    return None, f"unknown peak bandwidth for {props.name!r} ({nvml_note})"


# Spec-sheet dense peak TFLOP/s per dtype (fp32: CUDA cores, no TF32, torch's matmul default), by device-name substring.
KNOWN_TFLOPS: tuple[tuple[str, dict[str, float]], ...] = (
    ("H200", {"fp32": 67.0, "bf16": 989.0, "fp16": 989.0}),
    ("H100 NVL", {"fp32": 60.0, "bf16": 835.0, "fp16": 835.0}),
    ("H100 PCIe", {"fp32": 51.0, "bf16": 756.0, "fp16": 756.0}),
    ("H100", {"fp32": 67.0, "bf16": 989.0, "fp16": 989.0}),
    ("A100", {"fp32": 19.5, "bf16": 312.0, "fp16": 312.0}),
)


def peak_tflops(device_name: str, dtype: str) -> tuple[float | None, str]:
    """(TFLOP/s, source) for `dtype` on the named device, from the spec table."""
    for part, peaks in KNOWN_TFLOPS:
        if part in device_name and dtype in peaks:
            return peaks[dtype], f"spec table ({part})"
    return None, f"unknown peak {dtype} TFLOP/s for {device_name!r}"


def roofline_point(flops: float, bytes_moved: float, time_s: float, peak_flops: float | None, peak_bytes_per_s: float | None) -> dict:
    """Achieved rates and the fraction of the roofline bound: the bound time is max(flops / peak FLOP/s,
    bytes / peak B/s) (whichever is known), and `roofline` = bound time / measured time (1.0 = at the bound).
    `bound` names the limiting resource."""
    compute_s = flops / peak_flops if peak_flops and flops else 0.0
    memory_s = bytes_moved / peak_bytes_per_s if peak_bytes_per_s and bytes_moved else 0.0
    bound_s = max(compute_s, memory_s)
    return {
        "achieved_tflops": flops / time_s / 1e12 if flops else None,
        "achieved_gbs": bytes_moved / time_s / 1e9 if bytes_moved else None,
        "bound": (None if bound_s == 0 else "compute" if compute_s >= memory_s else "memory"),
        "bound_ms": bound_s * 1e3 if bound_s else None,
        "roofline": bound_s / time_s if bound_s else None,
    }
