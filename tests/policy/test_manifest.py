"""policy.manifest: secrets redacted, versions and hardware recorded."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from policy.manifest import REDACTED, build_manifest, redact_env, write_manifest


def test_secret_looking_names_are_redacted() -> None:
    env = {"HF_TOKEN": "hf_x", "AWS_SECRET_ACCESS_KEY": "k", "db_password": "p", "ApiKey": "a", "HOME": "/root"}
    out = redact_env(env)
    assert out == {"AWS_SECRET_ACCESS_KEY": REDACTED, "ApiKey": REDACTED, "HF_TOKEN": REDACTED, "HOME": "/root", "db_password": REDACTED}


def test_manifest_has_config_fingerprints_versions_hardware_and_no_secret(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MY_API_TOKEN", "do-not-leak")
    path = tmp_path / "manifest.json"
    write_manifest(path, build_manifest({"lr": 0.1}, {"train": "abc"}))
    data = orjson.loads(path.read_bytes())
    assert data["config"] == {"lr": 0.1} and data["datasets"] == {"train": "abc"}
    assert data["packages"]["torch"] and data["packages"]["python"] and data["hardware"]["cpus"]
    assert "git_commit" in data and data["environment"]["MY_API_TOKEN"] == REDACTED
    assert "do-not-leak" not in path.read_text()
