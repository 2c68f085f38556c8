"""The trainer's own settings (`TrainSettings`) and its callbacks (`Hooks`).

`policy` may not import `grpo_tui`, so the trainer takes this plain dataclass; `grpo_tui.commands.train`
builds it from the validated `grpo_tui.config.TrainConfig`, whose defaults are the CLI's single source
(a test checks that the defaults here agree with it). Python callers (the scheduler) may build it directly.

Step semantics (offline, the default): one step consumes `groups_per_step * grad_accum` groups with non-zero reward variance
(one forward per group, gradients accumulated, one optimizer update per iteration); with
`num_iterations = K` the step's batch is reused for K optimizer updates, with the old log-probs captured
before the first. Online (`online=True`): one step samples `num_generations` completions for each of
`prompts_per_step` prompts from the current policy, scores them, and makes `num_iterations` updates on
them with the sampling log-probs as the old log-probs. With `resume`, `steps` means that many MORE steps after the restored checkpoint's step.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from torch import Tensor


@dataclass
class TrainSettings:
    dataset: Path | None
    out: Path
    model: str = "bow"  # "bow" | "tiny" | a local HF checkpoint dir (or hub id)
    val_dataset: Path | None = None
    val_interval: int = 0
    val_split: float = 0.0  # hold out this share of the groups (by prompt) when there is no val_dataset
    device: str = "auto"  # "auto" | "cpu" | "cuda" | "cuda:N"
    steps: int = 200
    resume: bool = False
    groups_per_step: int = 4
    grad_accum: int = 1
    max_prompt_chars: int | None = None
    truncate_prompts: bool = False
    max_completion_tokens: int = 512
    max_prompt_tokens: int | None = None  # hf: keep the last N prompt ids (left truncation)
    chat_template: str = "auto"  # hf: auto | none | a Jinja file (policy.prompting)
    system_prompt: str | None = None
    micro_batch_size: int | None = None  # hf: candidates per forward/backward (a group is split, never its loss)
    skip_bad_lines: bool = False
    blocklist: Path | None = None
    reward_weights: dict[str, float] = field(default_factory=dict)
    # advantages
    adv_baseline: str = "mean"  # mean | median | loo
    scale_rewards: str = "group"  # group | batch | none
    adv_std: str = "unbiased"  # unbiased (correction 1, as TRL) | population (correction 0)
    adv_clip: float | None = 5.0
    reward_clip: float | None = None
    # loss
    loss_type: str = "grpo"
    eps_low: float = 0.2
    eps_high: float = 0.2
    delta: float | None = None
    ratio_level: str = "token"
    temperature: float = 1.0
    is_level: str = "token"  # off-policy weight of logged behaviour log-probs per token | sequence
    is_mode: str = "truncate"  # truncate the weight at is_cap | mask (zero) tokens/sequences above it
    is_cap: float = 3.0
    top_entropy_quantile: float = 1.0  # < 1: only the top q of tokens by entropy carry the loss
    beta: float = 0.04
    kl_warmup: int = 0
    kl_target: float | None = None
    kl_adaptive: bool = False
    kl_adaptive_target: float = 0.1
    kl_horizon: int = 100
    num_iterations: int = 1
    # optimisation
    lr: float | None = None  # None: the backend's default (policy.backends.DEFAULT_LR: bow 0.05, hf 1e-4)
    weight_decay: float = 0.0
    lr_step: int | None = None
    lr_gamma: float = 0.5
    warmup_steps: int = 0
    cosine: bool = False
    max_grad_norm: float = 1.0
    max_nan_skips: int = 10
    lora_r: int = 0
    lora_alpha: float = 16.0
    gradient_checkpointing: bool = False
    nproc: int = 1  # processes; > 1: `grpo train` re-runs itself under torchrun (policy.distributed)
    fsdp: bool = False  # shard the policy (and a frozen reference) with FSDP2 instead of DDP
    dist_timeout: float = 600.0  # seconds a collective waits for a missing rank before failing
    bow_buckets: int = 1 << 16
    seed: int = 0
    deterministic: bool = False
    # online GRPO (policy.online): sample groups from the policy, score them with reward functions
    online: bool = False
    prompts: Path | None = None  # JSONL with a prompt field, or plain text; else the prompts of `dataset`
    num_generations: int = 8
    prompts_per_step: int = 4
    max_new_tokens: int = 64
    top_p: float = 1.0
    top_k: int = 0
    mask_truncated: bool = False
    mix_logged: int = 0
    reward_fn: list[str] = field(default_factory=list)  # module:function | file.py:function | builtin:NAME
    judge: Path | None = None
    judge_device: str = "auto"
    format_regex: str | None = None
    overlong_buffer: int | None = None
    exec_timeout: float = 5.0
    exec_memory_mb: int = 1024
    log_samples: int = 0
    # outputs
    log_every: int = 1
    save_every: int = 100
    keep_checkpoints: int = 3
    report_to: str = "none"  # none | tensorboard | wandb (policy.tracking)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (paths as strings), for meta.json and manifest.json."""
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(self).items()}


@dataclass
class Hooks:
    """Callbacks the trainer calls; all optional.

    before_train(): called right before the first step, after everything is loaded (the capacity
        guard's seam: raise to refuse).
    on_start(info): once training starts, with {"start_step", "target_step", "groups", "model"}.
    on_step(record): after every step with that step's metrics record (progress bars, the scheduler).
    loss_hook(step, group_id, loss) -> loss: may replace one group's loss (fault injection in tests).
    should_stop() -> bool: checked after every step; True saves a checkpoint and ends the run early
        with summary status "stopped" (the CLI wires it to SIGTERM / Ctrl-C).
    """

    before_train: Callable[[], None] | None = None
    on_start: Callable[[dict[str, Any]], None] | None = None
    on_step: Callable[[dict[str, Any]], None] | None = None
    loss_hook: Callable[[int, int, Tensor], Tensor] | None = None
    should_stop: Callable[[], bool] | None = None
