"""policy.manifest: secrets redacted, versions and hardware recorded."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from policy.manifest import REDACTED, build_manifest, redact_env, write_manifest

ROOT = Path(__file__).resolve().parents[2]


def test_only_allow_listed_names_are_recorded_and_secret_looking_ones_redacted() -> None:
    env = {"HF_TOKEN": "hf_x", "AWS_SECRET_ACCESS_KEY": "k", "db_password": "p", "ApiKey": "a", "HOME": "/root",
           "HF_HOME": "/hf", "CUDA_VISIBLE_DEVICES": "0", "GRPO_API_KEY": "g", "GRPO_AUTH": "z", "GRPO_DB_PASSWD": "w",
           "TORCH_HOME": "/t", "GRPO_KEEP": "3", "PATH": "/bin"}
    out = redact_env(env)
    assert out == {"CUDA_VISIBLE_DEVICES": "0", "GRPO_API_KEY": REDACTED, "GRPO_AUTH": REDACTED, "GRPO_DB_PASSWD": REDACTED,
                   "GRPO_KEEP": "3", "HF_HOME": "/hf", "HF_TOKEN": REDACTED, "TORCH_HOME": "/t"}


def test_urls_lose_userinfo_and_secret_query_values() -> None:
    env = {"GRPO_REDIS_URL": "redis://:pw1@cache:6379/0", "HF_ENDPOINT": "https://user:pw2@hub.local/api?token=pw3&rev=main",
           "GRPO_MIRRORS": "http://a:pw4@m1/x, http://m2/y"}
    out = redact_env(env)
    assert out["GRPO_REDIS_URL"] == "redis://cache:6379/0"
    assert out["HF_ENDPOINT"] == f"https://hub.local/api?token={REDACTED}&rev=main"
    assert out["GRPO_MIRRORS"] == "http://m1/x, http://m2/y"


def test_manifest_has_config_fingerprints_versions_hardware_and_no_secret(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MY_API_TOKEN", "do-not-leak")
    path = tmp_path / "manifest.json"
    write_manifest(path, build_manifest({"lr": 0.1}, {"train": "abc"}))
    data = orjson.loads(path.read_bytes())
    assert data["config"] == {"lr": 0.1} and data["datasets"] == {"train": "abc"}
    assert data["packages"]["torch"] and data["packages"]["python"] and data["hardware"]["cpus"]
    assert "git_commit" in data and "MY_API_TOKEN" not in data["environment"]
    assert "do-not-leak" not in path.read_text()


SECRETS = {  # every case of issue 15 item 4, each with a value found nowhere else
    "GRPO_REDIS_URL": "redis://:leak-redis-pw@cache.internal:6379/0",
    "DATABASE_URL": "postgres://admin:leak-db-pw@db.internal/prod",
    "SMTP_PASSWD": "leak-smtp-passwd",
    "PROXY_AUTH": "leak-proxy-auth",
    "GOOGLE_APPLICATION_CREDENTIALS": "/secret/leak-gcp-credentials.json",
    "AWS_SHARED_CREDENTIALS_FILE": "/secret/leak-aws-credentials",
    "GH_PAT": "ghp_leakgithubpat",
    "HF_TOKEN": "hf_leakhftoken",
    "HUGGING_FACE_HUB_TOKEN": "hf_leakhubtoken",
    "GRPO_API_KEY": "leak-grpo-api-key",
    "GRPO_AUTH": "leak-grpo-auth",
    "MY_SECRET": "leak-my-secret",
    "DB_PASSWORD": "leak-db-password",
    "HF_ENDPOINT": "https://hubuser:leak-hf-endpoint-pw@hub.internal/?access_token=leak-hf-query-token",
}
LEAKS = ("leak-redis-pw", "leak-db-pw", "leak-smtp-passwd", "leak-proxy-auth", "leak-gcp-credentials", "leak-aws-credentials",
         "ghp_leakgithubpat", "hf_leakhftoken", "hf_leakhubtoken", "leak-grpo-api-key", "leak-grpo-auth", "leak-my-secret",
         "leak-db-password", "leak-hf-endpoint-pw", "leak-hf-query-token", "hubuser")


def test_real_train_run_writes_no_secret_anywhere(home: Path, tmp_path: Path) -> None:
    """A real `grpo train` child with every kind of secret in its environment: no file it wrote holds any of them."""
    data = tmp_path / "groups.jsonl"
    data.write_text("".join(orjson.dumps({"prompt": f"task {i}: pick the word", "candidates": [
        {"text": "use sorted here", "reward": 1.0}, {"text": "use open here", "reward": 0.1}]}).decode() + "\n" for i in range(8)))
    out = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "GRPO_HOME": str(home), **SECRETS}
    proc = subprocess.run([sys.executable, "-m", "grpo_tui.cli", "--home", str(home), "train", "--dataset", str(data),
                           "--steps", "2", "--save-every", "1", "--out", str(out), "--json"],
                          cwd=ROOT, env=env, capture_output=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    written = [p for root in (out, home) for p in root.rglob("*") if p.is_file() and not p.is_symlink()]
    manifest = out / "manifest.json"
    assert manifest in written and len(written) > 3
    for path in written:
        blob = path.read_bytes()
        for leak in LEAKS:
            assert leak.encode() not in blob, f"{leak} found in {path}"
    recorded = orjson.loads(manifest.read_bytes())["environment"]
    assert recorded["GRPO_REDIS_URL"] == "redis://cache.internal:6379/0" and recorded["GRPO_API_KEY"] == REDACTED
    assert recorded["HF_TOKEN"] == REDACTED and recorded["HF_ENDPOINT"].startswith("https://hub.internal/")
    for name in ("DATABASE_URL", "SMTP_PASSWD", "PROXY_AUTH", "GOOGLE_APPLICATION_CREDENTIALS", "GH_PAT", "MY_SECRET", "HOME"):
        assert name not in recorded
