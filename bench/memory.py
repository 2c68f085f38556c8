"""Peak extra memory of one call, in MiB, measured inside the worker subprocess.

`start()` takes the baseline and resets the peak right before the measured call (after any warmup,
so one-off costs such as lazily loaded code pages are not counted); `peak_extra_mib()` reads it after.
CPU: the resident-set high-water mark (VmHWM in /proc/self/status, the counter behind ru_maxrss) after
the call minus the resident set before it. Where /proc/self/clear_refs accepts "5" (Linux), the
high-water mark is reset in `start()`, so warmup calls may run first; elsewhere it cannot be reset,
the worker runs no warmup before the measured call, and ru_maxrss is read (the probe's name says which).
Freed heap pages are handed back to the OS (glibc malloc_trim) before the baseline is taken.
CUDA: torch.cuda.max_memory_allocated() after the call minus memory_allocated() before it.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import resource
import sys
from pathlib import Path

import psutil

MIB = 1 << 20


def _malloc_trim() -> bool:
    name = ctypes.util.find_library("c")
    if not name or not sys.platform.startswith("linux"):
        return False
    libc = ctypes.CDLL(name)
    if not hasattr(libc, "malloc_trim"):
        return False
    libc.malloc_trim(0)
    return True


class CpuProbe:
    """RSS baseline, then the high-water mark after the call."""

    def __init__(self) -> None:
        self.resettable = self._reset()
        self.trims = _malloc_trim()
        self.name = "cpu VmHWM (reset)" if self.resettable else "cpu ru_maxrss (not resettable)"
        self.baseline = 0

    @staticmethod
    def _reset() -> bool:
        clear_refs = Path("/proc/self/clear_refs")
        if not clear_refs.exists():
            return False
        try:
            clear_refs.write_text("5")
        except OSError:
            return False
        return True

    def settle(self) -> None:
        gc.collect()
        _malloc_trim()

    def start(self) -> None:
        self.settle()
        self.baseline = psutil.Process().memory_info().rss
        if self.resettable:
            self._reset()

    def peak_extra_mib(self) -> float:
        if self.resettable:
            for line in Path("/proc/self/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peak = int(line.split()[1]) * 1024
                    break
            else:
                raise RuntimeError("/proc/self/status has no VmHWM line")
        else:
            scale = 1 if sys.platform == "darwin" else 1024  # bytes on macOS, KiB on Linux
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale
        return max(0, peak - self.baseline) / MIB


class CudaProbe:
    """Allocator baseline, then the allocator peak after the call."""

    name = "cuda max_memory_allocated"
    resettable = True

    def __init__(self) -> None:
        import torch

        self.torch = torch
        self.baseline = 0

    def settle(self) -> None:
        gc.collect()
        self.torch.cuda.synchronize()

    def start(self) -> None:
        self.settle()
        self.baseline = self.torch.cuda.memory_allocated()
        self.torch.cuda.reset_peak_memory_stats()

    def peak_extra_mib(self) -> float:
        self.torch.cuda.synchronize()
        return max(0, self.torch.cuda.max_memory_allocated() - self.baseline) / MIB


def probe_for(device: str) -> CpuProbe | CudaProbe:
    return CudaProbe() if device == "cuda" else CpuProbe()
