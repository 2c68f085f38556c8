"""manifest.json of a training run: config, dataset fingerprints, package versions, hardware, git commit,
and the environment with the values of secret-looking names (containing TOKEN, KEY, SECRET or
PASSWORD, any case) replaced by "<redacted>".
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import orjson
import torch

from policy.atomic import write_bytes_atomic

SECRET_MARKERS = ("TOKEN", "KEY", "SECRET", "PASSWORD")
PACKAGES = ("grpo-tui", "torch", "transformers", "tokenizers", "peft", "safetensors", "triton", "numpy")
REDACTED = "<redacted>"


def redact_env(env: dict[str, str]) -> dict[str, str]:
    """The environment with secret-looking names' values redacted."""
    return {k: (REDACTED if any(m in k.upper() for m in SECRET_MARKERS) else v) for k, v in sorted(env.items())}


def package_versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def hardware() -> dict[str, Any]:
    info: dict[str, Any] = {"platform": platform.platform(), "machine": platform.machine(), "cpus": os.cpu_count()}
    if torch.cuda.is_available():
        info["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return info


def git_commit(source: Path | None = None) -> str | None:
    """HEAD of the git checkout whose top level is `source` (default: this code's source tree), else None."""
    source = Path(source or Path(__file__).resolve().parents[1])
    try:
        top = subprocess.run(["git", "rev-parse", "--show-toplevel", "HEAD"], cwd=source, capture_output=True, text=True, timeout=5, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    lines = top.stdout.split()
    if top.returncode != 0 or len(lines) != 2 or Path(lines[0]).resolve() != source.resolve():
        return None
    return lines[1]


def build_manifest(config: dict[str, Any], fingerprints: dict[str, str], extra: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "created": time.time(),
        "argv": sys.argv,
        "config": config,
        "datasets": fingerprints,
        "packages": package_versions(),
        "hardware": hardware(),
        "git_commit": git_commit(),
        "environment": redact_env(dict(os.environ)),
        **(extra or {}),
    }


def write_manifest(path: Path, manifest: dict[str, Any]) -> None:
    write_bytes_atomic(path, orjson.dumps(manifest, option=orjson.OPT_INDENT_2, default=str))
