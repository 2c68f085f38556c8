"""Case `rollout`: online GRPO steps of the `tiny` policy, split into generation and update.

`build` writes a small plain-text prompts file into a temp folder, builds the tiny model there (hidden
H = `--hidden`, default 64; 2 layers, 4 heads, the 259-token byte vocabulary) and sets up the real
trainer, `policy.trainer.Trainer`, for `--online` training on it: G = 8 completions for each of P = 2
prompts per step, `--tokens` = max new tokens per completion (default 16), temperature 1, beta 0.04
(so the frozen reference's log-probs are part of the step, as in a default run) and one reward,
`letter_share` below (cheap, and varied enough that the advantages are not all zero). One timed `run`
is one `Trainer.run_step()`, the method `Trainer.run` loops over: sample the G x P completions with their
log-probs (`policy.rollout.sample_rollouts`, HF `generate`), score them, reference log-probs, then the
update (fused-linear loss forward + backward per group, clip, AdamW) and the metrics line. p20/p50/p80
are whole-step times; peak extra memory is one step's, in a fresh subprocess as for every case.

`extra` (the JSON row's `extra`, and the table printed under the main one) comes from the trainer's
own per-step record (`Hooks.on_step`) over every step the worker ran but the first (a warmup, which
pays one-off costs), totals over those steps:
  num_generations (G), prompts_per_step (P), max_new_tokens (T), steps (how many were summed),
  completion_len_mean   tokens per completion (eos may stop a sample before T),
  gen_tokens_per_s      completion tokens sampled / time in sample_rollouts (the trainer's rollout_s),
  update_tokens_per_s   completion tokens trained on / time in the update (train_s; the trainer's
                        train_tokens_per_s),
  rollout_pct, update_pct, other_pct   the step's wall time split three ways, summing to 100:
                        sample_rollouts; the update; the rest (decoding and scoring the samples,
                        encoding the groups, the reference's log-probs, the metrics line).
Providers: ours (the trainer's step as it is: generation with the KV cache) and naive (the same step
with generation re-running the whole sequence for every new token, `use_cache=False`); `time x naive`
compares whole steps, `gen_tokens_per_s` of the two rows compares generation alone. `--vocab` does not
apply (tiny's vocabulary is fixed) and neither does `--dtype` (the trainer's own precision: fp32
weights, bf16 autocast on CUDA). Not part of a bare `grpo bench`.
"""

from __future__ import annotations

import atexit
import copy
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.registry import Case, Size, register

NUM_GENERATIONS = 8  # G
PROMPTS_PER_STEP = 2  # P
HEADS = 4  # the tiny model's attention heads: --hidden must divide by it
PROMPTS = (
    "Write a haiku about the sea.",
    "Name three prime numbers.",
    "Say hello in French.",
    "What is 2 + 2?",
    "Describe a cat in one sentence.",
    "List the days of the week.",
    "Reverse the word 'bench'.",
    "Give a synonym for fast.",
)


def letter_share(prompts: list[str], completions: list[str], **_: object) -> list[float]:
    """Reward: the fraction of a completion's characters that are letters (0.0 for an empty one)."""
    return [sum(ch.isalpha() for ch in text) / len(text) if text else 0.0 for text in completions]


def _without_kv_cache(net: Any) -> None:
    """Make `net.generate` recompute the whole sequence at every new token (the naive sampler)."""
    generate = net.generate

    def generate_without_cache(*args: Any, generation_config: Any, **kwargs: Any) -> Any:
        config = copy.deepcopy(generation_config)
        config.use_cache = False
        return generate(*args, generation_config=config, **kwargs)

    net.generate = generate_without_cache


def build(size: Size, provider: str) -> dict[str, Any]:
    from policy.backends import tiny_path
    from policy.settings import Hooks, TrainSettings
    from policy.tiny import build_tiny
    from policy.trainer import Trainer

    if size.hidden % HEADS:
        raise ValueError(f"rollout: --hidden {size.hidden} must be a multiple of {HEADS} (the tiny model's heads)")
    tmp = Path(tempfile.mkdtemp(prefix="grpo-bench-rollout-"))
    atexit.register(shutil.rmtree, tmp, ignore_errors=True)
    prompts = tmp / "prompts.txt"
    prompts.write_text("\n".join(PROMPTS) + "\n", encoding="utf-8")
    out = tmp / "run"
    build_tiny(tiny_path(out), seed=0, hidden=size.hidden, heads=HEADS)  # load_policy("tiny") then loads it
    settings = TrainSettings(
        dataset=None, out=out, model="tiny", device=size.device, online=True, prompts=prompts,
        reward_fn=[f"{__name__}:letter_share"], num_generations=NUM_GENERATIONS,
        prompts_per_step=PROMPTS_PER_STEP, max_new_tokens=size.tokens, beta=0.04,
        steps=1_000_000, save_every=1_000_000,  # never the last step, never a checkpoint
    )  # fmt: skip
    records: list[dict[str, Any]] = []
    trainer = Trainer(settings, Hooks(on_step=records.append))
    trainer.setup()
    if provider == "naive":
        _without_kv_cache(trainer.policy.net)
    return {"trainer": trainer, "records": records, "step_s": [], "tokens": size.tokens}


def run(provider: str, inputs: dict[str, Any]) -> dict[str, Any]:
    start = time.perf_counter()
    inputs["trainer"].run_step()
    inputs["step_s"].append(time.perf_counter() - start)
    return {"step": inputs["trainer"].step}


def extra(inputs: dict[str, Any]) -> dict[str, Any]:
    """The trainer's records of every step but the first, summed (see the module docstring)."""
    pairs = list(zip(inputs["records"], inputs["step_s"]))
    pairs = pairs[1:] if len(pairs) > 1 else pairs
    rollout = sum(r["rollout_s"] for r, _ in pairs)
    update = sum(r["train_s"] for r, _ in pairs)
    wall = sum(s for _, s in pairs)
    generated = sum(r["completion_len_mean"] * NUM_GENERATIONS * PROMPTS_PER_STEP for r, _ in pairs)
    trained = sum(r["tokens"] for r, _ in pairs)
    rollout_pct, update_pct = 100 * rollout / wall, 100 * update / wall
    return {
        "num_generations": NUM_GENERATIONS, "prompts_per_step": PROMPTS_PER_STEP, "max_new_tokens": inputs["tokens"],
        "steps": len(pairs), "completion_len_mean": generated / (len(pairs) * NUM_GENERATIONS * PROMPTS_PER_STEP),
        "gen_tokens_per_s": generated / rollout, "update_tokens_per_s": trained / update,
        "rollout_pct": rollout_pct, "update_pct": update_pct, "other_pct": 100 - rollout_pct - update_pct,
    }  # fmt: skip


register(
    Case(
        name="rollout",
        summary="online GRPO steps of the tiny policy: generation and update tokens/s, rollout vs update time",
        providers=("ours", "naive"),
        tokens=(16,),
        vocabs=(None,),
        hidden=64,
        build=build,
        run=run,
        extra=extra,
        default=False,
        order=55,
    )
)
