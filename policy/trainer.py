"""The GRPO training loop: `train(settings, hooks) -> summary`.

Per step (see policy.settings for what a step is): get the step's groups from the data source, either
logged groups drawn in the deterministic order of policy.sampler (offline; zero-variance groups dropped
and counted) or groups sampled from the current policy and scored (online, policy.online); compute
group-relative advantages
(policy.advantages), then for each of `num_iterations` updates: one forward + backward per group
through the backend's kernels loss (normalised over the whole step, so the group losses sum to the
step loss; bnpo, as TRL, per micro-batch of `groups_per_step` groups, see `_normalizers`), clip the gradient norm, AdamW step. A step whose loss or gradient norm is not finite is
skipped (no update), counted in `nan_skips`, and its group ids logged; `max_nan_skips` such steps in a
row raise TrainingDiverged (after a checkpoint of the last good weights). Every `log_every` steps a record goes to `<out>/metrics.jsonl` (and to the
`report_to` tracker, policy.tracking), every
`save_every` steps and at the end a checkpoint to `<out>/checkpoints/`; `<out>/manifest.json`
describes the run.

Resume (`settings.resume`): the newest intact checkpoint restores weights, optimizer, KL controller,
RNG states, data position (kept when the dataset fingerprint matches, else restarted at 0) and step;
metrics.jsonl is cut back to that step; then `steps` MORE steps run. Reference log-probs come from the
base weights, computed before any checkpoint is restored (policy.reference).

Online, a reward function that fails stops the run with a checkpoint of the last completed step and a
RewardError naming the function and the sample; every `log_samples` steps the step's samples go to
`<out>/samples.jsonl` (policy.samples, bounded).

The whole run holds an exclusive lock on `<out>/.lock` (policy.runlock): a second trainer on the same
out dir fails with RunLocked naming the holder's pid.

Test hooks: with env GRPO_TEST_KILL_AFTER_SAVE=N the process SIGKILLs itself right after writing the
step-N checkpoint (the exact-resume test uses it to die at a known point); GRPO_TEST_NAN_ON_RANK=R:S
makes rank R's losses NaN from step S on.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import random
import signal
import time
from pathlib import Path
from typing import Any

import torch

from policy import checkpoint as ckpt
from policy import distributed as dist
from policy.advantages import group_advantages, has_variance
from policy.backends import Encoded, LossOptions, Policy, StepGroup, default_lr, load_policy, resolve_device, tiny_path
from policy.data import Dataset, Group, load_dataset, split_holdout
from policy.errors import PolicyError, RewardError, SettingsError, TrainingDiverged
from policy.evaluate import expected_reward, pairwise_accuracy
from policy.manifest import build_manifest, write_manifest
from policy.metrics import MetricsWriter, truncate_after
from policy.online import OnlineSource
from policy.prompting import PromptFormat
from policy.prompts import PromptSet, load_prompts, prompts_from_groups
from policy.reference import ReferenceCache
from policy.reproducibility import deterministic_mode, rng_state, set_rng_state
from policy.runlock import RunLock
from policy.samples import SamplesWriter
from policy.sampler import Sampler
from policy.schedules import KLController, lr_factor
from policy.settings import Hooks, TrainSettings
from policy.tracking import open_tracker

log = logging.getLogger("policy")
KILL_ENV = "GRPO_TEST_KILL_AFTER_SAVE"
NAN_ENV = "GRPO_TEST_NAN_ON_RANK"  # "R:S": rank R's losses are NaN from step S on (the divergence tests)


def check_settings(s: TrainSettings) -> None:
    """SettingsError for combinations the trainer cannot honour."""
    if s.lr_step is not None and s.cosine:
        raise SettingsError("--lr-step and --cosine are two LR schedules; choose one")
    if s.kl_adaptive and s.beta == 0 and not s.kl_target:
        raise SettingsError("--kl-adaptive needs a KL coefficient to adapt: set --beta or --kl-target above 0")
    if s.loss_type == "cispo" and s.eps_high < 1:
        raise SettingsError(f"--loss-type cispo caps the importance weight at --eps-high itself (as TRL); {s.eps_high} would cap it below 1: set --eps-high, e.g. 5")
    if s.steps < 1 or s.groups_per_step < 1 or s.grad_accum < 1 or s.num_iterations < 1:
        raise SettingsError("steps, groups_per_step, grad_accum and num_iterations must be >= 1")
    if s.online:
        if s.prompts is None and s.dataset is None:
            raise SettingsError("--online needs prompts: --prompts FILE (JSONL or text), or --dataset GROUPS.jsonl")
        if not s.reward_fn and s.judge is None:
            raise SettingsError("--online needs a reward: --reward-fn SPEC (repeatable) and/or --judge DIR")
        if s.model == "bow":
            raise SettingsError("--online samples completions: use a generative --model (tiny, or an HF checkpoint dir), not bow")
        if s.num_generations < 2:
            raise SettingsError("--num-generations must be >= 2: advantages compare completions of the same prompt")
    elif s.dataset is None:
        raise SettingsError("no dataset: pass --dataset FILE (or --online with --prompts FILE)")
    world = dist.World.from_env()
    batch, what = (s.prompts_per_step, "--prompts-per-step") if s.online else (s.groups_per_step * s.grad_accum, "--groups-per-step x --grad-accum")
    if batch < world.size:
        raise SettingsError(f"{what} = {batch} groups per step cannot feed {world.size} processes (a group is never split): raise it to at least {world.size}")
    if s.fsdp and batch % world.size:
        raise SettingsError(f"--fsdp needs {what} ({batch}) divisible by the {world.size} processes: every rank runs the same passes")


def _masked_sums(parts: list[tuple[torch.Tensor, torch.Tensor]]) -> list[float]:
    """[sum of v * mask, sum of mask] over (v, mask) pairs: a masked mean's two halves, summable over ranks."""
    num = sum(float((v.float() * m.to(v.device)).sum()) for v, m in parts if v is not None)  # None: GRPOStats.kl without ref_logp
    return [num, sum(float(m.sum()) for _, m in parts)]


class Trainer:
    def __init__(self, settings: TrainSettings, hooks: Hooks | None = None) -> None:
        check_settings(settings)
        self.s, self.hooks = settings, hooks or Hooks()
        self.world = dist.World.from_env()  # rank 0 writes metrics, manifest and checkpoints
        self.device = dist.rank_device(settings.device, self.world)
        rank, _, step = os.environ.get(NAN_ENV, "").partition(":")
        self._nan_from = int(step) if step and int(rank) == self.world.rank else None
        self.out = Path(settings.out)
        self.ckpt_root = self.out / "checkpoints"
        self.metrics = MetricsWriter(self.out / "metrics.jsonl")
        report_to = settings.report_to if self.world.main else "none"
        self.tracker = open_tracker(report_to, self.out, settings.to_json())  # fails here when not installed
        self.opts = LossOptions(
            settings.loss_type, settings.eps_low, settings.eps_high, settings.delta, settings.ratio_level, settings.temperature,
            settings.is_level, settings.is_mode, settings.is_cap, settings.top_entropy_quantile,
        )  # fmt: skip
        self.kl = KLController(settings.beta, settings.kl_warmup, settings.kl_target, settings.kl_adaptive, settings.kl_adaptive_target, settings.kl_horizon)
        self.step = self.nan_skips = self.consecutive = self.filtered_total = 0
        self.last_val: float | None = None
        self.last_expected: float | None = None
        self.val_start: dict[str, float | None] = {}
        self.reward_history: list[float | None] = []
        self._enc: dict[tuple[str, int], Encoded] = {}
        self._behavior: dict[int, tuple[torch.Tensor | None, torch.Tensor]] = {}  # gid -> (behavior_logp | None, usable (G,))

    # -- setup --------------------------------------------------------------------------------------

    def _load_data(self, path: Path) -> Dataset:
        s = self.s
        return load_dataset(
            path, skip_bad_lines=s.skip_bad_lines, max_prompt_chars=s.max_prompt_chars,
            truncate_prompts=s.truncate_prompts, blocklist=s.blocklist, reward_weights=s.reward_weights,
        )  # fmt: skip

    def encode(self, g: Group, split: str = "train") -> Encoded:
        key = (split, g.gid)
        if key not in self._enc:
            self._enc[key] = self.policy.encode(g.prompt, [c.text for c in g.candidates])
        return self._enc[key]

    def setup(self) -> None:
        """Load data, policy, reference and optimizer (and the checkpoint, with resume); `run` calls it first."""
        s, world = self.s, self.world
        random.seed(s.seed)
        torch.manual_seed(s.seed)
        dist.init(world, resolve_device(self.device), s.dist_timeout)
        if not s.resume:
            self._check_fresh()
        self.val = self._load_data(s.val_dataset) if s.val_dataset else None
        if s.model == "tiny" and world.main and not tiny_path(self.out).exists():
            from policy.tiny import build_tiny

            build_tiny(tiny_path(self.out).absolute(), seed=s.seed)  # built once, by rank 0
        dist.barrier(world)
        self.policy: Policy = load_policy(
            s.model, out=self.out, device=self.device, lora_r=s.lora_r, lora_alpha=s.lora_alpha,
            gradient_checkpointing=s.gradient_checkpointing, max_completion_tokens=s.max_completion_tokens,
            bow_buckets=s.bow_buckets, seed=s.seed,
        )  # fmt: skip
        if self.policy.kind == "hf":
            fmt = PromptFormat(s.chat_template, s.system_prompt, s.max_prompt_tokens)
            self.policy.set_format(fmt, mask_truncated=s.mask_truncated)  # type: ignore[attr-defined]
        self.online = self._online_source() if s.online else None
        if self.online is None:
            self.data: Dataset | PromptSet = self._load_data(s.dataset)
            if s.val_split and self.val is None:  # a held-out split of the groups, by prompt
                self.data, self.val = split_holdout(self.data, s.val_split)
            eligible = [has_variance(g.rewards, s.reward_clip) for g in self.data.groups]
            self.has_behavior = any(c.behavior is not None for g in self.data.groups for c in g.candidates)
            self.refs = ReferenceCache()
            if s.beta > 0 or (s.kl_target or 0) > 0:  # reference = the weights as loaded, before any resume
                self.refs.fill(self.policy, self.encode, [g for g, ok in zip(self.data.groups, eligible) if ok], s.temperature)
        if self.data.bad_lines:
            log.warning("%s: skipped %d bad lines", self.data.path, self.data.bad_lines)
        found = self._resume_weights() if s.resume else None
        if s.deterministic and hasattr(self.policy, "share_prompt"):
            # one decoder call per candidate, as FSDP2 needs: the shared prompt forward rounds differently, and
            # --deterministic promises the same weights whatever the number of processes and the engine
            self.policy.share_prompt = False
        self.engine = dist.wrap(self.policy, world, fsdp=s.fsdp, exact=s.deterministic)  # DDP / FSDP2 over the ranks; the plain policy alone
        self.params = self.policy.trainable_parameters()
        self.lr = s.lr if s.lr is not None else default_lr(self.policy.kind)  # unset: the backend's default
        self.optimizer = torch.optim.AdamW(self.params, lr=self.lr, weight_decay=s.weight_decay)
        position = self._resume_state(*found) if found else 0
        if self.online is not None:
            self.online.sampler.position = position
            if world.multi:  # each rank samples its own prompts from its own stream
                torch.manual_seed(s.seed * 1_000_003 + self.step * 1009 + world.rank)
        else:
            try:
                self.sampler = Sampler(len(self.data), s.seed, eligible, position)
            except ValueError as exc:
                raise PolicyError(f"{s.dataset}: {exc}") from exc
        self.start_step, self.target_step = self.step, self.step + s.steps

    def _online_source(self) -> OnlineSource:
        """Prompts, reward functions (+ judge) and a frozen reference for online training."""
        s = self.s
        from policy.rewards import RewardFn, RewardOptions, load_reward_fns

        self.data = prompts_from_groups(self._load_data(s.dataset)) if s.prompts is None else load_prompts(s.prompts)
        options = RewardOptions(
            format_regex=s.format_regex, max_new_tokens=s.max_new_tokens, overlong_buffer=s.overlong_buffer,
            exec_timeout_s=s.exec_timeout, exec_memory_mb=s.exec_memory_mb,
        )  # fmt: skip
        fns = load_reward_fns(list(s.reward_fn), options)
        if s.judge is not None:
            from policy.judge import load_judge

            fns.append(RewardFn(name="judge", fn=load_judge(s.judge, device=s.judge_device), spec=str(s.judge)))
        if s.beta > 0 or (s.kl_target or 0) > 0:
            self.policy.freeze_reference()  # the weights as loaded, before any resume
        self.samples = SamplesWriter(self.out / "samples.jsonl")
        return OnlineSource(s, self.policy, self.data, fns)

    def _check_fresh(self) -> None:
        if ckpt.list_checkpoints(self.ckpt_root) or (self.metrics.path.exists() and self.metrics.path.stat().st_size):
            raise SettingsError(f"{self.out} already holds a training run; pass --resume to continue it, or --out DIR for a new one")

    def _resume_weights(self) -> tuple[Path, dict[str, Any]] | None:
        """Load the newest intact checkpoint's weights (before the policy is wrapped); None when there is none."""
        found = ckpt.latest_valid(self.ckpt_root)
        if found is None:
            log.info("no checkpoint under %s: starting at step 0", self.ckpt_root)
            if self.metrics.path.exists() and self.world.main:
                truncate_after(self.metrics.path, 0)
            return None
        self.policy.load_weights(found[0])
        return found

    def _resume_state(self, path: Path, meta: dict[str, Any]) -> int:
        """Optimizer, KL controller, RNG, step and data position of checkpoint `path`: the data position."""
        state = ckpt.load_state(path)
        self.engine.load_optimizer(self.optimizer, state["optimizer"])
        self.kl.load_state_dict(state["kl_controller"])
        set_rng_state(state["rng"])
        self.step, self.nan_skips = int(state["step"]), int(state["nan_skips"])
        self.val_start = dict(state.get("val_start") or {})  # the run's untrained baseline, kept across resumes
        dropped = truncate_after(self.metrics.path, self.step) if self.world.main else 0
        log.info("resumed from %s (step %d%s)", path, self.step, f"; dropped {dropped} later metrics lines" if dropped else "")
        if state["data"]["fingerprint"] != self.data.fingerprint:
            what = "prompts" if self.online is not None else "dataset"
            log.info("%s changed since %s: data order restarts at position 0", what, path.name)
            return 0
        return int(state["data"]["position"])

    # -- one step -----------------------------------------------------------------------------------

    def _normalizer(self, sizes: list[tuple[int, int]]) -> float:
        """The step's loss normaliser from each group's (candidates, completion tokens)."""
        if self.s.loss_type == "grpo":
            return float(sum(g for g, _ in sizes))
        if self.s.loss_type == "dr_grpo":
            return float(sum(g for g, _ in sizes) * self.policy.max_tokens)
        return float(max(1, sum(t for _, t in sizes)))

    def _normalizers(self, sizes: list[tuple[int, int]]) -> list[float]:
        """One loss normaliser per group of the step, from every group's (candidates, tokens). bnpo follows
        TRL: each micro-batch (offline `groups_per_step` groups, `grad_accum` of them per step; online the
        whole step) is normalised by its OWN token count and divided by the number of micro-batches, i.e.
        the step loss is (1/A) * sum_m S_m / N_m (TRL: `sum / mask.sum() / current_gradient_accumulation_steps`).
        With one micro-batch that equals dapo; with several it differs (dapo divides by the step's tokens).
        Every other loss type uses one normaliser for the whole step (`_normalizer`)."""
        if self.s.loss_type != "bnpo":
            return [self._normalizer(sizes)] * len(sizes)
        size = self.s.groups_per_step if self.online is None else len(sizes)
        chunks = [sizes[i : i + size] for i in range(0, len(sizes), size)]  # the micro-batches
        return [float(max(1, sum(t for _, t in mb))) * len(chunks) for mb in chunks for _ in mb]

    def _offline_group(self, g: Group) -> StepGroup:
        ref = self.refs.get(g.gid, self.policy.device) if g.gid in self.refs else None
        enc = self.encode(g)
        behavior, old = self._behavior_logp(g, enc)
        return StepGroup(g.gid, f"{g.gid} ({self.s.dataset}:{g.line})", enc, g.rewards, old, ref, behavior_logp=behavior)

    def _behavior_logp(self, g: Group, enc: Encoded) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """(behavior_logp (G, T), old_logp (G, T)) of a logged group, or (None, None) when no candidate has
        usable behaviour log-probs. A candidate's are usable when its logged token ids equal its encoded
        completion ids; the other rows get the old log-probs (computed here, before the update), i.e. weight 1.
        Counts per group (used, missing) are kept for the step's `behavior_used` / `behavior_missing` metrics."""
        if self.policy.kind != "hf" or not self.has_behavior:  # bow has no tokens: nothing to correct or count
            return None, None
        if g.gid not in self._behavior:
            g_, t = enc.ids.shape
            behavior = torch.zeros(g_, t)  # (G, T)
            usable = []
            for i, c in enumerate(g.candidates):
                ok = c.behavior is not None and list(c.behavior[0]) == self.policy.completion_ids(c.text)
                if ok:
                    behavior[i, : len(c.behavior[1])] = torch.tensor(c.behavior[1])
                usable.append(ok)
            self._behavior[g.gid] = (behavior if any(usable) else None, torch.tensor(usable))
        behavior, usable = self._behavior[g.gid]
        if behavior is None and self.engine.kind != "fsdp":  # FSDP2: every rank makes the same forward calls,
            return None, None  # so there every group of a dataset with behaviour log-probs takes the extra pass
        old = self.policy.logprobs(enc, self.s.temperature).float()  # (G, T) before this step's update
        if behavior is None:
            return None, None
        behavior = torch.where(usable[:, None].to(old.device), behavior.to(old.device), old)  # rows without usable ones: weight exp(0) = 1
        return behavior, old

    def _passes(self, batch: list[StepGroup]) -> list[tuple[int, slice, Encoded]]:
        """This rank's forward/backward passes: (group, rows, micro-batch) in micro-batches of
        `micro_batch_size` candidates (hf; bow is listwise)."""
        return [(i, rows, sub) for i, b in enumerate(batch) for rows, sub in self.policy.split(b.enc, self.s.micro_batch_size)]

    def _backward(
        self, batch: list[StepGroup], old: list[torch.Tensor | None], advs: list[torch.Tensor], coef: float, norms: list[float],
    ) -> tuple[float, list[tuple[Any, torch.Tensor]], list[int], dict[int, list[torch.Tensor]]]:  # fmt: skip
        """Loss + backward of this rank's groups: (the summed loss of the finite passes, [(stats, mask)] per
        pass, the indices of groups with a non-finite loss, {group: [logp (rows, T)] per pass}). Every rank runs
        the same number of passes (policy.distributed); only the last one syncs gradients."""
        passes = self._passes(batch)
        n = dist.max_int(len(passes), self.world)
        total, parts, bad, logps = 0.0, [], [], {}
        for j in range(n):
            i, rows, sub = passes[min(j, len(passes) - 1)]
            b = batch[i]
            ref = None if b.ref_logp is None else b.ref_logp[rows]
            behavior = None if b.behavior_logp is None else b.behavior_logp[rows]
            with self.engine.no_sync() if j < n - 1 else contextlib.nullcontext():
                loss, st = self.engine.loss(sub, None if old[i] is None else old[i][rows], ref, advs[i][rows], beta=coef, normalizer=norms[i], opts=self.opts, behavior_logp=behavior)
                if self.hooks.loss_hook is not None:
                    loss = self.hooks.loss_hook(self.step + 1, b.index, loss)
                if self._nan_from is not None and self.step + 1 >= self._nan_from:
                    loss = loss * float("nan")
                if j >= len(passes):  # a padding pass: this rank ran out of passes before the others
                    loss = loss * 0.0
                elif not torch.isfinite(loss):
                    bad.append(i)
                elif i not in bad:
                    total += float(loss.detach())
                    parts.append((st, sub.mask))
                    logps.setdefault(i, []).append(st.logp)
                if torch.isfinite(loss) or self.world.multi:  # several ranks: every pass runs (the step is skipped anyway)
                    self.engine.backward(loss, sync=j == n - 1)
        self.engine.finish()
        return total, parts, sorted(set(bad)), logps

    def _train_step(self, batch: list[StepGroup]) -> tuple[dict[str, Any], list[torch.Tensor]]:
        """One update (x num_iterations) on this rank's groups `batch`, with advantages and normalisers of the
        whole step's groups (every rank's, in global order), so the result does not depend on the world size."""
        s, k, world = self.s, self.step, self.world  # k: 0-based index of this update
        lr = self.lr * lr_factor(k, warmup_steps=s.warmup_steps, lr_step=s.lr_step, lr_gamma=s.lr_gamma, cosine=s.cosine, total_steps=self.target_step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        coef = self.kl.coef(k)
        info = dist.unshard(dist.gather([(b.rewards, int(b.enc.ids.shape[0]), b.enc.tokens, b.where) for b in batch], world))
        mine = list(range(world.rank, len(info), world.size))  # this rank's groups in the step's order
        advs_all = group_advantages([r for r, *_ in info], baseline=s.adv_baseline, scale_rewards=s.scale_rewards, adv_clip=s.adv_clip, reward_clip=s.reward_clip, adv_std=s.adv_std)
        norms_all = self._normalizers([(g, t) for _, g, t, _ in info])  # one per group (bnpo: per micro-batch)
        advs, norms = [advs_all[i] for i in mine], [norms_all[i] for i in mine]
        old: list[torch.Tensor | None] = [b.old_logp for b in batch]
        bad: list[str] = []
        grad_norm: float | None = None
        loss_local = 0.0
        for it in range(s.num_iterations):
            self.optimizer.zero_grad(set_to_none=True)
            loss_local, stats, bad_local, logps = self._backward(batch, old, advs, coef, norms)
            if dist.any_true(bool(bad_local), world):
                bad = dist.unshard(dist.gather([batch[i].where if i in bad_local else None for i in range(len(batch))], world))
                bad = [w for w in bad if w is not None]
            else:
                grad_norm = float(self.engine.clip_grad_norm(self.params, s.max_grad_norm))
                if not math.isfinite(grad_norm):
                    bad = [w for *_, w in info]
            if bad:
                self.optimizer.zero_grad(set_to_none=True)
                break
            self.optimizer.step()
            if it == 0 and s.num_iterations > 1:
                old = [torch.cat(logps[i]) if old[i] is None else old[i] for i in range(len(batch))]
        adv_all = torch.cat(advs_all)
        rewards = torch.tensor([r for rs, *_ in info for r in rs], dtype=torch.float64)
        rec: dict[str, Any] = {
            "loss": None, "lr": lr, "kl_coef": coef, "grad_norm": grad_norm,
            "adv_mean": float(adv_all.mean()), "adv_std": float(adv_all.std(correction=0)),
            "reward_mean": float(rewards.mean()), "reward_std": float(rewards.std(correction=0)),
            "groups": len(info), "tokens": sum(t for _, _, t, _ in info) * s.num_iterations, "world_size": world.size,
        }  # fmt: skip
        if not bad:
            keys = [("kl", "kl"), ("clip_frac_low", "clipped_low"), ("clip_frac_high", "clipped_high"), ("ratio_mean", "ratio")]
            if all(st.entropy is not None for st, _ in stats):
                keys.append(("entropy", "entropy"))
            sums = [loss_local] + [x for _, attr in keys for x in _masked_sums([(getattr(st, attr), m) for st, m in stats])]
            sums = dist.sum_floats(sums, world)
            rec["loss"] = sums[0]
            for n, (key, _) in enumerate(keys):
                num, den = sums[1 + 2 * n : 3 + 2 * n]
                rec[key] = num / den if den else None
            if all(b.ref_logp is None for b in batch):  # no reference (beta 0): no KL estimate, null
                rec["kl"] = None
        if self.online is None and self.policy.kind == "hf" and self.has_behavior:  # candidates with / without usable behaviour log-probs
            usable = [self._behavior[b.index][1] for b in batch if b.index in self._behavior]
            used = float(sum(int(u.sum()) for u in usable))
            used, missing = dist.sum_floats([used, float(sum(u.numel() for u in usable)) - used], world)
            rec["behavior_used"], rec["behavior_missing"] = int(used), int(missing)
        rec["bad_groups"] = bad
        return rec, advs

    # -- the loop -----------------------------------------------------------------------------------

    def _meta(self, rec: dict[str, Any] | None) -> dict[str, Any]:
        return {
            "config": self.s.to_json(), "dataset_fingerprint": self.data.fingerprint,
            "metrics": rec, "policy": self.policy.describe(), "created": time.time(),
        }  # fmt: skip

    def _save(self, rec: dict[str, Any] | None) -> Path | None:
        """Rank 0 writes the checkpoint (every rank takes part: FSDP2 gathers the full weights and optimizer
        state, so a checkpoint does not depend on the world size); other ranks return None."""
        optimizer, save_weights = self.engine.optimizer_state(self.optimizer), self.engine.weights_saver()
        if not self.world.main:
            return None
        state = {
            "step": self.step, "optimizer": optimizer, "kl_controller": self.kl.state_dict(),
            "rng": rng_state(), "data": {"position": self._position(), "fingerprint": self.data.fingerprint},
            "nan_skips": self.nan_skips, "target_step": self.target_step, "val_start": self.val_start,
        }  # fmt: skip
        path = ckpt.save_checkpoint(self.ckpt_root, self.step, save_weights=save_weights, state=state, meta=self._meta(rec), keep=self.s.keep_checkpoints)
        if os.environ.get(KILL_ENV) == str(self.step):
            os.kill(os.getpid(), signal.SIGKILL)
        return path

    def _position(self) -> int:
        return self.online.position if self.online is not None else self.sampler.position

    def _validate(self) -> dict[str, float | None]:
        """Held-out quality: pairwise accuracy and the reward the policy expects (policy.evaluate)."""
        assert self.val is not None
        encode = lambda g: self.encode(g, "val")  # noqa: E731
        def measure() -> dict[str, float | None]:
            acc, _ = pairwise_accuracy(self.policy, self.val.groups, encode)
            return {"val_pairwise_acc": acc, "policy_expected_reward": expected_reward(self.policy, self.val.groups, encode)}

        return self.engine.run(measure)  # on every rank (FSDP2: the forward passes are collective)

    def _start(self) -> None:
        """Guard seam, manifest, on_start: right before the first step."""
        main = self.world.main
        if self.hooks.before_train is not None and main:
            self.hooks.before_train()
        fingerprints = {"train": self.data.fingerprint} | ({"val": self.val.fingerprint} if self.val else {})
        extra = {"policy": self.policy.describe(), "start_step": self.start_step, "kernels_backend": _backend(), "lr": self.lr,
                 "world_size": self.world.size, "parallel": self.engine.kind}  # fmt: skip
        if main:
            write_manifest(self.out / "manifest.json", build_manifest(self.s.to_json(), fingerprints, extra))
        if self.val is not None and self.step == 0:  # the untrained policy's held-out quality, the baseline
            self.val_start = {f"{k}_start": v for k, v in self._validate().items()}
        if self.hooks.on_start is not None and main:
            self.hooks.on_start({"start_step": self.start_step, "target_step": self.target_step, "groups": len(self.data), "model": self.policy.describe()})

    def run_step(self) -> tuple[dict[str, Any] | None, bool]:
        """One step (after `setup`), logged and guarded: (the record written or None, whether a stop was asked)."""
        s, t0 = self.s, time.perf_counter()
        if self.online is not None:
            batch, extra = self.engine.run(lambda: self.online.next_step(self.world))  # RewardError on every rank when one fails
            dropped = 0
        else:
            idxs, dropped = self.sampler.next_batch(s.groups_per_step * s.grad_accum)  # the whole step's, on every rank
            groups = [self.data.groups[i] for i in idxs]
            mine = dist.shard(groups, self.world)
            batch, extra = self.engine.run(lambda: [self._offline_group(g) for g in mine]), _axis_means(groups)
        t1 = time.perf_counter()
        values, advs = self._train_step(batch)
        values.update(extra)
        values["train_s"] = time.perf_counter() - t1
        values["train_tokens_per_s"] = values["tokens"] / max(values["train_s"], 1e-9)
        self.step += 1
        self.filtered_total += dropped
        self.reward_history.append(values.get("reward_mean"))
        bad = values.pop("bad_groups")
        where = ", ".join(bad)
        if bad:
            self.nan_skips += 1
            self.consecutive += 1
            log.warning("step %d: non-finite loss or gradient; step skipped (groups %s)", self.step, where)
        else:
            self.consecutive = 0
            self.kl.update(values.get("kl"))
        if self.online is not None and s.log_samples and self.step % s.log_samples == 0:
            parts = dist.gather([(b.samples, a.tolist()) for b, a in zip(batch, advs)], self.world)
            if self.world.main:
                self.samples.write(self.step, dist.unshard(parts))
        values.update(step=self.step, timestamp=time.time(), groups_filtered=dropped, nan_skips=self.nan_skips)
        if self.step == 1:
            values.update(self.val_start)  # val_pairwise_acc_start, policy_expected_reward_start
        values["tokens_per_s"] = values["tokens"] / max(time.perf_counter() - t0, 1e-9)
        last = self.step == self.target_step
        if self.val is not None and ((s.val_interval and self.step % s.val_interval == 0) or last):
            values.update(self._validate())
            values.update(self.val_start)  # beside every measurement: the untrained baseline of this run
            self.last_val, self.last_expected = values["val_pairwise_acc"], values["policy_expected_reward"]
        stop = dist.any_true(self.hooks.should_stop is not None and self.hooks.should_stop(), self.world)  # one rank's SIGTERM stops all
        due = self.step % s.log_every == 0 or last or bad or stop
        rec = self.metrics.write(values) if due and self.world.main else None
        if rec is not None:
            self.tracker.log(rec)
        if self.hooks.on_step is not None and self.world.main:
            self.hooks.on_step(values)
        if self.consecutive >= s.max_nan_skips:
            raise TrainingDiverged(
                f"{self.consecutive} non-finite steps in a row (last at step {self.step}, groups {where}); "
                "lower --lr, check those dataset lines, or raise --max-nan-skips"
            )
        return rec, stop

    def run(self) -> dict[str, Any]:
        began = time.time()
        rec: dict[str, Any] | None = None
        path: Path | None = None
        lock = RunLock(self.out) if self.world.main else contextlib.nullcontext()  # one writer per run folder
        with lock, deterministic_mode(self.s.deterministic), self.tracker, dist.session():
            self.setup()
            self._start()
            while self.step < self.target_step:
                try:
                    written, stop = self.run_step()
                except (RewardError, TrainingDiverged):  # every rank raises it at the same step
                    self._save(rec)  # the last good weights (a skipped step changes none), to resume once fixed
                    dist.barrier(self.world)  # no rank exits (and gets the others ended) while rank 0 writes
                    raise
                rec = written or rec
                if self.step % self.s.save_every == 0 or self.step == self.target_step or stop:
                    path = self._save(rec)
                if stop:
                    log.info("stop requested: saved step %d and stopped", self.step)
                    break
            dist.barrier(self.world)
        return self._summary(rec or {}, path, time.time() - began)

    def _summary(self, final: dict[str, Any], path: Path | None, elapsed: float) -> dict[str, Any]:
        return {
            "status": "stopped" if self.step < self.target_step else "ok", "out": str(self.out),
            "start_step": self.start_step, "step": self.step, "steps_run": self.step - self.start_step,
            "loss": final.get("loss"), "reward_mean": final.get("reward_mean"), "kl": final.get("kl"),
            "nan_skips": self.nan_skips, "groups_filtered": self.filtered_total, "bad_lines": self.data.bad_lines,
            "blocked_candidates": self.data.blocked, "truncated_prompts": self.data.truncated_prompts,
            "val_pairwise_acc": self.last_val, "policy_expected_reward": self.last_expected,
            "checkpoint": str(path) if path else None,
            "reward_first": _mean(self.reward_history[:10]), "reward_last": _mean(self.reward_history[-10:]),
            "mode": "online" if self.online is not None else "offline", "world_size": self.world.size,
            "metrics": str(self.metrics.path), "manifest": str(self.out / "manifest.json"),
            "dataset_fingerprint": self.data.fingerprint, "model": self.policy.describe(), "elapsed_s": elapsed,
        }  # fmt: skip


def _axis_means(groups: list[Group]) -> dict[str, float]:
    """axis_<name>_mean over the candidates' named reward axes (offline data)."""
    out = {}
    for name in sorted({a for g in groups for c in g.candidates for a in c.rewards}):
        vals = [c.rewards[name] for g in groups for c in g.candidates if name in c.rewards]
        out[f"axis_{name}_mean"] = sum(vals) / len(vals)
    return out


def _mean(values: list[float | None]) -> float | None:
    finite = [v for v in values if v is not None and math.isfinite(v)]
    return sum(finite) / len(finite) if finite else None


def _backend() -> str:
    from kernels import backend

    return backend()


def train(settings: TrainSettings, hooks: Hooks | None = None) -> dict[str, Any]:
    """Run a training job and return its summary (the scheduler's and `grpo train`'s entry point)."""
    return Trainer(settings, hooks).run()
