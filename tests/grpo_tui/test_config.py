"""Config loading: defaults < preset < file < flags, and errors that name the fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from grpo_tui.config import AutoConfig, GuardConfig, MineConfig, TrainConfig, load_config
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


def test_auto_train_section_misspelt_key_names_closest_train_key(tmp_path: Path) -> None:
    path = write(tmp_path, "model: tiny\ntrain:\n  mode: online\n  num_generation: 4\n")
    with pytest.raises(ConfigError) as info:
        load_config(AutoConfig, config_file=path)
    assert str(info.value) == f"{path}: unknown key 'train.num_generation'; did you mean 'num_generations'?"
    with pytest.raises(ConfigError, match=r"train.top_p: expected float, got 2 \(Input should be less than or equal to 1\)"):
        load_config(AutoConfig, config_file=write(tmp_path, "train:\n  top_p: 2\n"))  # TrainConfig's own bounds


@pytest.mark.parametrize(("key", "words"), [("dataset", "each level trains on the groups just mined"),
                                            ("out", "auto/ckpts_<level>/"), ("resume", "resumes the level's last checkpoint"),
                                            ("online", "write `mode: online`")])
def test_auto_train_section_refuses_keys_the_cycle_owns(tmp_path: Path, key: str, words: str) -> None:
    path = write(tmp_path, f"train:\n  {key}: true\n")
    with pytest.raises(ConfigError) as info:
        load_config(AutoConfig, config_file=path)
    message = str(info.value)
    assert message.startswith(f"{path}: train.{key} ") and words in message and "\n" not in message


def test_auto_train_section_forwards_only_the_keys_set_and_wins_over_top_level(tmp_path: Path) -> None:
    path = write(tmp_path, "steps: 50\nlr: 0.001\nmodel: tiny\ntrain:\n  steps: 2\n  lr_step: 10\n  num_generations: 8\n")
    cfg = load_config(AutoConfig, config_file=path, flags={"train": {"mode": "online", "reward_fn": ["builtin:format"]}})
    # num_generations: 8 is TrainConfig's default, forwarded anyway because it was written down
    assert cfg.train.overrides() == {"steps": 2, "lr_step": 10, "num_generations": 8, "reward_fn": ["builtin:format"],
                                     "online": True}
    assert (cfg.train_value("steps"), cfg.train_value("lr"), cfg.train_value("lr_step")) == (2, 0.001, 10)
    sent = cfg.model_dump(mode="json")  # what travels to the scheduler: the section as written
    assert sent["train"] == {"mode": "online", "steps": 2, "lr_step": 10, "num_generations": 8, "reward_fn": ["builtin:format"]}
    assert AutoConfig.model_validate(sent).train.overrides() == cfg.train.overrides()
    assert AutoConfig().train.overrides() == {} and AutoConfig().model_dump()["train"] == {}
    assert AutoConfig.model_validate({"train": {"mode": "offline"}}).train.overrides() == {}


def test_auto_train_section_online_needs_a_generative_model_and_a_reward(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="train.mode online samples completions: set model .* not bow"):
        load_config(AutoConfig, config_file=write(tmp_path, "train:\n  mode: online\n  reward_fn: [builtin:format]\n"))
    with pytest.raises(ConfigError, match="train.mode online needs a reward"):
        load_config(AutoConfig, config_file=write(tmp_path, "train:\n  mode: online\n  model: tiny\n"))
    cfg = load_config(AutoConfig, config_file=write(tmp_path, "model: bow\ntrain:\n  mode: online\n  model: tiny\n  judge: j\n"))
    assert cfg.train.judge == Path("j").absolute()  # paths are taken where the config is read, not in the host


def test_auto_cli_train_flags_merge_over_the_file_section(tmp_path: Path) -> None:
    from grpo_tui.commands.auto import build_config

    path = write(tmp_path, "model: tiny\ntrain:\n  reward_fn: [builtin:format]\n  steps: 3\n")
    cfg = build_config(path, train_mode="online", train_keys="steps: 2, format_regex: '^def '", steps=None)
    assert cfg.train.overrides() == {"reward_fn": ["builtin:format"], "steps": 2, "format_regex": "^def ", "online": True}
    assert build_config(None, train_mode=None, train_keys=None).train.overrides() == {}
    with pytest.raises(ConfigError, match="--train: "):
        build_config(None, train_mode=None, train_keys="steps: [2")


@pytest.mark.parametrize(("model", "text", "field"), [(GuardConfig, "min_free_gb: .inf\n", "min_free_gb"),
                                                      (AutoConfig, "guard:\n  min_ram_gb: .nan\n", "guard.min_ram_gb"),
                                                      (TrainConfig, "lr: -.inf\n", "lr")])
def test_non_finite_values_are_refused_naming_file_and_field(tmp_path: Path, model, text: str, field: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(model, config_file=path)
    assert str(info.value).startswith(f"{path}: {field}: expected ") and "finite number" in str(info.value)


def test_did_you_mean_only_when_a_key_is_close(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(MineConfig, config_file=write(tmp_path, "stpes: 3\n"))
    assert "did you mean" not in str(info.value) and "valid keys: actions_stream" in str(info.value)
    with pytest.raises(ConfigError, match="no valid key is close; `grpo config show` lists the valid keys"):
        load_config(TrainConfig, config_file=write(tmp_path, "zzzz: 3\n"))


def test_non_utf8_config_file_is_named(tmp_path: Path) -> None:
    path = tmp_path / "cfg.yaml"
    path.write_bytes(b"hours: 1\n\xff\xfe: 2\n")
    with pytest.raises(ConfigError, match=r"cfg.yaml: not UTF-8 text \(byte 0xff at offset 9\); save the config file as UTF-8"):
        load_config(MineConfig, config_file=path)
