"""`--fsdp`: the policy sharded over the ranks with FSDP2 (`fully_shard`), for models whose weights,
gradients and optimizer state do not fit one device replicated.

Each decoder layer (the model's `_no_split_modules` classes) is its own FSDP2 unit and the policy (with
the frozen reference of a full fine-tune, its layers sharded the same way) is the root unit, so the
embeddings and the LM head the fused loss reads are gathered for the root's forward. Every use of the
weights therefore runs inside the root's forward (`run`), and every rank makes the same calls in the same
order: the trainer pads ranks to the same number of passes, asks for a global batch divisible by the
world size, and generation steps until every rank is done (`synced_gpus`). Gradients are summed over
ranks (each loss times the world size under FSDP2's mean, as policy.distributed explains). Checkpoints hold the full weights and a full,
name-keyed optimizer state gathered to rank 0, so a run resumes with any number of ranks, sharded or not
for the weights. The model is loaded whole on every rank before it is sharded: it must fit a device once,
without its optimizer state and gradients. The shared prompt forward is off (one decoder call per pass).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import torch

from policy.distributed import LossModule, World, optimizer_state_by
from policy.errors import PolicyError

T = TypeVar("T")


def _shard_layers(net: Any, **options: Any) -> None:
    from torch.distributed.fsdp import fully_shard

    base = net.get_base_model() if hasattr(net, "get_base_model") else net
    names = set(getattr(base, "_no_split_modules", None) or [])
    layers = [m for m in net.modules() if type(m).__name__ in names]
    if not layers:
        raise PolicyError(f"--fsdp: {type(base).__name__} names no decoder layer class (_no_split_modules); train it without --fsdp")
    for layer in layers:
        fully_shard(layer, **options)


class Sharded:
    kind = "fsdp"

    def __init__(self, policy: Any, world: World, exact: bool = False) -> None:
        from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

        if policy.kind != "hf":
            raise PolicyError("--fsdp shards a transformers model: use --model tiny or an HF checkpoint dir (bow is one weight vector)")
        self.policy, self.world = policy, world
        policy.share_prompt = False  # one decoder call per pass, the same on every rank
        policy.synced_gpus = True
        self.module = LossModule(policy)
        # exact (--deterministic): each pass's gradients are reduce-scattered in float64 (a sum over ranks
        # rounded once, in any order), then accumulated over the step's passes in fp32
        options = {"mp_policy": MixedPrecisionPolicy(reduce_dtype=torch.float64)} if exact else {}
        _shard_layers(policy.net, **options)
        if policy.ref_net is not None:
            self.module.ref_net = policy.ref_net  # its root-level weights are gathered with the policy's
            _shard_layers(policy.ref_net, **options)
        fully_shard(self.module, **options)

    def loss(self, *args: Any, **kwargs: Any) -> Any:
        return self.module(*args, **kwargs)

    def run(self, fn: Callable[[], T]) -> T:
        with torch.no_grad():
            return self.module(call=fn)  # type: ignore[no-any-return]

    @contextlib.contextmanager
    def no_sync(self) -> Any:
        self.module.set_requires_gradient_sync(False)
        try:
            yield
        finally:
            self.module.set_requires_gradient_sync(True)

    def backward(self, loss: torch.Tensor, sync: bool) -> None:
        """FSDP2 averages gradients over ranks; the trainer's losses want the sum, so each is scaled by the
        world size (exact for a power of two; set_gradient_divide_factor(1) needs PREMUL_SUM, which gloo lacks)."""
        (loss * self.world.size).backward()

    def finish(self) -> None:
        pass

    def clip_grad_norm(self, params: list[torch.nn.Parameter], max_norm: float) -> float:
        norm = torch.nn.utils.clip_grad_norm_(params, max_norm)
        return float(norm.full_tensor() if hasattr(norm, "full_tensor") else norm)

    def _options(self) -> Any:
        from torch.distributed.checkpoint.state_dict import StateDictOptions

        return StateDictOptions(full_state_dict=True, cpu_offload=True)

    def optimizer_state(self, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
        """The full optimizer state keyed by parameter name (gathered on every rank's call; rank 0 has it)."""
        from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict

        return get_optimizer_state_dict(self.module, optimizer, options=self._options())

    def load_optimizer(self, optimizer: torch.optim.Optimizer, state: dict[str, Any]) -> None:
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

        state = optimizer_state_by("name", self.module, state)  # a replicated run's checkpoint too
        set_optimizer_state_dict(self.module, optimizer, state, options=StateDictOptions(full_state_dict=True))

    def weights_saver(self) -> Callable[[Path], None]:
        """Gather the full weights (a collective: every rank calls it); rank 0 writes them with save_pretrained."""
        from torch.distributed.checkpoint.state_dict import get_model_state_dict

        full = get_model_state_dict(self.module, options=self._options())
        state = {k.removeprefix("net."): v for k, v in full.items() if k.startswith("net.")}
        return lambda directory: self.policy.save(directory, state_dict=state)
