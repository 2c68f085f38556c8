"""Validated configs for every command, with their defaults written out once, here.

Precedence, lowest first: model defaults < preset (train only) < `--config-file` YAML < command-line
flags. An unknown key fails naming the file, the key and the closest valid key; a wrong type fails
naming the field and the expected type; a broken cross-key rule (RULE) fails with its own message. All
raise `ConfigError` (exit code 2).

The auto config's `train:` section (AutoTrainConfig) is a TrainConfig of the keys the user set, plus
`mode: offline | online`; its keys win over the top-level auto shorthands (AutoConfig.train_value).
"""

from __future__ import annotations

import difflib
from importlib import resources
from pathlib import Path
from typing import Any, ClassVar, Literal, TypeVar

import yaml
from pydantic import (BaseModel, ConfigDict, Field, SerializerFunctionWrapHandler, ValidationError, field_validator,
                      model_serializer, model_validator)
from pydantic_core import PydanticCustomError

from grpo_tui.errors import ConfigError

LossType = Literal["grpo", "bnpo", "dr_grpo", "dapo", "cispo"]
Level = Literal["global", "signature", "patch"]


class _Config(BaseModel):
    # inf/nan are refused everywhere: JSON has no token for them (orjson writes null), so a
    # non-finite value would be saved as null and make the saved file unreadable
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


MAX_HOURS = 1_000_000.0  # a mining window longer than ~114 years is the whole stream; beyond it ms overflow
RULE = "config_rule"  # the error type of a cross-key rule; its message names the keys itself


def _rule(message: str) -> PydanticCustomError:
    return PydanticCustomError(RULE, "{message}", {"message": message})


class GuardConfig(_Config):
    """Capacity-guard thresholds; 0 turns a check off."""

    min_free_gb: float = Field(5.0, ge=0, description="free disk on the home filesystem, GiB")
    min_ram_gb: float = Field(2.0, ge=0, description="available RAM, GiB")
    min_vram_mb: float = Field(0.0, ge=0, description="free GPU memory on the emptiest GPU, MiB")


class MineConfig(_Config):
    """`grpo mine`: stream window, grouping and outputs."""

    hours: float = Field(48.0, gt=0, le=MAX_HOURS)
    min_k: int = Field(2, ge=2)
    max_k: int = Field(8, ge=2)
    hierarchical: bool = False
    out: Path | None = None
    out_dir: Path | None = None
    since_cursor: bool = False
    actions_stream: str = "rl_actions"
    retrieval_stream: str = "retrieval_events"
    page_size: int = Field(1000, ge=1)
    max_entry_bytes: int = Field(1 << 20, ge=1024, description="entries larger than this are skipped as too_large")


class TrainConfig(_Config):
    """`grpo train`: data, policy backend, GRPO loss, optimisation and outputs."""

    dataset: Path | None = None
    val_dataset: Path | None = None
    val_interval: int = Field(0, ge=0)
    val_split: float = Field(0.0, ge=0, lt=1)
    out: Path | None = None
    model: str = "bow"
    device: str = "auto"
    steps: int = Field(200, ge=1)
    groups_per_step: int = Field(4, ge=1)
    grad_accum: int = Field(1, ge=1)
    max_prompt_chars: int | None = Field(None, ge=1)
    truncate_prompts: bool = False
    max_completion_tokens: int = Field(512, ge=1)
    max_prompt_tokens: int | None = Field(None, ge=1)
    chat_template: str = "auto"
    system_prompt: str | None = None
    micro_batch_size: int | None = Field(None, ge=1)
    skip_bad_lines: bool = False
    blocklist: Path | None = None
    reward_weights: dict[str, float] = Field(default_factory=dict)
    # advantages
    adv_baseline: Literal["mean", "median", "loo"] = "mean"
    scale_rewards: Literal["group", "batch", "none"] = "group"
    adv_std: Literal["unbiased", "population"] = "unbiased"
    adv_clip: float | None = Field(5.0, gt=0)
    reward_clip: float | None = Field(None, gt=0)
    # loss
    loss_type: LossType = "grpo"
    eps_low: float = Field(0.2, ge=0)
    eps_high: float = Field(0.2, ge=0)
    delta: float | None = Field(None, gt=1)
    ratio_level: Literal["token", "sequence"] = "token"
    temperature: float = Field(1.0, gt=0)
    is_level: Literal["token", "sequence"] = "token"
    is_mode: Literal["truncate", "mask"] = "truncate"
    is_cap: float = Field(3.0, gt=0)
    top_entropy_quantile: float = Field(1.0, gt=0, le=1)
    beta: float = Field(0.04, ge=0)
    kl_warmup: int = Field(0, ge=0)
    kl_target: float | None = Field(None, ge=0)
    kl_adaptive: bool = False
    kl_adaptive_target: float = Field(0.1, gt=0, description="KL the adaptive controller steers towards")
    kl_horizon: int = Field(100, ge=1, description="adaptive KL controller horizon, steps")
    num_iterations: int = Field(1, ge=1)
    # optimisation
    lr: float | None = Field(None, gt=0, description="None: the backend's default (policy.backends.DEFAULT_LR)")
    weight_decay: float = Field(0.0, ge=0)
    lr_step: int | None = Field(None, ge=1)
    lr_gamma: float = Field(0.5, gt=0)
    warmup_steps: int = Field(0, ge=0)
    cosine: bool = False
    max_grad_norm: float = Field(1.0, gt=0)
    max_nan_skips: int = Field(10, ge=1)
    lora_r: int = Field(0, ge=0)
    lora_alpha: float = Field(16.0, gt=0)
    gradient_checkpointing: bool = False
    nproc: int = Field(1, ge=1, description="processes (devices) to train on; > 1 starts torchrun")
    fsdp: bool = False
    dist_timeout: float = Field(600.0, gt=0, description="seconds a collective may wait for another rank")
    bow_buckets: int = Field(1 << 16, ge=16, description="hashed feature buckets of the bow backend")
    seed: int = 0
    deterministic: bool = False
    # online GRPO
    online: bool = False
    prompts: Path | None = None
    num_generations: int = Field(8, ge=2)
    prompts_per_step: int = Field(4, ge=1)
    max_new_tokens: int = Field(64, ge=1)
    top_p: float = Field(1.0, gt=0, le=1)
    top_k: int = Field(0, ge=0)
    mask_truncated: bool = False
    mix_logged: int = Field(0, ge=0)
    reward_fn: list[str] = Field(default_factory=list)
    judge: Path | None = None
    judge_device: str = "auto"
    format_regex: str | None = None
    overlong_buffer: int | None = Field(None, ge=1)
    exec_timeout: float = Field(5.0, gt=0)
    exec_memory_mb: int = Field(1024, ge=16)
    log_samples: int = Field(0, ge=0)
    # outputs
    log_every: int = Field(1, ge=1)
    save_every: int = Field(100, ge=1)
    keep_checkpoints: int = Field(3, ge=1)
    report_to: Literal["none", "tensorboard", "wandb"] = "none"


class AutoTrainConfig(TrainConfig):
    """The auto config's `train:` section: `mode` plus any `grpo train` key, forwarded to each level's trainer.

    Only the keys set here are forwarded (and dumped: the section serialises as its set keys, so it
    survives the trip to the scheduler as written). They win over the top-level auto keys of the
    same name (model, device, steps, lr, lr_step, lr_gamma, beta, kl_warmup, kl_target). `mode:
    online` trains online (`grpo train --online`) on the prompts of the groups the cycle has just
    mined (the level's dataset). Keys the cycle owns per level are refused (OWNED). Relative paths
    are made absolute where the config is read, since the scheduler host may run elsewhere.
    """

    OWNED: ClassVar[dict[str, str]] = {
        "dataset": "is set by the auto cycle: each level trains on the groups just mined (auto/<level>.jsonl); remove it",
        "out": "is set by the auto cycle: each level trains in auto/ckpts_<level>/; remove it",
        "resume": "is set by the auto cycle: every cycle resumes the level's last checkpoint; remove it",
        "online": "comes from train.mode: write `mode: online` (or `mode: offline`) instead",
    }

    mode: Literal["offline", "online"] = "offline"
    preset: Literal["conservative", "balanced", "aggressive"] | None = None  # `grpo train --preset`, under the keys here

    @model_validator(mode="before")
    @classmethod
    def _refuse_owned(cls, data: Any) -> Any:
        for key in data if isinstance(data, dict) else ():
            if key in cls.OWNED:
                raise _rule(f"train.{key} {cls.OWNED[key]}")
        return data

    @field_validator("val_dataset", "prompts", "judge", "blocklist")
    @classmethod
    def _absolute(cls, value: Path | None) -> Path | None:
        return None if value is None else value.expanduser().absolute()

    @model_serializer(mode="wrap")
    def _set_keys_only(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        return {k: v for k, v in handler(self).items() if k in self.model_fields_set}

    def overrides(self) -> dict[str, Any]:
        """The `grpo train` keys to forward (JSON-ready): the keys set here, `online: true` in online mode."""
        keys = {k: v for k, v in self.model_dump(mode="json").items() if k not in ("mode", "preset")}
        return (keys | {"online": True}) if self.mode == "online" else keys


class OnCheckpointConfig(_Config):
    """The auto config's `on_checkpoint:` serving hook, run after a level trains successfully.

    With `export: true` the level's newest checkpoint is exported (`grpo export`, a child process) into
    `<home>/serve/<level>/step_NNNNNN`, `serve/<level>/current` is switched to it, and `command` (if
    any) runs through the shell with GRPO_EXPORT_DIR, GRPO_LEVEL and GRPO_STEP set, for at most
    `timeout_sec`. A failure is recorded in the cycle's record (`serve`) and never fails the cycle.
    """

    export: bool = False
    command: str | None = None
    timeout_sec: float = Field(600.0, gt=0)
    merge_lora: bool = Field(True, description="LoRA checkpoints: merge into a full model (false: a PEFT adapter dir)")
    dtype: Literal["bf16", "fp16", "fp32"] = "bf16"
    keep: int = Field(2, ge=0, description="older exports kept per level besides current")


class AutoConfig(_Config):
    """Auto mode: one cycle = guard check, mine since the cursor, train each level, nudge policy.

    The top-level model, device, steps, lr, lr_step, lr_gamma, beta, kl_warmup and kl_target are
    shorthands of the same `grpo train` keys; a key set in the `train:` section wins over its
    shorthand (`train_value`).
    """

    period_sec: float = Field(300.0, gt=0)
    hours: float = Field(24.0, gt=0, le=MAX_HOURS)
    min_groups: int = Field(20, ge=1)
    mode: Literal["single", "hierarchical"] = "single"
    levels: list[Level] = Field(default_factory=lambda: ["global", "signature", "patch"])
    steps: int = Field(400, ge=1)
    model: str = "bow"
    device: str = "auto"
    apply_policy: bool = False
    workspace: Path | None = None
    top_k: int = Field(3, ge=1)
    bottom_k: int = Field(1, ge=0)
    guard: GuardConfig = Field(default_factory=GuardConfig)
    lr: float | None = Field(None, gt=0, description="None: the backend's default, as for `grpo train`")
    lr_step: int | None = Field(None, ge=1)
    lr_gamma: float = Field(0.5, gt=0)
    beta: float = Field(0.04, ge=0)
    kl_warmup: int = Field(0, ge=0)
    kl_target: float | None = Field(None, ge=0)
    train: AutoTrainConfig = Field(default_factory=AutoTrainConfig)
    on_checkpoint: OnCheckpointConfig = Field(default_factory=OnCheckpointConfig)

    @model_validator(mode="after")
    def _online_needs(self) -> AutoConfig:
        if self.on_checkpoint.export and self.train_value("model") == "bow":
            raise _rule("on_checkpoint.export serves a language model: set model (or train.model) to tiny or an HF model dir, not bow")
        if self.train.mode != "online":
            return self
        if self.train_value("model") == "bow":
            raise _rule("train.mode online samples completions: set model (or train.model) to tiny or an HF model dir, not bow")
        if not self.train.reward_fn and self.train.judge is None:
            raise _rule("train.mode online needs a reward: set train.reward_fn (e.g. [builtin:format]) and/or train.judge")
        return self

    def train_value(self, key: str) -> Any:
        """The value a level's trainer gets for a top-level train key: the section's when set there."""
        return getattr(self.train, key) if key in self.train.model_fields_set else getattr(self, key)


C = TypeVar("C", bound=_Config)

PRESETS = ("conservative", "balanced", "aggressive")


def read_yaml(path: Path) -> dict[str, Any]:
    """Read a YAML mapping; an unreadable or non-mapping file is a ConfigError naming the file."""
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config file ({exc.strerror}); check the path") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset {exc.start}); "
                          "save the config file as UTF-8") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc}); fix the syntax") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a config file must be a mapping of keys to values, got {type(data).__name__}")
    return data


def preset(name: str) -> dict[str, Any]:
    """The train overrides of a named preset, shipped as YAML inside the package."""
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    text = resources.files("grpo_tui").joinpath("presets", f"{name}.yaml").read_text(encoding="utf-8")
    return yaml.safe_load(text) or {}


def parse_mapping(text: str, source: str) -> dict[str, Any]:
    """A YAML flow mapping typed on one line ('a: 1, b: [x, y]', braces optional); blank text is {}."""
    text = text.strip()
    if not text:
        return {}
    try:
        data = yaml.safe_load(text if text.startswith("{") else "{" + text + "}")
    except yaml.YAMLError as exc:
        problem = getattr(exc, "problem", None) or "not valid YAML"
        raise ConfigError(f"{source}: {problem}; write 'key: value, key: [a, b]' (quote values with ',' or ':')") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected 'key: value, ...', got {text!r}")
    return data


def _closest(key: str, valid: list[str]) -> str | None:
    """The valid key most like `key`, or None when none is close (a wild guess misleads more than none)."""
    match = difflib.get_close_matches(key, valid, n=1, cutoff=0.6)
    return match[0] if match else None


def _explain(model: type[_Config], exc: ValidationError, source: str) -> str:
    return f"{source}: {describe(model, exc)}"


def describe(model: type[BaseModel], exc: ValidationError) -> str:
    """The first error of `exc` as one line that names the key and the fix (the forms show it too)."""
    err = exc.errors()[0]
    loc = [str(p) for p in err["loc"]]
    field = ".".join(loc)
    if err["type"] == RULE:
        return err["msg"]
    if err["type"] == "extra_forbidden":
        owner: type[BaseModel] = model
        for part in loc[:-1]:
            annotation = owner.model_fields[part].annotation
            owner = annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else owner
        valid = sorted(k for k in owner.model_fields if k not in getattr(owner, "OWNED", {}))
        close = _closest(loc[-1], valid)
        if close is not None:
            return f"unknown key {field!r}; did you mean {close!r}?"
        if len(valid) <= 20:
            return f"unknown key {field!r}; valid keys: {', '.join(valid)}"
        return f"unknown key {field!r} and no valid key is close; `grpo config show` lists the valid keys"
    expected = _annotation(model, loc)
    return f"{field}: expected {expected}, got {err.get('input')!r} ({err['msg']})"


def _annotation(model: type[BaseModel], loc: list[str]) -> str:
    owner: type[BaseModel] = model
    for part in loc:
        field = owner.model_fields.get(part)
        if field is None:
            break
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            owner = annotation
            continue
        return getattr(annotation, "__name__", None) or str(annotation).replace("typing.", "")
    return "a valid value"


def _merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def load_config(
    model: type[C],
    config_file: Path | None = None,
    flags: dict[str, Any] | None = None,
    preset_name: str | None = None,
) -> C:
    """Build a validated config: defaults < preset < config file < flags (None flags are unset)."""
    layers: list[tuple[str, dict[str, Any]]] = []
    if preset_name:
        layers.append((f"preset {preset_name}", preset(preset_name)))
    if config_file is not None:
        layers.append((str(config_file), read_yaml(config_file)))
    if flags:
        layers.append(("command line", {k: v for k, v in flags.items() if v is not None}))
    merged: dict[str, Any] = {}
    for source, layer in layers:
        try:  # validate each layer alone first so the error names the layer that is wrong
            model.model_validate(_merge(merged, layer))
        except ValidationError as exc:
            raise ConfigError(_explain(model, exc, source)) from exc
        merged = _merge(merged, layer)
    return model.model_validate(merged)


CONFIGS: dict[str, type[_Config]] = {
    "train": TrainConfig,
    "mine": MineConfig,
    "auto": AutoConfig,
    "guard": GuardConfig,
}
