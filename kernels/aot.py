"""Ahead-of-time check of every Triton kernel: compile for sm_80 and sm_90a without a GPU, report resources.

    compile_report(archs=("sm_80", "sm_90a")) -> list[dict(kernel, arch, registers, spills, shared, vector_loads)]

Every kernel in the registry `KERNELS` (a list of `KernelSpec`) is compiled with `triton.compile(ASTSource(...),
target=GPUTarget("cuda", cc, 32))` for every logits dtype in DTYPES (fp32, bf16, fp16), every config the
launchers can pick (its constexprs and num_warps), and the three alignments the JIT specialises on:

- "aligned": pointers, row strides and V divisible by 16 (V = 151936), with the `tt.divisibility=16`
  attributes the JIT passes;
- "odd-v": V odd (50257), pointers and row strides divisible by 16: the layout of the buffers the project
  allocates with `kernels.layout.aligned_rows` (full vocabulary blocks load as 16-byte vectors);
- "odd": V and row strides odd (a user's unpadded (N, 50257) tensor); pointers still aligned.

Adding a kernel (as kernels/triton_token_loss.py did): append a `KernelSpec(module, name, signature, configs,
vocab_args)` to `KERNELS` below, or call `register(spec)` from the kernel's module at import. `signature`
maps every argument, in order, to its Triton type ("*{dtype}" for the logits element type, "*fp32",
"i32", "fp32", "constexpr"); `flag_args` names integer 0/1 flags (no hint); `configs` lists `(constexprs, num_warps)` pairs (every pair the launcher can
pick); `vocab_args` names the integer arguments that carry a vocabulary size (no divisibility hint in the
"odd-v" variant; every other integer is a stride or count that aligned buffers make divisible by 16).

No driver is needed, so registers and spills come from Triton's bundled ptxas run with `-v` on the
generated PTX (the same flags Triton's own cubin step uses); shared memory is Triton's metadata. `spills`
is spill stores + loads in bytes; `vector_loads` counts `ld.global[.nc].v2/.v4` instructions in the PTX
(0 means every global load is scalar).

Triton fixes interpreted vs compiled mode at import (TRITON_INTERPRET), and an interpreted triton cannot
compile. In such a process `compile_report` runs the same report in a child Python (`python -m kernels.aot`,
TRITON_INTERPRET unset) and returns its rows. Importing this module imports triton.
"""

from __future__ import annotations

import importlib
import json
import os
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass
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

DTYPES = ("fp32", "bf16", "fp16")
ALIGNMENTS = ("aligned", "odd-v", "odd")


@dataclass(frozen=True)
class KernelSpec:
    """One Triton kernel to compile ahead of time (see the module docstring)."""

    module: str  # importable module holding the @triton.jit function, e.g. "kernels.triton_logprobs"
    name: str  # the function's name in that module
    signature: dict[str, str]  # every argument in order -> Triton type; "{dtype}" is the logits dtype
    configs: tuple[tuple[dict[str, int], int], ...]  # (constexprs, num_warps) pairs the launcher can pick
    vocab_args: tuple[str, ...] = ("V",)  # integer args holding a vocabulary size (odd in "odd-v")
    flag_args: tuple[str, ...] = ()  # integer 0/1 flags: never a divisibility hint


_LOGPROB_CONFIGS = tuple(({"BLOCK_V": block_v}, warps) for block_v, warps in tlp.CONFIGS)
# The registry: every kernel `compile_report` covers. Append here (or `register`) when adding a kernel.
KERNELS: list[KernelSpec] = [
    KernelSpec(
        "kernels.triton_logprobs",
        "_logprobs_fwd_kernel",
        {
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
        _LOGPROB_CONFIGS,
    ),
    KernelSpec(
        "kernels.triton_logprobs",
        "_logprobs_bwd_kernel",
        {
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
        _LOGPROB_CONFIGS,
    ),
    KernelSpec(
        "kernels.triton_token_loss",
        "_token_loss_fwd_kernel",
        {
            "logits_ptr": "*{dtype}", "stride_row": "i32", "ids_ptr": "*i64", "scale_ptr": "*fp32", "old_ptr": "*fp32",
            "ref_ptr": "*fp32", "adv_ptr": "*fp32", "weight_ptr": "*fp32", "logp_ptr": "*fp32", "lse_ptr": "*fp32",
            "entropy_ptr": "*fp32", "ratio_ptr": "*fp32", "pg_ptr": "*fp32", "kl_ptr": "*fp32", "loss_ptr": "*fp32",
            "flags_ptr": "*i8", "V": "i32", "inv_temperature": "fp32", "lo": "fp32", "hi": "fp32", "delta": "fp32",
            "beta": "fp32", "cispo": "i32", "has_old": "i32", "has_ref": "i32", "has_weight": "i32", "BLOCK_V": "constexpr",
        },  # fmt: skip
        _LOGPROB_CONFIGS,
        flag_args=("cispo", "has_old", "has_ref", "has_weight"),
    ),
    KernelSpec(
        "kernels.triton_token_loss",
        "_token_loss_bwd_kernel",
        {
            "logits_ptr": "*{dtype}", "stride_row": "i32", "dlogits_ptr": "*{dtype}", "stride_out_row": "i32",
            "ids_ptr": "*i64", "scale_ptr": "*fp32", "lse_ptr": "*fp32", "logp_ptr": "*fp32", "old_ptr": "*fp32",
            "ref_ptr": "*fp32", "adv_ptr": "*fp32", "weight_ptr": "*fp32", "keep_ptr": "*fp32", "grad_ptr": "*fp32",
            "V": "i32", "inv_temperature": "fp32", "lo": "fp32", "hi": "fp32", "delta": "fp32", "beta": "fp32",
            "cispo": "i32", "has_old": "i32", "has_ref": "i32", "has_weight": "i32", "has_keep": "i32", "BLOCK_V": "constexpr",
        },  # fmt: skip
        _LOGPROB_CONFIGS,
        flag_args=("cispo", "has_old", "has_ref", "has_weight", "has_keep"),
    ),
]
# Name -> signature of every registered kernel (kept for callers of the old dict).
SIGNATURES: dict[str, dict[str, str]] = {spec.name: spec.signature for spec in KERNELS}


def register(spec: KernelSpec) -> None:
    """Add `spec` to the registry (replacing a spec of the same module and name)."""
    KERNELS[:] = [k for k in KERNELS if (k.module, k.name) != (spec.module, spec.name)] + [spec]
    SIGNATURES[spec.name] = spec.signature


def spec_of(name: str) -> KernelSpec:
    for spec in KERNELS:
        if spec.name == name:
            return spec
    raise KernelError(f"no kernel {name!r} in kernels.aot.KERNELS; register it with a KernelSpec")


_VECTOR_LOAD = re.compile(r"\bld\.global(?:\.nc)?(?:\.\w+)*\.v[24]\.")
_REGS = re.compile(r"Used (\d+) registers")
_SPILLS = re.compile(r"(\d+) bytes spill stores, (\d+) bytes spill loads")
_ARCH = re.compile(r"sm_(\d+)a?")


def _jit(name: str) -> JITFunction:
    """The JITFunction of kernel `name`; rebuilt from the Python source when TRITON_INTERPRET=1 made it an
    interpreted function at import time (ASTSource needs a JITFunction)."""
    fn = getattr(importlib.import_module(spec_of(name).module), name)
    return fn if isinstance(fn, JITFunction) else JITFunction(fn.fn)


def _capability(arch: str) -> int:
    match = _ARCH.fullmatch(arch)
    if match is None:
        raise KernelError(f"unknown arch {arch!r}; use names like 'sm_80' or 'sm_90a'")
    return int(match.group(1))


def _attrs(signature: dict[str, str], alignment: str, vocab_args: tuple[str, ...] = ("V",), flag_args: tuple[str, ...] = ()) -> dict[tuple[int], list[list]]:
    """`tt.divisibility=16` on pointers (always), on every integer ("aligned") or every integer but the
    vocabulary sizes ("odd-v"), never on 0/1 flags, keyed as the JIT keys them."""
    attrs = {}
    for index, (arg, ty) in enumerate(signature.items()):
        hinted_int = ty.startswith("i") and arg not in flag_args and (
            alignment == "aligned" or (alignment == "odd-v" and arg not in vocab_args)
        )
        if ty.startswith("*") or hinted_int:
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


def _label(name: str, dtype: str, constexprs: dict[str, int], num_warps: int, alignment: str) -> str:
    consts = ",".join(f"{k}={v}" for k, v in constexprs.items())
    return f"{name}({dtype},{consts},warps={num_warps},{alignment})"


def compile_ptx(name: str, dtype: str, constexprs: dict[str, int], num_warps: int, alignment: str, arch: str):
    """triton.compile one variant of registered kernel `name` for `arch`; returns the CompiledKernel."""
    if alignment not in ALIGNMENTS:
        raise KernelError(f"unknown alignment {alignment!r}; use one of {ALIGNMENTS}")
    spec = spec_of(name)
    capability = _capability(arch)
    signature = {k: v.format(dtype=dtype) for k, v in spec.signature.items()}
    src = ASTSource(_jit(name), signature, dict(constexprs), _attrs(signature, alignment, spec.vocab_args, spec.flag_args))
    options = {"num_warps": num_warps, "enable_fp_fusion": tlp.FP_FUSION}
    try:
        return triton.compile(src, target=GPUTarget("cuda", capability, 32), options=options)
    except Exception as exc:  # triton raises many types (CompilationError, PTXASError, MLIR errors)
        label = _label(name, dtype, constexprs, num_warps, alignment)
        raise KernelError(f"{label} failed to compile for {arch}: {exc}") from exc


def vector_loads(ptx: str) -> int:
    """Number of vectorised global loads (ld.global[.nc].v2/.v4) in `ptx`."""
    return len(_VECTOR_LOAD.findall(ptx))


def compile_one(name: str, dtype: str, constexprs, num_warps: int, alignment: str, arch: str) -> dict:
    """Compile one kernel variant for `arch` and return its report row. `constexprs` is a dict, or an int
    BLOCK_V (the logprob kernels' only constexpr)."""
    if isinstance(constexprs, int):
        constexprs = {"BLOCK_V": constexprs}
    compiled = compile_ptx(name, dtype, constexprs, num_warps, alignment, arch)
    ptx = compiled.asm["ptx"]
    ptx_target = re.search(r"\.target (sm_\w+)", ptx)
    arch_name = ptx_target.group(1) if ptx_target else arch
    registers, spills = _ptxas_usage(ptx, _capability(arch), arch_name)
    return {
        "kernel": _label(name, dtype, constexprs, num_warps, alignment),
        "arch": arch_name,
        "registers": registers,
        "spills": spills,
        "shared": int(compiled.metadata.shared),
        "vector_loads": vector_loads(ptx),
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
    """One row per registered kernel x dtype x config x alignment x arch: kernel, arch, registers,
    spills (bytes of spill stores + loads), shared (bytes of shared memory), vector_loads (PTX count)."""
    archs = tuple(archs)
    for arch in archs:
        _capability(arch)  # fail fast on a bad name
    if _interpreting():
        return _report_in_child(archs)
    rows = []
    for spec in KERNELS:
        for dtype in DTYPES:
            for constexprs, num_warps in spec.configs:
                for alignment in ALIGNMENTS:
                    for arch in archs:
                        rows.append(compile_one(spec.name, dtype, constexprs, num_warps, alignment, arch))
    return rows


if __name__ == "__main__":  # python -m kernels.aot [ARCH ...]: the report as one JSON line
    print(json.dumps(compile_report(tuple(sys.argv[1:]) or ("sm_80", "sm_90a"))))
