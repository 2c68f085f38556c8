"""Backend choice: GRPO_KERNELS override, typed errors, the one log line, use_backend, lazy triton import.

Each test starts from a forgotten choice (`dispatch.reset()`) and a clean environment; what needs a fresh
interpreter (import side effects) runs in a subprocess.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import kernels
from kernels import BackendError, dispatch, use_backend

ROOT = Path(__file__).resolve().parents[2]
NO_CUDA = pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
HAS_TRITON = importlib.util.find_spec("triton") is not None


@pytest.fixture(autouse=True)
def fresh_choice(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("GRPO_KERNELS", raising=False)
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    dispatch.reset()
    yield
    dispatch.reset()


def kernel_logs(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "kernels"]


def test_env_torch_overrides_and_says_why(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="kernels")
    monkeypatch.setenv("GRPO_KERNELS", "torch")
    assert kernels.backend() == "torch"
    assert dispatch.launchers().__name__ == "kernels.torch_logprobs"
    [line] = kernel_logs(caplog)
    assert "Triton kernels off" in line and "GRPO_KERNELS=torch" in line


@NO_CUDA
def test_auto_choice_without_cuda_is_torch_with_one_log_line(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="kernels")
    assert kernels.backend() == "torch"
    assert kernels.backend() == "torch"  # cached: chosen once, logged once
    kernels.token_logprobs(torch.randn(2, 5), torch.tensor([0, 4]))
    [line] = kernel_logs(caplog)
    assert "no CUDA device" in line


def test_bad_value_raises_a_clear_backend_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRPO_KERNELS", "cuda")
    with pytest.raises(BackendError, match=r"GRPO_KERNELS='cuda' is not a kernel backend: set it to 'torch' or 'triton'"):
        kernels.backend()


@NO_CUDA
def test_triton_without_cuda_or_interpreter_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRPO_KERNELS", "triton")
    with pytest.raises(BackendError, match=r"GRPO_KERNELS=triton but .*(no CUDA device|not installed)") as info:
        kernels.backend()
    assert "torch" in str(info.value)  # says what to do
    with pytest.raises(BackendError):
        with use_backend("triton"):
            pass


def test_use_backend_forces_and_restores(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRPO_KERNELS", "torch")
    with use_backend("torch") as name:
        assert name == "torch" and kernels.backend() == "torch"
        with use_backend("torch"):
            assert kernels.backend() == "torch"
    assert kernels.backend() == "torch"
    with pytest.raises(BackendError, match="unknown kernel backend 'cuda'"):
        with use_backend("cuda"):
            pass
    assert kernels.backend() == "torch"


def run_python(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k not in ("GRPO_KERNELS", "TRITON_INTERPRET")}
    return subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env={**clean, **env}, capture_output=True, text=True, timeout=120
    )


@NO_CUDA
def test_fresh_process_chooses_torch_without_importing_triton() -> None:
    code = (
        "import json, logging, sys, torch\n"
        "logging.basicConfig(level=logging.INFO, format='%(name)s %(message)s')\n"
        "import kernels\n"
        "logp = kernels.token_logprobs(torch.randn(3, 11), torch.tensor([1, 2, 3]))\n"
        "print(json.dumps({'backend': kernels.backend(), 'triton': 'triton' in sys.modules}))\n"
    )
    done = run_python(code)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {"backend": "torch", "triton": False}
    lines = [line for line in done.stderr.splitlines() if line.startswith("kernels ")]
    assert len(lines) == 1 and "no CUDA device" in lines[0]


@NO_CUDA
@pytest.mark.skipif(not HAS_TRITON, reason="triton is not installed")
def test_triton_with_the_interpreter_is_allowed_and_imported_lazily() -> None:
    code = (
        "import json, sys, kernels\n"
        "before = 'triton' in sys.modules\n"
        "name = kernels.backend()\n"
        "ops = kernels.dispatch.launchers()\n"
        "print(json.dumps({'before': before, 'backend': name, 'module': ops.__name__,\n"
        "                  'after': 'triton' in sys.modules, 'api': callable(ops.logprobs_forward) and callable(ops.logprobs_backward)}))\n"
    )
    done = run_python(code, GRPO_KERNELS="triton", TRITON_INTERPRET="1")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {
        "before": False, "backend": "triton", "module": "kernels.triton_logprobs", "after": True, "api": True,
    }  # fmt: skip
