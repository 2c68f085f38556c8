"""What the inspect screen shows, without textual: the latest mined groups and online samples of a
home's auto levels, and one group scored by the newest checkpoint of its level.

    load_groups(home, limit)  -> (groups, notes)   newest `limit` groups of each level's dataset
                                 (<home>/auto/<level>.jsonl) with advantages from
                                 policy.advantages.group_advantages, then the latest step's samples of
                                 each online run (<home>/auto/ckpts_<level>/samples.jsonl), grouped by
                                 prompt, with their logged advantages; notes say what was missing
    analyse(group, device)    -> Analysis          the newest intact checkpoint of the group's level:
                                 score per candidate (`Policy.scores`) and log-probs under the policy
                                 and under the reference (hf: per token, the base model as loaded;
                                 bow: the listwise log-prob of each candidate vs uniform)

Both read bounded tails of files and never raise for a missing, torn or odd file or a checkpoint that
cannot load: what went wrong becomes `notes` / `Analysis.error`. `analyse` imports torch (through
policy) lazily and keeps loaded policies per checkpoint path (thread-safe: the console calls it from
a worker thread), so it must never run on the UI thread.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from grpo_tui.cycle import level_paths
from grpo_tui.observe import AUTO, LEVELS, parse_line, tail_lines

SAMPLES = "samples.jsonl"
LOGP_LOW, LOGP_HIGH = -8.0, 0.0  # the fixed colour scale of token log-probs: red .. green


@dataclass
class Candidate:
    text: str
    reward: float | None
    rewards: dict[str, float | None] = field(default_factory=dict)  # per axis (mined) or reward function (samples)
    advantage: float | None = None


@dataclass
class InspectGroup:
    level: str
    source: str  # "mined" | "samples"
    prompt: str
    candidates: list[Candidate]
    step: int | None = None  # samples: the training step that sampled them

    @property
    def key(self) -> tuple[str, str, str, int | None]:
        return (self.level, self.source, self.prompt, self.step)


@dataclass
class Analysis:
    level: str
    checkpoint: str | None = None  # the checkpoint dir scored with
    step: int | None = None
    kind: str | None = None  # "bow" | "hf"
    scores: list[float] = field(default_factory=list)  # (G,)
    tokens: list[list[str]] | None = None  # hf: each candidate's completion tokens; bow: None
    logp: list[list[float]] = field(default_factory=list)  # (G, T_i) policy; bow: T_i = 1 (listwise)
    ref_logp: list[list[float]] = field(default_factory=list)  # (G, T_i) reference (hf base / bow uniform)
    error: str | None = None


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def level_names(home: Path) -> list[str]:
    """Levels with a dataset or a run dir under <home>/auto/, in LEVELS order, then others by name."""
    auto = Path(home) / AUTO
    if not auto.is_dir():
        return []
    names = {p.stem for p in auto.glob("*.jsonl") if p.stem != "cycles"}
    names |= {p.name[len("ckpts_"):] for p in auto.glob("ckpts_*") if p.is_dir()}
    return sorted(names, key=lambda n: (LEVELS.index(n) if n in LEVELS else len(LEVELS), n))


def _mined(level: str, path: Path, limit: int) -> list[InspectGroup]:
    out = []
    for record in map(parse_line, tail_lines(path, 1 << 20)):
        if record is None or not isinstance(record.get("prompt"), str) or not isinstance(record.get("candidates"), list):
            continue
        cands = []
        for raw in record["candidates"]:
            if isinstance(raw, dict) and isinstance(raw.get("text"), str):
                axes = raw.get("rewards") if isinstance(raw.get("rewards"), dict) else {}
                cands.append(Candidate(raw["text"], _number(raw.get("reward")), {str(k): _number(v) for k, v in axes.items()}))
        if cands:
            out.append(InspectGroup(level, "mined", record["prompt"], cands))
    return out[-limit:][::-1]  # newest first


def _samples(level: str, path: Path, limit: int) -> list[InspectGroup]:
    records = [r for r in map(parse_line, tail_lines(path, 1 << 20)) if r is not None and isinstance(r.get("prompt"), str)]
    if not records:
        return []
    step = max(int(r["step"]) for r in records if isinstance(r.get("step"), int)) if any(
        isinstance(r.get("step"), int) for r in records) else None
    groups: dict[str, InspectGroup] = {}
    for r in records:
        if r.get("step") != step:
            continue
        group = groups.setdefault(r["prompt"], InspectGroup(level, "samples", r["prompt"], [], step))
        fns = r.get("rewards") if isinstance(r.get("rewards"), dict) else {}
        group.candidates.append(Candidate(str(r.get("completion", "")), _number(r.get("reward")),
                                          {str(k): _number(v) for k, v in fns.items()}, _number(r.get("advantage"))))
    return list(groups.values())[:limit]


def load_groups(home: Path, limit: int = 100) -> tuple[list[InspectGroup], list[str]]:
    """The newest mined groups and latest online samples of every level, plus notes on what is missing."""
    groups: list[InspectGroup] = []
    notes: list[str] = []
    levels = level_names(home)
    if not levels:
        notes.append(f"no auto-mode datasets under {Path(home) / AUTO} yet: run an auto cycle or `m` (mine)")
    for level in levels:
        dataset, run = level_paths(home, level)
        mined = _mined(level, dataset, limit)
        if not mined:
            notes.append(f"{level}: no mined groups ({dataset.name} missing or empty)")
        groups += mined
        groups += _samples(level, run / SAMPLES, limit)
    mined_groups = [g for g in groups if g.source == "mined"]
    if mined_groups:
        try:
            from policy.advantages import group_advantages  # torch: only here, off the UI thread

            rewards = [[c.reward if c.reward is not None else 0.0 for c in g.candidates] for g in mined_groups]
            for g, adv in zip(mined_groups, group_advantages(rewards), strict=True):
                for c, a in zip(g.candidates, adv.tolist(), strict=True):
                    c.advantage = a
        except (ImportError, ValueError, RuntimeError) as exc:
            notes.append(f"advantages: {type(exc).__name__}: {exc}")
    return groups, notes


_LOCK = threading.Lock()
_POLICIES: dict[tuple[str, str], tuple[Any, dict[str, Any]] | str] = {}  # (checkpoint dir, device) -> (policy, meta) | error;
# one entry per run: the newest checkpoint scored


def _policy(checkpoint: Path, meta: dict[str, Any], device: str) -> tuple[Any, dict[str, Any]] | str:
    key = (str(checkpoint), device)
    if key not in _POLICIES:
        for old in [k for k in _POLICIES if Path(k[0]).parent == checkpoint.parent]:
            del _POLICIES[old]  # a newer checkpoint of the same run replaces the older one in memory
        try:
            from policy.backends import policy_for_checkpoint

            config = meta.get("config") if isinstance(meta.get("config"), dict) else {}
            tokens = config.get("max_completion_tokens")  # the completions as the run saw them
            policy = policy_for_checkpoint(meta, device=device, max_completion_tokens=tokens if isinstance(tokens, int) else 512)
            if policy.kind == "hf":
                policy.freeze_reference()  # the base as loaded is the reference (LoRA: adapters off)
            policy.load_weights(checkpoint)
            policy.train(False)
            _POLICIES[key] = (policy, meta)
        except Exception as exc:  # any loading failure is shown on screen, never raised into the console
            _POLICIES[key] = f"cannot load {checkpoint.name}: {type(exc).__name__}: {exc}"
    return _POLICIES[key]


def newest_checkpoint(home: Path, level: str) -> tuple[Path, dict[str, Any]] | str:
    """(dir, meta) of the newest intact checkpoint of `level`, or why there is none."""
    from policy.checkpoint import resolve
    from policy.errors import CheckpointError

    _, run = level_paths(home, level)
    try:
        return resolve(run)
    except CheckpointError as exc:
        return f"no checkpoint for {level} yet ({exc})" if "no checkpoint here" in str(exc) else str(exc)
    except OSError as exc:
        return f"{level}: cannot read checkpoints: {exc}"


def analyse(home: Path, group: InspectGroup, device: str = "cpu") -> Analysis:
    """Score `group` with the newest checkpoint of its level (see the module docstring)."""
    out = Analysis(level=group.level)
    try:
        found = newest_checkpoint(home, group.level)
        if isinstance(found, str):
            out.error = found
            return out
        checkpoint, meta = found
        out.checkpoint, out.step = str(checkpoint), meta.get("step")
        with _LOCK:
            loaded = _policy(checkpoint, meta, device)
            if isinstance(loaded, str):
                out.error = loaded
                return out
            policy, _ = loaded
            out.kind = policy.kind
            import torch

            texts = [c.text for c in group.candidates]
            with torch.no_grad():
                enc = policy.encode(group.prompt, texts)
                out.scores = [float(x) for x in policy.scores(enc).cpu().tolist()]
                logp = policy.logprobs(enc).float().cpu()  # (G, T)
                ref = policy.reference_logprobs(enc).float().cpu()  # (G, T)
            mask = enc.mask.cpu() > 0  # (G, T)
            ids = enc.ids.cpu()
            out.logp = [logp[i][mask[i]].tolist() for i in range(len(texts))]
            out.ref_logp = [ref[i][mask[i]].tolist() for i in range(len(texts))]
            if policy.kind == "hf":
                out.tokens = [policy.tokenizer.convert_ids_to_tokens(ids[i][mask[i]].tolist()) for i in range(len(texts))]
    except Exception as exc:  # a model that fails on this group: a line on screen, never a crash
        out.error = f"scoring failed: {type(exc).__name__}: {exc}"
    return out
