"""Live system stats: CPU, RAM, the home filesystem's disk, GPUs (NVML) and top containers/processes.

`StatsSampler(home).sample()` returns a plain, JSON-ready dict (it travels over the control socket):

    {"time", "cpu": {"percent", "load1", "load5", "load15", "cores"},
     "ram": {"total_gb", "available_gb", "percent"},
     "disk": {"path", "total_gb", "free_gb", "percent"},
     "gpus": {"devices": [{"index", "name", "util", "mem_used_mb", "mem_total_mb", "temp_c", "power_w",
                           "processes": [{"pid", "mem_mb"}]}]} | {"unavailable": reason},
     "containers": {"items": [{"name", "cpu_percent", "mem_mb"}]} | {"unavailable": reason},
     "processes": {"items": [{"pid", "name", "cpu_percent", "mem_mb"}]}}

A missing source (no NVIDIA driver, no docker SDK or socket, no permission) says `unavailable: reason`
and never raises; a hung NVML or docker call costs the caller at most `timeout` seconds (default 1).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil

from grpo_tui.timeouts import Bounded, CallTimedOut

GiB, MiB = 1024**3, 1024**2
Source = Callable[[], dict[str, Any]]


def existing_parent(path: Path) -> Path:
    """The nearest existing folder at or above `path` (the home may not exist yet)."""
    path = path.absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def cpu_stats() -> dict[str, Any]:
    load1, load5, load15 = os.getloadavg()
    return {"percent": psutil.cpu_percent(interval=None), "load1": load1, "load5": load5, "load15": load15,
            "cores": psutil.cpu_count() or 1}


def ram_stats() -> dict[str, Any]:
    vm = psutil.virtual_memory()
    return {"total_gb": vm.total / GiB, "available_gb": vm.available / GiB, "percent": vm.percent}


def disk_stats(home: Path) -> dict[str, Any]:
    path = existing_parent(home)
    du = psutil.disk_usage(str(path))
    return {"path": str(path), "total_gb": du.total / GiB, "free_gb": du.free / GiB, "percent": du.percent}


def gpu_stats() -> dict[str, Any]:
    """Every visible GPU through NVML (the nvidia-ml-py package provides `pynvml`)."""
    try:
        import pynvml
    except ImportError:
        return {"unavailable": "nvidia-ml-py is not installed (pip install nvidia-ml-py)"}
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as exc:
        return {"unavailable": f"no NVIDIA driver or GPU ({exc})"}
    try:
        devices = []
        for index in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            mem = pynvml.nvmlDeviceGetMemoryInfo(handle)
            procs = pynvml.nvmlDeviceGetComputeRunningProcesses(handle)
            devices.append({
                "index": index,
                "name": _text(pynvml.nvmlDeviceGetName(handle)),
                "util": pynvml.nvmlDeviceGetUtilizationRates(handle).gpu,
                "mem_used_mb": mem.used / MiB,
                "mem_total_mb": mem.total / MiB,
                "temp_c": pynvml.nvmlDeviceGetTemperature(handle, pynvml.NVML_TEMPERATURE_GPU),
                "power_w": pynvml.nvmlDeviceGetPowerUsage(handle) / 1000.0,
                "processes": [{"pid": p.pid, "mem_mb": (p.usedGpuMemory or 0) / MiB} for p in procs],
            })
        return {"devices": devices}
    except pynvml.NVMLError as exc:
        return {"unavailable": f"NVML query failed ({exc})"}
    finally:
        pynvml.nvmlShutdown()


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


class ContainerStats:
    """Top containers by CPU through the Docker SDK (the `containers` extra); CPU % from the previous sample."""

    def __init__(self, limit: int = 5) -> None:
        self.limit = limit
        self._previous: dict[str, tuple[float, float]] = {}  # id -> (container cpu ns, system cpu ns)

    def __call__(self) -> dict[str, Any]:
        try:
            import docker
        except ImportError:
            return {"unavailable": "docker SDK not installed (pip install 'grpo-tui[containers]')"}
        try:
            client = docker.from_env(timeout=1)
            containers = client.containers.list()
            items = [self._one(c.id, c.name, c.stats(stream=False, one_shot=True)) for c in containers]
        except docker.errors.DockerException as exc:
            return {"unavailable": f"no docker daemon reachable ({exc})"}
        items.sort(key=lambda item: item["cpu_percent"], reverse=True)
        return {"items": items[: self.limit]}

    def _one(self, cid: str, name: str, stats: dict[str, Any]) -> dict[str, Any]:
        cpu = stats.get("cpu_stats", {})
        used = float(cpu.get("cpu_usage", {}).get("total_usage", 0))
        system = float(cpu.get("system_cpu_usage", 0))
        percent = 0.0
        if cid in self._previous:
            d_used, d_system = used - self._previous[cid][0], system - self._previous[cid][1]
            if d_system > 0:
                percent = d_used / d_system * cpu.get("online_cpus", 1) * 100.0
        self._previous[cid] = (used, system)
        mem = stats.get("memory_stats", {}).get("usage", 0) / MiB
        return {"name": name, "cpu_percent": percent, "mem_mb": mem}


def top_processes(limit: int = 5) -> dict[str, Any]:
    """Top processes by CPU % since the previous call (psutil keeps the per-process baseline)."""
    items = []
    for proc in psutil.process_iter(["pid", "name", "cpu_percent", "memory_info"]):
        info = proc.info
        mem = info["memory_info"].rss / MiB if info["memory_info"] else 0.0
        items.append({"pid": info["pid"], "name": info["name"] or "?", "cpu_percent": info["cpu_percent"] or 0.0,
                      "mem_mb": mem})
    items.sort(key=lambda item: (item["cpu_percent"], item["mem_mb"]), reverse=True)
    return {"items": items[:limit]}


class StatsSampler:
    """Samples every source concurrently behind one deadline, so a hung source costs at most `timeout`."""

    def __init__(self, home: Path, timeout: float = 1.0, sources: dict[str, Source] | None = None) -> None:
        self.home = Path(home)
        raw: dict[str, Source] = {
            "cpu": cpu_stats,
            "ram": ram_stats,
            "disk": lambda: disk_stats(self.home),
            "gpus": gpu_stats,
            "containers": ContainerStats(),
            "processes": top_processes,
        }
        raw.update(sources or {})
        self.timeout = timeout
        self.sources = {name: Bounded(fn, name=name) for name, fn in raw.items()}

    def sample(self) -> dict[str, Any]:
        """Every source at once; the whole sample returns within `timeout` seconds (plus thread start)."""
        deadline = time.monotonic() + self.timeout
        pending = {name: source.submit() for name, source in self.sources.items()}
        out: dict[str, Any] = {"time": time.time()}
        for name, call in pending.items():
            try:
                out[name] = call.result(deadline)
            except CallTimedOut as exc:
                out[name] = {"unavailable": str(exc)}
            except (OSError, psutil.Error) as exc:
                out[name] = {"unavailable": f"{type(exc).__name__}: {exc}"}
        return out
