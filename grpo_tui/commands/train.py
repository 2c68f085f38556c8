"""`grpo train` (GRPO on group JSONL) and `grpo eval` (held-out pairwise accuracy; `--sweep`: of every checkpoint of a run).

`grpo train` has one flag per field of `grpo_tui.config.TrainConfig` (generated from the model, so the
defaults shown are its defaults and an unset flag lets `--preset` / `--config-file` apply), plus
`--resume` (continue the newest intact checkpoint under the out dir; `--steps N` then means N MORE
steps), `--json` (the run summary as one JSON object, the last stdout line) and a rich progress bar on
stderr (off with --json or when stderr is not a terminal). The out dir defaults to the home folder
(metrics.jsonl, checkpoints/, manifest.json there, DESIGN section 3). SIGTERM or Ctrl-C stops after
the current step with a checkpoint (exit code 130). The trainer itself is `policy.trainer.train`.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import types
import typing
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import fields
from pathlib import Path
from typing import Any

import click
import orjson

from grpo_tui import guard
from grpo_tui.config import PRESETS, TrainConfig, load_config
from grpo_tui.context import Ctx, pass_ctx
from grpo_tui.errors import UsageError
from grpo_tui.launch import CHILD_ENV

if typing.TYPE_CHECKING:
    from policy.settings import TrainSettings

HELP: dict[str, str] = {
    "dataset": "Group JSONL to train on (one prompt + candidates with rewards per line).",
    "val_dataset": "Held-out group JSONL; its pairwise accuracy is logged every --val-interval steps.",
    "val_interval": "Steps between validation runs (0 = only at the end).",
    "val_split": "Without --val-dataset: hold out this share of the groups (by prompt hash) and validate on them.",
    "out": "Run folder for metrics.jsonl, checkpoints/ and manifest.json [default: the home folder].",
    "model": "Policy: 'bow', 'tiny' (a small random LM built under the out dir) or an HF checkpoint dir.",
    "device": "auto, cpu, cuda or cuda:N.",
    "steps": "Training steps (with --resume: this many more).",
    "groups_per_step": "Groups (one forward each) per micro-batch.",
    "grad_accum": "Micro-batches per optimizer step.",
    "max_prompt_chars": "Longer prompts are bad lines (or cut, with --truncate-prompts).",
    "truncate_prompts": "Cut prompts longer than --max-prompt-chars instead of rejecting the line.",
    "max_completion_tokens": "Completion tokens kept per candidate (hf); a longer logged one is cut, without eos.",
    "max_prompt_tokens": "Keep the last N prompt tokens (left truncation; hf).",
    "chat_template": "hf: 'auto' (the tokenizer's template when it has one; the prompt is the user message), 'none', or a Jinja file.",
    "system_prompt": "hf: a system message before the prompt (in the chat template, or as a first paragraph).",
    "micro_batch_size": "hf: candidates per forward/backward; a group is split in micro-batches, its loss is not.",
    "skip_bad_lines": "Skip and count invalid dataset lines instead of failing on the first.",
    "blocklist": "File of substrings, one per line; a candidate containing one gets the minimum reward.",
    "reward_weights": "Mix named reward axes: 'name=w,name=w' (uses each candidate's 'rewards').",
    "adv_baseline": "Advantage baseline: group mean, median, or leave-one-out.",
    "scale_rewards": "Divide advantages by the group's std, the batch's, or not at all.",
    "adv_std": "Std used by --scale-rewards: unbiased (n-1, as TRL) or population (n, the former default).",
    "adv_clip": "Clamp advantages to [-x, x].",
    "reward_clip": "Clamp rewards to [-x, x] before advantages.",
    "loss_type": "GRPO loss normalisation (kernels.LOSS_TYPES).",
    "eps_low": "Lower clip of the importance ratio (1 - eps_low).",
    "eps_high": "Upper clip of the importance ratio (1 + eps_high).",
    "delta": "Upper clamp of the unclipped ratio (two-sided clipping), > 1.",
    "ratio_level": "Importance ratio per token or per sequence (GSPO).",
    "temperature": "Softmax temperature of the policy's log-probs.",
    "is_level": "Off-policy weight exp(old - behaviour log-prob) of candidates with logged behavior_logprobs: per token or per sequence.",
    "is_mode": "Weights above --is-cap: truncate to the cap, or mask (zero) them.",
    "is_cap": "Cap of the off-policy importance weight (TRL's vllm_importance_sampling_clip_max).",
    "top_entropy_quantile": "Keep the loss on the top q (0, 1] of completion tokens by entropy; 1 keeps all.",
    "beta": "KL coefficient to the reference policy.",
    "kl_warmup": "Anneal the KL coefficient from 0 over this many steps.",
    "kl_target": "KL coefficient reached after --kl-warmup (replaces --beta).",
    "kl_adaptive": "Adapt the KL coefficient towards --kl-adaptive-target measured KL.",
    "kl_adaptive_target": "Measured KL the adaptive controller steers towards.",
    "kl_horizon": "Adaptive KL controller horizon, steps.",
    "num_iterations": "Optimizer updates per batch (old log-probs captured before the first).",
    "lr": "AdamW learning rate [default: the backend's: bow 0.05, tiny / HF models 1e-4].",
    "weight_decay": "AdamW weight decay.",
    "lr_step": "StepLR: multiply the LR by --lr-gamma every N steps.",
    "lr_gamma": "StepLR factor.",
    "warmup_steps": "Linear LR warmup steps.",
    "cosine": "Cosine LR decay to 0 after warmup (not with --lr-step).",
    "max_grad_norm": "Clip the gradient norm to this.",
    "max_nan_skips": "Stop after this many non-finite steps in a row.",
    "lora_r": "LoRA rank for hf models (0 = full fine-tuning; needs the 'lora' extra).",
    "lora_alpha": "LoRA alpha.",
    "gradient_checkpointing": "Recompute activations in backward (hf models).",
    "nproc": "Processes to train on (one per GPU; gloo on CPU): > 1 re-runs this command under torchrun --standalone. Under your own torchrun, ignored.",
    "fsdp": "With several processes: shard the policy, its gradients and optimizer state with FSDP2 instead of replicating it (DDP).",
    "dist_timeout": "Seconds a collective waits for another rank before the run fails (a dead or hung rank).",
    "bow_buckets": "Hashed feature buckets of the bow backend.",
    "seed": "Seed of the data order and initialisation.",
    "deterministic": "Deterministic torch algorithms (bit-exact resume).",
    "online": "Online GRPO: sample --num-generations completions per prompt from the policy and score them.",
    "prompts": "Online prompts: JSONL with a 'prompt' field (other fields go to the reward functions) or one per line.",
    "num_generations": "Online: completions sampled per prompt (G).",
    "prompts_per_step": "Online: prompts per step (P); a step trains on P x G completions.",
    "max_new_tokens": "Online: token limit per sampled completion (one that hits it is truncated).",
    "top_p": "Online: nucleus sampling (1 = off).",
    "top_k": "Online: top-k sampling (0 = off).",
    "mask_truncated": "Drop completions cut at the token limit from the loss (online: --max-new-tokens; offline: --max-completion-tokens).",
    "mix_logged": "Online with --dataset: up to N logged candidates join each sampled group.",
    "reward_fn": "Online reward function, repeatable: module:function, path/file.py:function or builtin:exec_tests|format|overlong.",
    "judge": "Online: a frozen reward model dir (HF sequence classifier with one label, or `grpo train-judge` output).",
    "judge_device": "Device of the judge: auto, cpu, cuda or cuda:N.",
    "format_regex": "builtin:format: reward 1 when the completion matches this regex.",
    "overlong_buffer": "builtin:overlong: soft-penalty zone in tokens before --max-new-tokens [default: a quarter of it].",
    "exec_timeout": "builtin:exec_tests: wall-time limit per completion, seconds.",
    "exec_memory_mb": "builtin:exec_tests: address-space limit per completion, MiB.",
    "log_samples": "Online: every N steps append the step's samples to <out>/samples.jsonl (0 = off).",
    "log_every": "Steps between metrics records.",
    "save_every": "Steps between checkpoints (one is always written at the end).",
    "keep_checkpoints": "Checkpoints kept (newest).",
    "report_to": "Mirror every metrics record to TensorBoard (<out>/tensorboard/) or W&B (offline, <out>/wandb/); needs that extra.",
}


def _unwrap(annotation: Any) -> Any:
    """`X | None` -> X."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return args[0] if len(args) == 1 else annotation
    return annotation


def parse_weights(text: str) -> dict[str, float]:
    """'a=1,b=0.5' -> {'a': 1.0, 'b': 0.5}."""
    out: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, value = part.partition("=")
        try:
            out[name.strip()] = float(value)
        except ValueError:
            sep = ""
        if not sep or not name.strip():
            raise click.BadParameter(f"{part!r} is not name=weight (e.g. 'correct=1,style=0.2')", param_hint="--reward-weights")
    return out


def config_options(names: list[str] | None = None) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """click options for TrainConfig fields (all of them, or `names`), each defaulting to unset."""

    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        for name in reversed(names or list(TrainConfig.model_fields)):
            field = TrainConfig.model_fields[name]
            kind = _unwrap(field.annotation)
            flag = "--" + name.replace("_", "-")
            default = field.default_factory() if field.default_factory else field.default
            shown = "" if default in (None, {}, []) else f" [default: {default}]"
            extra: dict[str, Any] = {"default": None, "help": HELP.get(name, "") + shown}
            if kind is bool:
                func = click.option(f"{flag}/--no-{flag[2:]}", name, **extra)(func)
                continue
            if typing.get_origin(kind) is list:  # reward_fn: a repeatable flag
                extra.update(multiple=True, default=None, metavar="SPEC")
                func = click.option(flag, name, **extra)(func)
                continue
            if typing.get_origin(kind) is typing.Literal:
                extra["type"] = click.Choice(typing.get_args(kind))
            elif kind is Path:
                extra["type"] = click.Path(path_type=Path)
            elif kind in (int, float, str):
                extra["type"] = kind
            else:  # reward_weights: dict[str, float]
                extra["type"], extra["metavar"] = str, "NAME=W,..."
            func = click.option(flag, name, **extra)(func)
        return func

    return decorate


def settings_from_config(cfg: TrainConfig, *, home: Path, resume: bool = False) -> TrainSettings:
    """The trainer's settings from a validated TrainConfig (out defaults to the home folder)."""
    from policy.settings import TrainSettings

    if cfg.dataset is None and not (cfg.online and cfg.prompts is not None):
        raise UsageError("no dataset: pass --dataset FILE (or set dataset in --config-file; online: --prompts FILE)")
    values = {f.name: getattr(cfg, f.name) for f in fields(TrainSettings) if f.name in TrainConfig.model_fields}
    values.update(out=cfg.out or home, resume=resume)
    return TrainSettings(**values)


@contextmanager
def graceful_stop() -> Iterator[Callable[[], bool]]:
    """SIGTERM / first Ctrl-C ask the trainer to stop after the current step; a second Ctrl-C interrupts."""
    asked: list[int] = []

    def handler(signum: int, frame: Any) -> None:
        if signum == signal.SIGINT and asked:
            raise KeyboardInterrupt
        asked.append(signum)
        click.echo("stopping after this step (checkpointing)...", err=True)

    if threading.current_thread() is not threading.main_thread():  # signals reach the main thread only
        yield lambda: False
        return
    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield lambda: bool(asked)
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


class ProgressBar:
    """A rich progress bar on stderr: step, loss, reward, KL, tokens/s."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.progress = Progress(
            TextColumn("train"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[info]}"),
            TimeRemainingColumn(), console=Console(stderr=True), transient=False,
        )  # fmt: skip
        self.task: Any = None

    def start(self, info: dict[str, Any]) -> None:
        self.progress.start()
        total = info["target_step"] - info["start_step"]
        self.offset = info["start_step"]
        self.task = self.progress.add_task("train", total=total, info="")

    def step(self, rec: dict[str, Any]) -> None:
        def f(key: str, fmt: str) -> str:
            value = rec.get(key)
            return "-" if value is None else format(value, fmt)

        info = f"loss {f('loss', '.4g')}  reward {f('reward_mean', '.3f')}  kl {f('kl', '.4f')}  {f('tokens_per_s', '.0f')} tok/s"
        self.progress.update(self.task, completed=rec["step"] - self.offset, info=info)

    def stop(self) -> None:
        self.progress.stop()


@click.command("train")
@config_options()
@click.option("--config-file", type=click.Path(path_type=Path, dir_okay=False), help="YAML of TrainConfig keys, over the preset.")
@click.option("--preset", type=click.Choice(PRESETS), help="Named set of loss/optimiser settings under --config-file.")
@click.option("--resume", is_flag=True, help="Continue the newest intact checkpoint under the out dir; --steps N = N more steps.")
@click.option("--json", "as_json", is_flag=True, help="Print the run summary as one JSON object (the last line).")
@pass_ctx
def train_cmd(ctx: Ctx, config_file: Path | None, preset: str | None, resume: bool, as_json: bool, **flags: Any) -> int:
    """Train a policy with GRPO on group JSONL; metrics, checkpoints and a manifest go to the out dir."""
    from policy.errors import SettingsError
    from policy.metrics import clean
    from policy.settings import Hooks
    from policy.trainer import train

    if flags.get("reward_weights") is not None:
        flags["reward_weights"] = parse_weights(flags["reward_weights"])
    flags["reward_fn"] = list(flags["reward_fn"]) or None  # an empty repeatable flag is unset
    cfg = load_config(TrainConfig, config_file=config_file, flags=flags, preset_name=preset)
    settings = settings_from_config(cfg, home=ctx.home, resume=resume)
    rank, world = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    if cfg.nproc > 1 and world == 1:  # not under torchrun yet: run this command again under it
        from grpo_tui.launch import torchrun

        return torchrun(cfg.nproc)
    bar = ProgressBar() if not as_json and sys.stderr.isatty() and rank == 0 else None
    try:
        with graceful_stop() as should_stop:
            hooks = Hooks(should_stop=should_stop, on_start=bar.start if bar else None, on_step=bar.step if bar else None,
                          before_train=lambda: guard.require(ctx.home))
            try:
                summary = train(settings, hooks)
            finally:
                if bar:
                    bar.stop()
    except SettingsError as exc:
        raise UsageError(str(exc)) from exc
    stopped = 130 if summary["status"] == "stopped" and CHILD_ENV not in os.environ else 0  # torchrun: the launcher says 130
    if rank != 0:  # rank 0 reports for the run
        return stopped
    if as_json:
        click.echo(orjson.dumps(clean(summary)).decode())
    else:
        loss = "-" if summary["loss"] is None else f"{summary['loss']:.4g}"
        click.echo(f"{summary['status']}: steps {summary['start_step']} -> {summary['step']}, loss {loss}, nan skips {summary['nan_skips']}")
        if summary["val_pairwise_acc"] is not None:
            click.echo(f"held-out pairwise accuracy {summary['val_pairwise_acc']:.3f}")
        click.echo(f"checkpoint {summary['checkpoint']}\nmetrics {summary['metrics']}")
    return stopped


DATA_FLAGS = ["max_prompt_chars", "truncate_prompts", "max_completion_tokens", "skip_bad_lines", "blocklist", "reward_weights", "device"]


@click.command("eval")
@click.option("--dataset", type=click.Path(path_type=Path, dir_okay=False), required=True, help="Held-out group JSONL.")
@click.option("--model", default=None, help="bow, tiny or an HF checkpoint dir (not needed with --checkpoint).")
@click.option("--checkpoint", type=click.Path(path_type=Path, file_okay=False), help="A step_NNNNNN dir, or a run dir (its newest intact checkpoint).")
@click.option("--sweep", type=click.Path(path_type=Path, file_okay=False), help="A run dir: evaluate every intact checkpoint it kept (see --keep-checkpoints), step by step.")
@click.option("--plot", "plot_path", type=click.Path(path_type=Path, dir_okay=False), help="With --sweep: draw accuracy against step into FILE.png (needs the plot extra).")
@click.option("--out", type=click.Path(path_type=Path, file_okay=False), help="Run dir whose models/tiny `--model tiny` uses [default: the home folder].")
@config_options(DATA_FLAGS)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object as the last line.")
@pass_ctx
def eval_cmd(
    ctx: Ctx, dataset: Path, model: str | None, checkpoint: Path | None, sweep: Path | None, plot_path: Path | None,
    out: Path | None, as_json: bool, **flags: Any,
) -> None:  # fmt: skip
    """Pairwise accuracy of a policy on held-out groups: how often it ranks the better candidate higher."""
    from policy import checkpoint as ckpt
    from policy.backends import load_policy, policy_for_checkpoint
    from policy.data import load_dataset
    from policy.errors import DatasetError
    from policy.evaluate import pairwise_accuracy
    from policy.metrics import clean

    if flags.get("reward_weights") is not None:
        flags["reward_weights"] = parse_weights(flags["reward_weights"])
    cfg = load_config(TrainConfig, flags=flags)
    if checkpoint is None and model is None and sweep is None:
        raise UsageError("pass --model (bow, tiny or an HF dir), --checkpoint DIR or --sweep RUN_DIR")
    if sweep is not None and (checkpoint is not None or model is not None):
        raise UsageError("--sweep evaluates a run's own checkpoints; drop --model / --checkpoint")
    if plot_path is not None and sweep is None:
        raise UsageError("--plot draws a --sweep; pass --sweep RUN_DIR")
    if plot_path is not None:
        require_matplotlib()
    data = load_dataset(
        dataset, skip_bad_lines=cfg.skip_bad_lines, max_prompt_chars=cfg.max_prompt_chars,
        truncate_prompts=cfg.truncate_prompts, blocklist=cfg.blocklist, reward_weights=cfg.reward_weights,
    )  # fmt: skip
    if sweep is not None:
        return eval_sweep(sweep, dataset, data, cfg, plot_path=plot_path, as_json=as_json)
    step = path = None
    if checkpoint is not None:
        path, meta = ckpt.resolve(checkpoint)
        policy = policy_for_checkpoint(meta, device=cfg.device, max_completion_tokens=cfg.max_completion_tokens)
        policy.load_weights(path)
        step = meta.get("step")
    else:
        assert model is not None
        policy = load_policy(model, out=out or ctx.home, device=cfg.device, max_completion_tokens=cfg.max_completion_tokens)
    acc, pairs = pairwise_accuracy(policy, data.groups)
    if acc is None:
        raise DatasetError(f"{dataset}: no candidate pairs with different rewards; nothing to rank")
    result = {
        "pairwise_acc": acc, "pairs": pairs, "groups": len(data), "bad_lines": data.bad_lines,
        "dataset": str(dataset), "dataset_fingerprint": data.fingerprint, "model": policy.describe(),
        "checkpoint": str(path) if path else None, "step": step,
    }  # fmt: skip
    if as_json:
        click.echo(orjson.dumps(clean(result)).decode())
    else:
        click.echo(f"pairwise accuracy {acc:.4f} over {pairs} pairs in {len(data)} groups")


def require_matplotlib() -> None:
    import importlib.util

    if importlib.util.find_spec("matplotlib") is None:
        raise UsageError("--plot needs matplotlib: pip install 'grpo-tui[plot]' (or pip install matplotlib)")


def eval_sweep(run: Path, dataset: Path, data: Any, cfg: TrainConfig, *, plot_path: Path | None, as_json: bool) -> None:
    """`grpo eval --sweep RUN_DIR`: held-out pairwise accuracy of every intact checkpoint of a run, by step.

    A run keeps only its newest --keep-checkpoints checkpoints; a corrupt one is skipped with a warning.
    """
    import logging

    from policy import checkpoint as ckpt
    from policy.backends import policy_for_checkpoint
    from policy.errors import CheckpointError, DatasetError
    from policy.evaluate import pairwise_accuracy
    from policy.metrics import clean

    root = run / "checkpoints" if ckpt.list_checkpoints(run / "checkpoints") else run
    found = sorted(ckpt.list_checkpoints(root))  # (step, dir), oldest first
    if not found:
        raise CheckpointError(f"{run}: no checkpoints (expected step_NNNNNN dirs here or under checkpoints/)")
    points, skipped, policies = [], [], {}
    for step, path in found:
        try:
            meta = ckpt.verify(path)
        except CheckpointError as exc:
            logging.getLogger("grpo_tui").warning("skipping %s: %s", path.name, exc)
            skipped.append(str(path))
            continue
        key = orjson.dumps(meta.get("policy", {}), option=orjson.OPT_SORT_KEYS)
        if key not in policies:  # one policy per architecture; each checkpoint's weights loaded into it
            policies[key] = policy_for_checkpoint(meta, device=cfg.device, max_completion_tokens=cfg.max_completion_tokens)
        policy = policies[key]
        policy.load_weights(path)
        acc, pairs = pairwise_accuracy(policy, data.groups)
        if acc is None:
            raise DatasetError(f"{dataset}: no candidate pairs with different rewards; nothing to rank")
        points.append({"step": int(meta.get("step", step)), "checkpoint": str(path), "pairwise_acc": acc, "pairs": pairs})
    if not points:
        raise CheckpointError(f"{run}: no intact checkpoint: {'; '.join(skipped)}")
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"held-out pairwise accuracy of {run} on {dataset}")
    for name in ("step", "pairwise acc", "pairs"):
        table.add_column(name, justify="right")
    for p in points:
        table.add_row(str(p["step"]), f"{p['pairwise_acc']:.4f}", str(p["pairs"]))
    Console(stderr=as_json).print(table)
    if plot_path is not None:
        click.echo(f"plot: {plot_sweep(points, plot_path, title=f'{run.name} on {dataset.name}')}", err=as_json)
    if as_json:
        result = {"run": str(run), "dataset": str(dataset), "dataset_fingerprint": data.fingerprint, "groups": len(data), "points": points, "skipped": skipped}
        click.echo(orjson.dumps(clean(result)).decode())


def plot_sweep(points: list[dict[str, Any]], path: Path, *, title: str) -> Path:
    """Held-out pairwise accuracy against step, written atomically to `path` (PNG)."""
    import matplotlib

    from grpo_tui.figures import save_png

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot([p["step"] for p in points], [p["pairwise_acc"] for p in points], marker="o")
    ax.axhline(0.5, color="grey", linestyle=":", linewidth=1)  # chance
    ax.set(xlabel="step", ylabel="held-out pairwise accuracy", title=title, ylim=(0, 1))
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    return save_png(fig, path)
