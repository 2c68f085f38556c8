"""Choose the kernel backend once per process: "triton" on CUDA, "torch" everywhere else.

`GRPO_KERNELS=torch|triton` overrides the choice. `GRPO_KERNELS=triton` without a CUDA device is allowed
only with `TRITON_INTERPRET=1` (the Triton interpreter, for tests); otherwise it raises BackendError.
When Triton is off, one INFO line on logger "kernels" says why. `use_backend(name)` forces a backend
inside a block (tests, bench). Triton is imported lazily, only by `launchers()` for the triton backend.
CPU tensors always run on the Torch launchers unless TRITON_INTERPRET=1 (Triton kernels need CUDA).
"""

from __future__ import annotations

import importlib.util
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType

import torch

from .errors import BackendError

BACKENDS = ("torch", "triton")
ENV_VAR = "GRPO_KERNELS"
log = logging.getLogger("kernels")

_chosen: str | None = None
_forced: list[str] = []


def _interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET", "") == "1"


def _check_triton_usable(reason: str) -> None:
    """Raise BackendError unless the triton backend can run here; `reason` names who asked for it."""
    if importlib.util.find_spec("triton") is None:
        raise BackendError(f"{reason} but triton is not installed: `pip install triton`, or use the torch backend")
    if not torch.cuda.is_available() and not _interpreting():
        raise BackendError(
            f"{reason} but no CUDA device is visible: unset {ENV_VAR} or set it to torch "
            "(TRITON_INTERPRET=1 runs the Triton kernels on CPU, for tests only)"
        )


def _choose() -> str:
    requested = os.environ.get(ENV_VAR, "").strip().lower()
    if requested and requested not in BACKENDS:
        raise BackendError(f"{ENV_VAR}={requested!r} is not a kernel backend: set it to 'torch' or 'triton', or unset it")
    if requested == "triton":
        _check_triton_usable(f"{ENV_VAR}=triton")
        return "triton"
    if requested == "torch":
        why = f"{ENV_VAR}=torch"
    elif not torch.cuda.is_available():
        why = "no CUDA device"
    elif importlib.util.find_spec("triton") is None:
        why = "triton not installed"
    else:
        return "triton"
    log.info("Triton kernels off (%s): using the Torch kernels", why)
    return "torch"


def backend() -> str:
    """The active backend, "triton" or "torch" (chosen on first call, cached for the process)."""
    global _chosen
    if _forced:
        return _forced[-1]
    if _chosen is None:
        _chosen = _choose()
    return _chosen


def reset() -> None:
    """Forget the cached choice so the next `backend()` call chooses again (tests)."""
    global _chosen
    _chosen = None


@contextmanager
def use_backend(name: str) -> Iterator[str]:
    """Force backend `name` ("torch" or "triton") inside the block."""
    if name not in BACKENDS:
        raise BackendError(f"unknown kernel backend {name!r}: use one of {', '.join(BACKENDS)}")
    if name == "triton":
        _check_triton_usable("use_backend('triton') was asked")
    _forced.append(name)
    try:
        yield name
    finally:
        _forced.pop()


OPS = ("logprobs", "token_loss")  # launcher sets: kernels/{triton,torch}_<op>.py


def launchers(device: torch.device | None = None, op: str = "logprobs") -> ModuleType:
    """The launcher module of `op` for the active backend and `device`: `<op>_forward` / `<op>_backward` from
    kernels/triton_<op>.py (imports triton) or kernels/torch_<op>.py."""
    if op not in OPS:
        raise ValueError(f"unknown kernel op {op!r}: one of {', '.join(OPS)}")
    triton = backend() == "triton" and (device is None or device.type == "cuda" or _interpreting())
    return importlib.import_module(f"{__package__}.{'triton' if triton else 'torch'}_{op}")  # lazy: triton_* import triton
