"""Training on several processes under torchrun: the world, its collectives, and the wrapped policy.

`World.from_env()` reads torchrun's RANK / WORLD_SIZE / LOCAL_RANK (a plain run is the world of one);
`init` joins the process group (NCCL on CUDA, gloo on CPU) with `timeout` seconds for every collective,
so a rank that dies or hangs makes the others fail instead of waiting for ever.

How the trainer uses it (policy.trainer), so that a run's result does not depend on the world size:
every rank draws the same global batch of groups from the seed (policy.sampler) and trains on its
share `shard(batch)` = batch[rank::size] (a group is never split: advantages are per group); the
advantages and every loss normaliser are computed from the whole batch's rewards and token counts
(`gather`ed), so each rank's loss is its part of the single-process sum. The gradient is then the
SUM over ranks (DDP with a summing comm hook; FSDP2's mean of losses scaled by the world size), the same as one process
accumulating every group. Every rank runs the same number of forward/backward passes (`max_int` of the
micro-batch counts; a rank with fewer repeats its last one with weight 0), all but the last under
no-sync, so the collectives line up under DDP and FSDP2 alike.
"""

from __future__ import annotations

import contextlib
import datetime
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist

from policy.errors import PolicyError

T = TypeVar("T")


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @classmethod
    def from_env(cls) -> World:
        """This process's place in torchrun's world (the world of one outside torchrun)."""
        env = os.environ
        return cls(int(env.get("RANK", 0)), int(env.get("WORLD_SIZE", 1)), int(env.get("LOCAL_RANK", 0)))

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def multi(self) -> bool:
        return self.size > 1


def init(world: World, device: torch.device, timeout_s: float) -> None:
    """Join the process group (once): NCCL on CUDA (this rank's device), gloo on CPU."""
    if not world.multi or dist.is_initialized():
        return
    if device.type == "cuda":
        torch.cuda.set_device(device)
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend, timeout=datetime.timedelta(seconds=timeout_s), device_id=device if device.type == "cuda" else None)


def shutdown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


@contextlib.contextmanager
def session() -> Iterator[None]:
    """Leave the process group (when one was joined) however the block ends."""
    try:
        yield
    finally:
        shutdown()


def rank_device(name: str, world: World) -> str:
    """The device a rank trains on: cuda -> cuda:LOCAL_RANK under torchrun; anything else as given."""
    if world.multi and name in ("auto", "cuda"):
        return f"cuda:{world.local_rank}" if torch.cuda.is_available() else "cpu"
    return name


def shard(items: list[T], world: World) -> list[T]:
    """This rank's share of a global list: items[rank::size]."""
    return items[world.rank :: world.size]


def unshard(parts: list[list[T]]) -> list[T]:
    """The global list back from every rank's `shard` (rank order): the inverse of shard."""
    out: list[T] = []
    for i in range(max((len(p) for p in parts), default=0)):
        out += [p[i] for p in parts if i < len(p)]
    return out


def gather(obj: T, world: World) -> list[T]:
    """Every rank's `obj` (picklable), in rank order."""
    if not world.multi:
        return [obj]
    out: list[Any] = [None] * world.size
    dist.all_gather_object(out, obj)
    return out


def _reduce(values: list[float], world: World, op: Any, dtype: torch.dtype = torch.float64) -> list[float]:
    if not world.multi:
        return list(values)
    dev = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")
    t = torch.tensor(values, dtype=dtype, device=dev)
    dist.all_reduce(t, op=op)
    return t.tolist()


def sum_floats(values: list[float], world: World) -> list[float]:
    """Element-wise sum over ranks, in float64."""
    return _reduce(values, world, dist.ReduceOp.SUM)


def max_int(value: int, world: World) -> int:
    return int(_reduce([value], world, dist.ReduceOp.MAX, torch.int64)[0])


def any_true(flag: bool, world: World) -> bool:
    """Whether `flag` is set on any rank (every rank gets the same answer)."""
    return max_int(int(flag), world) > 0


def barrier(world: World) -> None:
    if world.multi:
        dist.barrier()


class LossModule(torch.nn.Module):
    """The policy as one module for DDP / FSDP2: its trainable weights are this module's parameters and
    `forward(*args, **kw)` is `policy.loss(...)`, so the wrapper sees one forward per backward whatever
    the backend does inside (a shared prompt pass, the fused LM head)."""

    def __init__(self, policy: Any) -> None:
        super().__init__()
        self.policy = [policy]  # a list: not a submodule of its own
        if hasattr(policy, "net"):
            self.net = policy.net
        else:
            self.weight = policy.weight

    def forward(self, *args: Any, call: Any = None, **kwargs: Any) -> Any:
        """`policy.loss(*args, **kwargs)`, or `call()` (FSDP2: any use of the weights runs inside the root's forward)."""
        return call() if call is not None else self.policy[0].loss(*args, **kwargs)


def optimizer_state_by(keys: str, module: torch.nn.Module, state: dict[str, Any]) -> dict[str, Any]:
    """An optimizer state dict keyed by parameter index ("index": torch's own) or by parameter name
    ("name": FSDP2's full state dicts), whichever it came in: checkpoints of replicated and sharded runs
    load into either. Names and indices are the trainable parameters of `module` in order."""
    names = [n for n, p in module.named_parameters() if p.requires_grad and not n.startswith("ref_net.")]
    to = {i: n for i, n in enumerate(names)} if keys == "name" else {n: i for i, n in enumerate(names)}
    if all(k in to.values() for k in state["state"]):
        return state  # already keyed that way
    missing = [k for k in state["state"] if k not in to]
    if missing:
        raise PolicyError(f"the checkpoint's optimizer state names parameters this model lacks ({missing[:3]}); resume with the same model and --lora-r")
    groups = [{**g, "params": [to[k] for k in g["params"]]} for g in state["param_groups"]]
    return {"state": {to[k]: v for k, v in state["state"].items()}, "param_groups": groups}


def _sum_hook(state, bucket):  # type: ignore[no-untyped-def]  # DDP checks the annotations: none, or real ones
    """DDP comm hook: all-reduce SUM (DDP's default averages): the trainer's losses already carry the
    whole batch's normalisers, so the step's gradient is the sum of the ranks' parts."""
    fut = dist.all_reduce(bucket.buffer(), async_op=True).get_future()
    return fut.then(lambda f: f.value()[0])


class Replicated:
    """The policy replicated on every rank under DDP (or alone in a world of one): `loss(...)`,
    `backward(loss, sync)`, `finish()`, and the optimizer / weights as plain local state (the same on
    every rank).

    `exact` (the trainer's --deterministic) sums the passes' gradients in float64 and rounds once: each
    pass's fp32 gradient is folded into a float64 accumulator, the ranks' accumulators are all-reduced
    in float64 (the comm hook adds the last pass), and the parameter gets the sum rounded to fp32. A sum
    in float64 of a step's fp32 terms rounds to the same fp32 value in any order, so the update does not
    depend on how the groups were spread over ranks (fp32 sums would differ in the last bits, and AdamW
    turns last-bit differences of near-zero gradients into visible ones). It costs 8 bytes per trainable
    weight; without it gradients accumulate in fp32 and DDP sums them in fp32."""

    def __init__(self, policy: Any, world: World, exact: bool = False) -> None:
        self.policy, self.exact = policy, exact
        self.module = LossModule(policy)
        self.acc: dict[torch.nn.Parameter, torch.Tensor] = {}
        self.ddp: Any = None
        self.kind = "ddp" if world.multi else "none"
        if world.multi:
            from torch.nn.parallel import DistributedDataParallel

            dev = policy.device
            ids = [dev] if dev.type == "cuda" else None
            self.ddp = DistributedDataParallel(self.module, device_ids=ids, forward_sync_buffers=False)  # buffers: the same on every rank
            self.ddp.register_comm_hook(None, self._exact_hook if exact else _sum_hook)

    def _exact_hook(self, state, bucket):  # type: ignore[no-untyped-def]
        """All-reduce the bucket's float64 sums (earlier passes' accumulator + this pass) and round once."""
        buf = bucket.buffer()
        acc = [self.acc.get(p) for p in bucket.parameters()]
        parts = [a.flatten() if a is not None else torch.zeros(p.numel(), dtype=torch.float64, device=buf.device) for a, p in zip(acc, bucket.parameters())]
        total = torch.cat(parts) + buf.double()
        fut = dist.all_reduce(total, async_op=True).get_future()
        return fut.then(lambda f: f.value()[0].to(buf.dtype))

    def _fold(self) -> None:
        for p in self.module.parameters():
            if p.grad is not None:
                grad = p.grad.double()
                self.acc[p] = grad if p not in self.acc else self.acc[p].add_(grad)
                p.grad = None

    def backward(self, loss: torch.Tensor, sync: bool) -> None:
        """Backward of one pass; `sync`: the step's last pass (gradients are summed over ranks in it)."""
        loss.backward()
        if self.exact and not (sync and self.ddp is not None):
            self._fold()

    def finish(self) -> None:
        """After the step's passes: the gradients in p.grad (exact: the float64 sums, rounded once)."""
        if self.exact and self.ddp is None:
            for p, acc in self.acc.items():
                p.grad = acc.to(p.dtype)
        self.acc = {}

    def loss(self, *args: Any, **kwargs: Any) -> Any:
        return (self.ddp or self.module)(*args, **kwargs)

    def no_sync(self) -> contextlib.AbstractContextManager[Any]:
        return self.ddp.no_sync() if self.ddp is not None else contextlib.nullcontext()

    def run(self, fn: Callable[[], T]) -> T:
        """`fn()`, a use of the weights outside `loss` (rollouts, validation): here a plain call."""
        return fn()

    def clip_grad_norm(self, params: list[torch.nn.Parameter], max_norm: float) -> float:
        return float(torch.nn.utils.clip_grad_norm_(params, max_norm))

    def optimizer_state(self, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
        return optimizer.state_dict()

    def load_optimizer(self, optimizer: torch.optim.Optimizer, state: dict[str, Any]) -> None:
        optimizer.load_state_dict(optimizer_state_by("index", self.module, state))

    def weights_saver(self) -> Any:
        """What writes the weights into a checkpoint dir (called on rank 0 only)."""
        return self.policy.save


def wrap(policy: Any, world: World, *, fsdp: bool = False, exact: bool = False) -> Any:
    """The policy's training engine for this world: FSDP2-sharded with `fsdp` (several ranks), else
    replicated (`exact`: float64 gradient sums, see Replicated)."""
    if fsdp and world.multi:
        from policy.sharding import Sharded

        return Sharded(policy, world, exact)
    return Replicated(policy, world, exact)
