"""The online data source: each step samples fresh groups from the current policy and scores them.

`OnlineSource.next_step()` draws `prompts_per_step` prompts in the deterministic order of policy.sampler
(resumable from its position), samples `num_generations` completions each (policy.rollout, with their
sampling log-probs as the old log-probs), adds up to `mix_logged` logged candidates of the prompt's group
(their old log-probs from a forward pass of the same policy), scores every completion with the reward
functions (policy.rewards; a judge is one of them) and, when the loss has a KL term, computes the frozen
reference's log-probs of the new tokens. `--mask-truncated` drops completions that hit the token limit
from the loss. It returns the step's groups and the rollout metrics: `reward_mean`/`reward_std` of the
sampled completions (the policy's own reward), `reward/<fn>_mean`/`_std`, `completion_len_mean`/`_max`
(tokens), `frac_truncated`, `rollout_s`, `gen_tokens_per_s`.
"""

from __future__ import annotations

import math
import time
from typing import Any

import torch

from policy import distributed as dist
from policy.backends import StepGroup
from policy.prompts import PromptSet
from policy.errors import RewardError
from policy.rewards import RewardFn, score
from policy.rollout import GenerationSettings, sample_rollouts
from policy.sampler import Sampler
from policy.settings import TrainSettings


def _mean_std(values: list[float]) -> tuple[float | None, float | None]:
    if not values:
        return None, None
    t = torch.tensor(values, dtype=torch.float64)
    return float(t.mean()), float(t.std(correction=0))


class OnlineSource:
    def __init__(self, s: TrainSettings, policy: Any, prompts: PromptSet, reward_fns: list[RewardFn], position: int = 0) -> None:
        self.s, self.policy, self.prompts, self.fns = s, policy, prompts, reward_fns
        self.sampler = Sampler(len(prompts), s.seed, [True] * len(prompts), position)
        self.gen = GenerationSettings(s.num_generations, s.max_new_tokens, s.temperature, s.top_p, s.top_k)
        self.need_ref = s.beta > 0 or bool(s.kl_target)

    @property
    def position(self) -> int:
        return self.sampler.position

    def next_step(self, world: dist.World | None = None) -> tuple[list[StepGroup], dict[str, Any]]:
        """This rank's groups (its share of the step's prompts, policy.distributed.shard) and the step's
        rollout metrics over every rank's samples."""
        s, policy, world = self.s, self.policy, world or dist.World()
        idxs, _ = self.sampler.next_batch(s.prompts_per_step)  # the whole step's, on every rank
        idxs = dist.shard(idxs, world)
        rows = [self.prompts.rows[i] for i in idxs]
        t0 = time.perf_counter()
        rollouts = sample_rollouts(policy, [policy.prompt_ids(r.prompt) for r in rows], self.gen)
        rollout_s = time.perf_counter() - t0
        decode = lambda ids: policy.tokenizer.decode(ids, skip_special_tokens=True)  # noqa: E731
        flat: dict[str, list[Any]] = {"prompts": [], "texts": [], "ids": [], "row": [], "sampled": []}
        for k, (row, ro) in enumerate(zip(rows, rollouts)):
            logged = list(row.logged[: s.mix_logged])
            flat["texts"] += [decode(c) for c in ro.completions] + logged
            flat["ids"] += ro.completions + [policy.completion_ids(t) for t in logged]
            n = len(ro.completions) + len(logged)
            flat["prompts"] += [row.prompt] * n
            flat["row"] += [k] * n
            flat["sampled"] += [True] * len(ro.completions) + [False] * len(logged)
        keys = sorted({key for r in rows for key in r.columns})
        columns = {key: [rows[k].columns.get(key) for k in flat["row"]] for key in keys}
        error: RewardError | None = None
        try:
            scored = score(self.fns, flat["prompts"], flat["texts"], completion_ids=flat["ids"], columns=columns, weights=s.reward_weights)
        except RewardError as exc:
            if not world.multi:
                raise
            error = exc
        errors = [e for e in dist.gather(None if error is None else str(error), world) if e is not None]
        if errors:  # a reward function failed on some rank: every rank stops here, the same way
            raise RewardError(errors[0])
        groups, start = [], 0
        for k, (i, row, ro) in enumerate(zip(idxs, rows, rollouts)):
            n = len(ro.completions) + min(len(row.logged), s.mix_logged)
            span = slice(start, start + n)
            groups.append(self._group(i, row, ro, flat["ids"][span], flat["texts"][span], range(start, start + n), scored))
            start += n
        sampled = [j for j, is_sampled in enumerate(flat["sampled"]) if is_sampled]
        raw = {
            "reward": [scored.total[j] for j in sampled], "length": [len(c) for ro in rollouts for c in ro.completions],
            "truncated": [t for ro in rollouts for t in ro.truncated], "rollout_s": [rollout_s],
            **{f"reward/{fn.name}": [scored.per_fn[fn.name][j] for j in sampled] for fn in self.fns},
        }  # fmt: skip
        every = dist.gather(raw, world)  # the step's samples over all ranks
        return groups, self._metrics({key: [v for part in every for v in part[key]] for key in raw})

    def _metrics(self, raw: dict[str, list[Any]]) -> dict[str, Any]:
        lengths, truncated, rollout_s = raw["length"], raw["truncated"], max(raw["rollout_s"])  # ranks sample at once
        mean, std = _mean_std(raw["reward"])
        metrics: dict[str, Any] = {
            "reward_mean": mean, "reward_std": std, "completion_len_mean": sum(lengths) / len(lengths),
            "completion_len_max": max(lengths), "frac_truncated": sum(truncated) / len(truncated),
            "rollout_s": rollout_s, "gen_tokens_per_s": sum(lengths) / max(rollout_s, 1e-9),
        }  # fmt: skip
        for fn in self.fns:
            vals = [v for v in raw[f"reward/{fn.name}"] if v is not None and math.isfinite(v)]
            metrics[f"reward/{fn.name}_mean"], metrics[f"reward/{fn.name}_std"] = _mean_std(vals)
        return metrics

    def _group(self, index: int, row: Any, ro: Any, ids: list[list[int]], texts: list[str], span: range, scored: Any) -> StepGroup:
        """One StepGroup from a prompt's samples (+ logged candidates): `ids`/`texts` are its slice of the step's
        flat lists (encoded and decoded once, in next_step), `span` its indices into the scores."""
        s, policy = self.s, self.policy
        g = len(ro.completions)
        enc = policy.encode_ids(ro.prompt_ids, ids)
        t = enc.ids.shape[1]
        old = torch.zeros(len(ids), t)  # (G', T)
        old[:g, : ro.old_logp.shape[1]] = ro.old_logp
        if len(ids) > g:  # logged candidates: old log-probs from a forward pass of the same policy
            old[g:] = policy.logprobs(enc, s.temperature)[g:].cpu()
        if s.mask_truncated:
            for i, cut in enumerate(ro.truncated):
                if cut:
                    enc.mask[i] = 0.0
        ref = policy.reference_logprobs(enc, s.temperature) if self.need_ref else None
        samples = [
            {"prompt": row.prompt, "completion": texts[n], "rewards": {fn.name: scored.per_fn[fn.name][j] for fn in self.fns},
             "reward": scored.total[j], "truncated": bool(n < g and ro.truncated[n]), "logged": n >= g}
            for n, j in enumerate(span)
        ]  # fmt: skip
        where = f"prompt {index} ({self.prompts.path}:{row.line})"
        return StepGroup(index, where, enc, [scored.total[j] for j in span], old.to(policy.device), ref, samples=samples)
