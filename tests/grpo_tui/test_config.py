"""Config loading: defaults < preset < file < flags, and errors that name the fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from grpo_tui.config import AutoConfig, GuardConfig, TrainConfig, load_config
from grpo_tui.errors import ConfigError


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "cfg.yaml"
    path.write_text(text)
    return path


def test_precedence_defaults_preset_file_flags(tmp_path: Path) -> None:
    assert load_config(TrainConfig).lr == TrainConfig.model_fields["lr"].default
    cfg = load_config(TrainConfig, preset_name="aggressive")
    assert cfg.loss_type == "dapo" and cfg.beta == 0.0
    path = write(tmp_path, "beta: 0.5\nsteps: 7\n")
    cfg = load_config(TrainConfig, config_file=path, preset_name="aggressive", flags={"steps": 9, "lr": None})
    assert (cfg.loss_type, cfg.beta, cfg.steps, cfg.lr) == ("dapo", 0.5, 9, 3e-4)


def test_misspelt_key_names_closest_valid_key(tmp_path: Path) -> None:
    path = write(tmp_path, "stpes: 10\n")
    with pytest.raises(ConfigError) as info:
        load_config(TrainConfig, config_file=path)
    message = str(info.value)
    assert str(path) in message and "'stpes'" in message and "did you mean 'steps'" in message
    assert "\n" not in message


def test_nested_misspelt_key(tmp_path: Path) -> None:
    path = write(tmp_path, "guard:\n  min_ram_g: 1\n")
    with pytest.raises(ConfigError, match="did you mean 'min_ram_gb'"):
        load_config(AutoConfig, config_file=path)


def test_wrong_type_names_field_and_expected_type(tmp_path: Path) -> None:
    path = write(tmp_path, "min_free_gb: lots\n")
    with pytest.raises(ConfigError, match=r"min_free_gb: expected float, got 'lots'"):
        load_config(GuardConfig, config_file=path)


def test_bad_flag_value_is_named_as_command_line() -> None:
    with pytest.raises(ConfigError, match="command line: steps"):
        load_config(TrainConfig, flags={"steps": 0})


@pytest.mark.parametrize("text", ["- a\n- b\n", "key: [unclosed\n"])
def test_non_mapping_or_broken_yaml(tmp_path: Path, text: str) -> None:
    with pytest.raises(ConfigError, match="cfg.yaml"):
        load_config(TrainConfig, config_file=write(tmp_path, text))


def test_unknown_preset() -> None:
    with pytest.raises(ConfigError, match="choose one of conservative, balanced, aggressive"):
        load_config(TrainConfig, preset_name="wild")
