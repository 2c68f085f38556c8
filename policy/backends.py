"""What every policy backend offers the trainer, and `load_policy` to build one by name.

A backend turns a `Group` into an `Encoded` batch once (cached by the trainer) and then gives, for
its G candidates, per-token log-probs (G, T) with a completion mask (G, T), the GRPO loss through
`kernels`, a ranking score per candidate (G,) for pairwise accuracy, and save/load of its weights.
Backends: `bow` (policy.bow, no transformers) and `hf` (policy.hf; `tiny` is an hf model built by
policy.tiny under the run's out dir).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import Tensor

from kernels import GRPOStats


@dataclass(frozen=True)
class LossOptions:
    loss_type: str = "grpo"
    eps_low: float = 0.2
    eps_high: float = 0.2
    delta: float | None = None
    ratio_level: str = "token"
    temperature: float = 1.0
    # off-policy correction of logged candidates (StepGroup.behavior_logp), and the entropy mask (kernels.loss)
    is_level: str = "token"
    is_mode: str = "truncate"
    is_cap: float = 3.0
    top_entropy_quantile: float = 1.0


@dataclass
class Encoded:
    """One group ready for the model: target ids and mask (G, T), plus backend inputs."""

    ids: Tensor  # (G, T) int64
    mask: Tensor  # (G, T) float32
    inputs: dict[str, Any] = field(default_factory=dict)

    @property
    def tokens(self) -> int:
        return int(self.mask.sum().item())


@dataclass
class StepGroup:
    """One group as a training step consumes it: logged (offline) or sampled and scored (online)."""

    index: int  # the group's index in the dataset, or the prompt's in the prompt set
    where: str  # how errors name it: "11 (data.jsonl:12)" or "prompt 3 (prompts.jsonl:4)"
    enc: Encoded
    rewards: list[float]  # (G,) one scalar per candidate, the advantages' input
    old_logp: Tensor | None = None  # (G, T) the sampling policy's log-probs; None: captured before update 1
    ref_logp: Tensor | None = None  # (G, T) the reference's; None without a KL term
    behavior_logp: Tensor | None = None  # (G, T) the sampling engine's logged log-probs; None: no IS correction
    samples: list[dict[str, Any]] = field(default_factory=list)  # online: per-sample record for samples.jsonl


class Policy(Protocol):
    kind: str  # "bow" | "hf"
    max_tokens: int  # the constant T of dr_grpo's normalizer (1 for bow)
    device: torch.device

    def encode(self, prompt: str, texts: list[str]) -> Encoded: ...

    def loss(
        self, enc: Encoded, old_logp: Tensor | None, ref_logp: Tensor | None, advantages: Tensor, *,
        beta: float, normalizer: float, opts: LossOptions, behavior_logp: Tensor | None = None,
    ) -> tuple[Tensor, GRPOStats]: ...  # fmt: skip

    def logprobs(self, enc: Encoded, temperature: float = 1.0) -> Tensor: ...  # (G, T), no grad

    def reference_logprobs(self, enc: Encoded, temperature: float = 1.0) -> Tensor: ...  # (G, T), no grad

    def scores(self, enc: Encoded) -> Tensor: ...  # (G,) higher = preferred

    def sequence_logprobs(self, enc: Encoded) -> Tensor: ...  # (G,) log pi(candidate | prompt), no grad

    def split(self, enc: Encoded, size: int | None) -> list[tuple[slice, Encoded]]: ...  # micro-batches of rows

    def trainable_parameters(self) -> list[torch.nn.Parameter]: ...

    def train(self, mode: bool = True) -> None: ...

    def save(self, directory: Path) -> None: ...

    def load_weights(self, directory: Path) -> None: ...

    def describe(self) -> dict[str, Any]: ...


def resolve_device(name: str) -> torch.device:
    """'auto' -> cuda when available, else cpu; anything else as given."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def tiny_path(out: Path) -> Path:
    """Where `--model tiny` lives for a run writing to `out`."""
    return Path(out) / "models" / "tiny"


# The learning rate a run gets when none is set, per Policy.kind: the bow scorer's hashed linear weights
# start at zero and need large steps (held-out accuracy on the demo data barely moves at 1e-4), while
# transformer weights want the usual fine-tuning rate.
DEFAULT_LR: dict[str, float] = {"bow": 0.02, "hf": 1e-4}


def default_lr(kind: str) -> float:
    """The default learning rate of a policy kind ("bow" | "hf")."""
    return DEFAULT_LR[kind]


def load_policy(
    model: str, *, out: Path, device: str = "auto", lora_r: int = 0, lora_alpha: float = 16.0,
    gradient_checkpointing: bool = False, max_completion_tokens: int = 512, bow_buckets: int = 1 << 16,
    seed: int = 0,
) -> Policy:  # fmt: skip
    """Build the policy named by `model`: "bow", "tiny" (built under `out` when missing) or an HF path/id."""
    dev = resolve_device(device)
    if model == "bow":
        from policy.bow import BowPolicy

        return BowPolicy(buckets=bow_buckets, device=dev)
    from policy.hf import HFPolicy

    if model == "tiny":
        from policy.tiny import build_tiny

        path = tiny_path(out).absolute()
        if not path.exists():
            build_tiny(path, seed=seed)
        model = str(path)
    return HFPolicy.load(
        model, device=dev, lora_r=lora_r, lora_alpha=lora_alpha,
        gradient_checkpointing=gradient_checkpointing, max_completion_tokens=max_completion_tokens,
    )  # fmt: skip


def policy_for_checkpoint(meta: dict[str, Any], *, device: str = "auto", max_completion_tokens: int = 512) -> Policy:
    """The policy a checkpoint's meta.json describes, before its weights are loaded."""
    desc = meta.get("policy", {})
    if desc.get("kind") == "bow":
        from policy.bow import BowPolicy

        return BowPolicy(buckets=int(desc["buckets"]), device=resolve_device(device))
    from policy.hf import HFPolicy
    from policy.prompting import PromptFormat

    policy = HFPolicy.load(
        str(desc["base"]), device=resolve_device(device), lora_r=int(desc.get("lora_r", 0)),
        lora_alpha=float(desc.get("lora_alpha", 16.0)), max_completion_tokens=max_completion_tokens,
    )  # fmt: skip
    template = str(desc.get("chat_template", "auto"))
    if template in ("auto", "none") or Path(template).is_file():  # the prompts the run trained on
        policy.set_format(PromptFormat(template, desc.get("system_prompt"), desc.get("max_prompt_tokens")))
    return policy
