"""policy.checkpoint: atomic dirs, sha256 verification, keep-N, fallback from a corrupt newest."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import torch

from policy import checkpoint as ckpt
from policy.errors import CheckpointError


def save(root: Path, step: int, keep: int = 3) -> Path:
    def weights(directory: Path) -> None:
        (directory / "model.safetensors").write_bytes(bytes([step]) * 64)

    state = {"step": step, "optimizer": {"state": {}, "param_groups": [{"lr": 0.1}]}, "rng": {"python": (3, (1, 2), None)}}
    return ckpt.save_checkpoint(root, step, save_weights=weights, state=state, meta={"config": {"lr": 0.1}}, keep=keep)


def test_a_checkpoint_records_sha256_of_each_file_and_loads_weights_only(tmp_path: Path) -> None:
    path = save(tmp_path, 7)
    assert path.name == "step_000007" and not (tmp_path / "step_000007.tmp").exists()
    meta = ckpt.verify(path)
    assert meta["step"] == 7 and set(meta["files"]) == {"model.safetensors", "trainer_state.pt"}
    state = ckpt.load_state(path)
    assert state["step"] == 7 and state["rng"]["python"] == (3, (1, 2), None)


def test_only_the_newest_n_are_kept_and_stale_tmp_dirs_go(tmp_path: Path) -> None:
    (tmp_path / "step_000001.tmp").mkdir()
    for step in (10, 20, 30, 40):
        save(tmp_path, step, keep=2)
    assert [s for s, _ in ckpt.list_checkpoints(tmp_path)] == [40, 30]
    assert not (tmp_path / "step_000001.tmp").exists()


def test_a_truncated_newest_falls_back_to_the_previous_with_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    save(tmp_path, 10)
    newest = save(tmp_path, 20)
    weights = newest / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:10])
    with caplog.at_level(logging.WARNING, logger="policy"):
        path, meta = ckpt.latest_valid(tmp_path)
    assert path.name == "step_000010" and meta["step"] == 10
    assert "step_000020 is corrupt" in caplog.text and "does not match its sha256" in caplog.text


def test_no_intact_checkpoint_is_an_error_and_none_at_all_is_none(tmp_path: Path) -> None:
    assert ckpt.latest_valid(tmp_path / "nothing") is None
    path = save(tmp_path, 5)
    (path / "trainer_state.pt").unlink()
    with pytest.raises(CheckpointError, match="trainer_state.pt is missing"):
        ckpt.latest_valid(tmp_path)
    (path / "meta.json").write_text("{", encoding="utf-8")
    with pytest.raises(CheckpointError, match="unreadable meta.json"):
        ckpt.verify(path)


def test_resolve_accepts_a_step_dir_a_checkpoints_dir_or_a_run_dir(tmp_path: Path) -> None:
    save(tmp_path / "run" / "checkpoints", 3)
    newest = save(tmp_path / "run" / "checkpoints", 4)
    for where in (newest, tmp_path / "run" / "checkpoints", tmp_path / "run"):
        assert ckpt.resolve(where)[0] == newest
    with pytest.raises(CheckpointError, match="no checkpoint here"):
        ckpt.resolve(tmp_path / "empty")


def test_weights_only_load_refuses_arbitrary_objects(tmp_path: Path) -> None:
    path = save(tmp_path, 1)
    torch.save({"step": 1, "evil": object()}, path / "trainer_state.pt")
    meta = json.loads((path / "meta.json").read_text())
    from policy.atomic import sha256_file

    meta["files"]["trainer_state.pt"] = sha256_file(path / "trainer_state.pt")
    (path / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(Exception, match="(?i)weights_only|unsupported"):
        ckpt.load_state(path)
