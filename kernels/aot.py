"""Ahead-of-time check of every Triton kernel: compile for sm_80 and sm_90a without a GPU, report resources.

    compile_report(archs=("sm_80", "sm_90a")) -> list[dict(kernel, arch, registers, spills, shared)]

Each kernel in `kernels.triton_logprobs` is compiled with `triton.compile(ASTSource(...),
target=GPUTarget("cuda", cc, 32))` for every logits dtype (fp32, bf16), every (BLOCK_V, num_warps) pair the
launchers can pick, and both alignments the JIT specialises on: "aligned" (pointers, row strides and V
divisible by 16, e.g. V = 151936, with the `tt.divisibility=16` attributes the JIT passes) and "odd"
(V and strides not divisible by 16, e.g. V = 50257; pointers still aligned). No driver is needed, so
registers and spills come from Triton's bundled ptxas run with `-v` on the generated PTX (the same flags
Triton's own cubin step uses); shared memory is Triton's metadata. `spills` is spill stores + loads in bytes.

Triton fixes interpreted vs compiled mode at import (TRITON_INTERPRET), and an interpreted triton cannot
compile. In such a process `compile_report` runs the same report in a child Python (`python -m kernels.aot`,
TRITON_INTERPRET unset) and returns its rows. Importing this module imports triton.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import triton
import triton.language as tl
from triton.backends.compiler import GPUTarget
from triton.backends.nvidia.compiler import get_ptxas
from triton.compiler import ASTSource
from triton.runtime.interpreter import InterpretedFunction
from triton.runtime.jit import JITFunction

from . import triton_logprobs as tlp
from .errors import KernelError

DTYPES = ("fp32", "bf16")
ALIGNMENTS = ("aligned", "odd")
# Argument types of each kernel; "{dtype}" is the logits element type, "constexpr" the compile-time block.
SIGNATURES: dict[str, dict[str, str]] = {
    "_logprobs_fwd_kernel": {
        "logits_ptr": "*{dtype}",
        "stride_row": "i32",
        "ids_ptr": "*i64",
        "logp_ptr": "*fp32",
        "lse_ptr": "*fp32",
        "entropy_ptr": "*fp32",
        "V": "i32",
        "inv_temperature": "fp32",
        "BLOCK_V": "constexpr",
    },
    "_logprobs_bwd_kernel": {
        "logits_ptr": "*{dtype}",
        "stride_row": "i32",
        "dlogits_ptr": "*{dtype}",
        "stride_out_row": "i32",
        "ids_ptr": "*i64",
        "lse_ptr": "*fp32",
        "grad_ptr": "*fp32",
        "V": "i32",
        "inv_temperature": "fp32",
        "BLOCK_V": "constexpr",
    },
}
_REGS = re.compile(r"Used (\d+) registers")
_SPILLS = re.compile(r"(\d+) bytes spill stores, (\d+) bytes spill loads")
_ARCH = re.compile(r"sm_(\d+)a?")


def _jit(name: str) -> JITFunction:
    """The JITFunction of kernel `name`; rebuilt from the Python source when TRITON_INTERPRET=1 made it an
    interpreted function at import time (ASTSource needs a JITFunction)."""
    fn = getattr(tlp, name)
    return fn if isinstance(fn, JITFunction) else JITFunction(fn.fn)


def _capability(arch: str) -> int:
    match = _ARCH.fullmatch(arch)
    if match is None:
        raise KernelError(f"unknown arch {arch!r}; use names like 'sm_80' or 'sm_90a'")
    return int(match.group(1))


def _attrs(signature: dict[str, str], alignment: str) -> dict[tuple[int], list[list]]:
    """`tt.divisibility=16` on pointers (always) and on integers (aligned variant), keyed as the JIT keys them."""
    attrs = {}
    for index, ty in enumerate(signature.values()):
        if ty.startswith("*") or (alignment == "aligned" and ty.startswith("i")):
            attrs[(index,)] = [["tt.divisibility", 16]]
    return attrs


def _ptxas_usage(ptx: str, capability: int, arch_name: str) -> tuple[int, int]:
    """(registers, spill bytes) of `ptx` from `ptxas -v`, using the ptxas Triton itself picks for capability."""
    ptxas = get_ptxas(capability).path
    if not ptxas or not Path(ptxas).exists():
        raise KernelError(f"ptxas not found at {ptxas!r}; reinstall triton (it bundles ptxas)")
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "kernel.ptx"
        src.write_text(ptx)
        cmd = [ptxas, "-lineinfo", "-v", "--regAllocOptLevel=2", f"--gpu-name={arch_name}", str(src)]
        cmd += ["-o", str(Path(tmp) / "kernel.cubin")]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    log = proc.stdout + proc.stderr
    regs, spills = _REGS.search(log), _SPILLS.search(log)
    if proc.returncode != 0 or regs is None or spills is None:
        raise KernelError(f"ptxas failed for {arch_name} (exit {proc.returncode}): {log.strip()[:500]}")
    return int(regs.group(1)), int(spills.group(1)) + int(spills.group(2))


def compile_one(name: str, dtype: str, block_v: int, num_warps: int, alignment: str, arch: str) -> dict:
    """Compile one kernel variant for `arch` and return its report row."""
    capability = _capability(arch)
    signature = {k: v.format(dtype=dtype) for k, v in SIGNATURES[name].items()}
    src = ASTSource(_jit(name), signature, {"BLOCK_V": block_v}, _attrs(signature, alignment))
    options = {"num_warps": num_warps, "enable_fp_fusion": tlp.FP_FUSION}
    try:
        compiled = triton.compile(src, target=GPUTarget("cuda", capability, 32), options=options)
    except Exception as exc:  # triton raises many types (CompilationError, PTXASError, MLIR errors)
        raise KernelError(f"{name} [{dtype}, BLOCK_V={block_v}] failed to compile for {arch}: {exc}") from exc
    ptx_target = re.search(r"\.target (sm_\w+)", compiled.asm["ptx"])
    arch_name = ptx_target.group(1) if ptx_target else arch
    registers, spills = _ptxas_usage(compiled.asm["ptx"], capability, arch_name)
    return {
        "kernel": f"{name}({dtype},BLOCK_V={block_v},warps={num_warps},{alignment})",
        "arch": arch_name,
        "registers": registers,
        "spills": spills,
        "shared": int(compiled.metadata.shared),
    }


def _interpreting() -> bool:
    """True when this process's triton runs the interpreter (set at import, or TRITON_INTERPRET=1 now)."""
    return bool(triton.knobs.runtime.interpret) or isinstance(tl.max, InterpretedFunction)


def _report_in_child(archs: tuple[str, ...]) -> list[dict]:
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    cmd = [sys.executable, "-m", "kernels.aot", *archs]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if proc.returncode != 0:
        raise KernelError(f"AOT compile in a child process failed (exit {proc.returncode}): {proc.stderr.strip()[-800:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def compile_report(archs: tuple[str, ...] = ("sm_80", "sm_90a")) -> list[dict]:
    """One row per kernel x dtype x (BLOCK_V, num_warps) x alignment x arch: kernel, arch, registers,
    spills (bytes of spill stores + loads), shared (bytes of shared memory)."""
    archs = tuple(archs)
    for arch in archs:
        _capability(arch)  # fail fast on a bad name
    if _interpreting():
        return _report_in_child(archs)
    rows = []
    for name in SIGNATURES:
        for dtype in DTYPES:
            for block_v, num_warps in tlp.CONFIGS:
                for alignment in ALIGNMENTS:
                    for arch in archs:
                        rows.append(compile_one(name, dtype, block_v, num_warps, alignment, arch))
    return rows


if __name__ == "__main__":  # python -m kernels.aot [ARCH ...]: the report as one JSON line
    print(json.dumps(compile_report(tuple(sys.argv[1:]) or ("sm_80", "sm_90a"))))
