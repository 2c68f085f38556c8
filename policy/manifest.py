"""manifest.json of a training run: config, dataset fingerprints, package versions, hardware, git commit,
and the part of the environment that shapes a run.

Environment: only allow-listed names are recorded (prefixes in ENV_PREFIXES such as CUDA_, GRPO_,
TORCH_, NCCL_, HF_, and the names in ENV_NAMES); everything else (HOME, DATABASE_URL, GH_PAT, ...)
is left out. An allow-listed name that looks secret (a part TOKEN, KEY, SECRET, PASSWORD, PASSWD,
PASS, PAT, AUTH, CREDENTIAL(S), COOKIE, SESSION, PRIVATE, any case) is recorded as "<redacted>".
In every recorded value, and in argv, URLs lose their userinfo (`redis://:pw@host` -> `redis://host`)
and secret-looking query parameters are redacted (see `scrub_urls`).
"""

from __future__ import annotations

import os
import platform
import re
import subprocess
import sys
import time
import urllib.parse
from importlib import metadata
from pathlib import Path
from typing import Any

import orjson
import torch

from policy.atomic import write_bytes_atomic

SECRET_MARKERS = ("TOKEN", "KEY", "SECRET", "PASSWORD", "PASSWD", "PASSPHRASE", "CREDENTIAL", "COOKIE", "PRIVATE")  # substrings
SECRET_PARTS = frozenset({"PASS", "PWD", "PAT", "AUTH", "SESSION", "SIG", "SIGNATURE"})  # whole `_`-separated parts
ENV_PREFIXES = ("CUDA_", "GRPO_", "TORCH_", "TORCHINDUCTOR_", "TORCHDYNAMO_", "PYTORCH_", "NCCL_", "OMP_", "MKL_",
                "OPENBLAS_", "HF_", "TRANSFORMERS_", "TOKENIZERS_", "TRITON_", "CUBLAS_", "CUDNN_", "NVIDIA_", "KMP_")
ENV_NAMES = frozenset({"RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT",
                       "PYTHONHASHSEED", "CUBLAS_WORKSPACE_CONFIG", "OMP_NUM_THREADS"})
URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s,;'\"]+")
PACKAGES = ("grpo-tui", "torch", "transformers", "tokenizers", "peft", "safetensors", "triton", "numpy")
REDACTED = "<redacted>"


def secret_name(name: str) -> bool:
    """Whether a variable or parameter name looks like it holds a secret."""
    upper = name.upper()
    return any(m in upper for m in SECRET_MARKERS) or bool(SECRET_PARTS & set(re.split(r"[^A-Z0-9]+", upper)))


def _scrub_url(match: re.Match[str]) -> str:
    text = match.group(0)
    try:
        parts = urllib.parse.urlsplit(text)
    except ValueError:  # e.g. a malformed IPv6 netloc: keep nothing after the scheme rather than guess
        return text.split("://", 1)[0] + "://" + REDACTED
    netloc = parts.netloc.rpartition("@")[2]  # drop user:password@
    query = parts.query
    if query:
        pairs = urllib.parse.parse_qsl(query, keep_blank_values=True)
        query = urllib.parse.urlencode([(k, REDACTED if secret_name(k) else v) for k, v in pairs], safe="<>")
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def scrub_urls(value: str) -> str:
    """`value` with every URL in it stripped of userinfo and of secret-looking query parameters' values."""
    return URL.sub(_scrub_url, value)


def allowed_env_name(name: str) -> bool:
    return name in ENV_NAMES or name.startswith(ENV_PREFIXES)


def redact_env(env: dict[str, str]) -> dict[str, str]:
    """The allow-listed part of the environment: secret-looking names redacted, URLs without userinfo."""
    return {k: (REDACTED if secret_name(k) else scrub_urls(v)) for k, v in sorted(env.items()) if allowed_env_name(k)}


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
        "argv": [scrub_urls(a) for a in sys.argv],
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
