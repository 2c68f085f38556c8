"""Peak memory bandwidth of the CUDA device, for the roofline column: (bytes moved / time) / peak.

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
