"""Online GRPO end to end through `grpo train --online` on real tiny models (built locally, no downloads).

Learning on a prompt-conditional task, the clip acting with --num-iterations 2, an on-policy KL that is
exactly 0 before the first update (also for a GPT-2-like model with dropout 0.1), a failing reward
function stopping the run with a checkpoint, samples.jsonl, truncation, and exact resume.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
import torch
from safetensors.torch import load_file

from policy.metrics import TIMING_KEYS

TASK = Path(__file__).with_name("online_task.py")
ROOT = Path(__file__).resolve().parents[2]
LETTERS = "aeio"


def prompts(path: Path) -> Path:
    rows = [{"prompt": t * 12, "target": t} for t in LETTERS]  # the prompt is the letter, repeated
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def online(tmp_path: Path, *extra: str, fn: str = "letter_rate", steps: int | None = 3) -> list[str]:
    return [
        "train", "--online", "--prompts", str(prompts(tmp_path / "prompts.jsonl")), "--reward-fn", f"{TASK}:{fn}",
        "--num-generations", "8", "--prompts-per-step", "4", "--max-new-tokens", "16", "--temperature", "1.0",
        "--model", "tiny", "--lr", "1e-2", "--beta", "0", "--seed", "0", "--json", *extra,
    ] + ([] if steps is None else ["--steps", str(steps)])  # fmt: skip


def last_json(out: str) -> dict:
    return orjson.loads(out.strip().splitlines()[-1])


def metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_the_policy_learns_a_prompt_conditional_task(grpo, tmp_path: Path) -> None:
    """Reward = share of the completion's characters equal to the prompt's letter. Four letters: a policy
    that ignores the prompt scores at most 1/4 on average, so >= 0.3 needs the prompt. The issue's command
    line (G=8, P=4, 16 new tokens, no KL) at lr 3e-3: seeds 0-7 all reach 1.0 (every prompt solved) by
    step ~80 from about 0.005. At lr 1e-2 the outcome depends on the trajectory (0.25-1.0 over seeds:
    a prompt can lock onto another prompt's letter), and a trajectory is not the same on every CPU."""
    run = tmp_path / "run"
    code, out, err = grpo(*online(tmp_path, "--out", str(run), "--lr", "3e-3", steps=200))
    assert code == 0, err
    summary = last_json(out)
    assert summary["mode"] == "online" and summary["step"] == 200
    assert summary["reward_last"] >= 0.3 and summary["reward_last"] >= 10 * summary["reward_first"], summary
    recs = metrics(run)
    for key in ("completion_len_mean", "completion_len_max", "frac_truncated", "gen_tokens_per_s", "train_tokens_per_s",
                "rollout_s", "train_s", "reward/letter_rate_mean", "reward/letter_rate_std", "entropy"):
        assert all(r[key] is not None for r in recs), key


def test_two_iterations_move_the_ratio_and_clip(grpo, tmp_path: Path) -> None:
    run = tmp_path / "run"
    code, _, err = grpo(*online(tmp_path, "--out", str(run), "--num-iterations", "2", "--lr", "5e-2", "--eps-low", "0.05",
                                "--eps-high", "0.05", fn="length"))  # fmt: skip
    assert code == 0, err
    recs = metrics(run)
    assert all(abs(r["ratio_mean"] - 1.0) > 1e-4 for r in recs)  # the second update's ratio, after the first
    assert any(r["clip_frac_low"] > 0 or r["clip_frac_high"] > 0 for r in recs)


def gpt2_with_dropout(path: Path) -> Path:
    """A GPT-2-like causal LM (dropout 0.1 everywhere) with the byte tokenizer, saved with save_pretrained."""
    from transformers import GPT2Config, GPT2LMHeadModel

    from policy.tiny import build_tokenizer

    tok = build_tokenizer()
    config = GPT2Config(
        vocab_size=len(tok), n_positions=128, n_embd=32, n_layer=2, n_head=2, resid_pdrop=0.1, embd_pdrop=0.1,
        attn_pdrop=0.1, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
    )  # fmt: skip
    torch.manual_seed(0)
    GPT2LMHeadModel(config).save_pretrained(path)
    tok.save_pretrained(path)
    return path


@pytest.mark.parametrize("model", ["tiny", "gpt2-dropout"])
def test_on_policy_kl_is_zero_before_the_first_update_and_never_negative(grpo, tmp_path: Path, model: str) -> None:
    name = "tiny" if model == "tiny" else str(gpt2_with_dropout(tmp_path / "gpt2"))
    run = tmp_path / "run"
    args = online(tmp_path, "--out", str(run), "--beta", "0.04", "--model", name, "--lr", "3e-2", steps=4)
    code, _, err = grpo(*args)
    assert code == 0, err
    kls = [r["kl"] for r in metrics(run)]
    assert kls[0] == 0.0 and all(k >= 0.0 for k in kls) and any(k > 0.0 for k in kls[1:]), kls


def test_a_failing_reward_function_stops_with_exit_1_and_a_checkpoint(grpo, tmp_path: Path) -> None:
    run = tmp_path / "run"
    code, out, err = grpo(*online(tmp_path, "--out", str(run), fn="explode"))
    assert code == 1
    assert "explode" in err and "sample 0" in err, err
    assert (run / "checkpoints" / "step_000000" / "trainer_state.pt").exists()


def test_samples_log_truncation_and_mask(grpo, tmp_path: Path) -> None:
    run = tmp_path / "run"
    code, _, err = grpo(*online(tmp_path, "--out", str(run), "--log-samples", "2", "--max-new-tokens", "4", "--mask-truncated", steps=2))
    assert code == 0, err
    lines = [json.loads(line) for line in (run / "samples.jsonl").read_text().splitlines()]
    assert len(lines) == 4 * 8 and {r["step"] for r in lines} == {2}
    assert set(lines[0]) >= {"step", "prompt", "completion", "rewards", "reward", "advantage", "truncated"}
    assert all(set(r["rewards"]) == {"letter_rate"} for r in lines)
    recs = metrics(run)
    assert all(r["completion_len_max"] <= 4 for r in recs) and any(r["frac_truncated"] > 0 for r in recs)


def test_bad_online_settings_are_usage_errors(grpo, tmp_path: Path) -> None:
    code, _, err = grpo("train", "--online", "--prompts", str(prompts(tmp_path / "p.jsonl")), "--model", "tiny", "--steps", "1")
    assert code == 2 and "--reward-fn" in err
    code, _, err = grpo("train", "--online", "--prompts", str(tmp_path / "p.jsonl"), "--reward-fn", "builtin:overlong", "--steps", "1")
    assert code == 2 and "generative --model" in err
    code, _, err = grpo("train", "--online", "--model", "tiny", "--reward-fn", "builtin:overlong", "--steps", "1")
    assert code == 2 and "--prompts" in err


def grpo_proc(home: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    full = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "GRPO_HOME": str(home), **(env or {})}
    return subprocess.Popen([sys.executable, "-m", "grpo_tui.cli", "--home", str(home), *args], cwd=ROOT, env=full,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip


def test_killed_and_resumed_online_run_equals_straight(home: Path, tmp_path: Path) -> None:
    """A rollout is part of its step: the RNG state and the prompt position come back with the checkpoint."""
    common = online(tmp_path, "--deterministic", "--save-every", "2", "--beta", "0.04", "--num-iterations", "2", steps=None)
    straight, broken = tmp_path / "straight", tmp_path / "broken"
    proc = grpo_proc(home, *common, "--out", str(straight), "--steps", "4")
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    killed = grpo_proc(home, *common, "--out", str(broken), "--steps", "4", env={"GRPO_TEST_KILL_AFTER_SAVE": "2"})
    _, err = killed.communicate(timeout=600)
    assert killed.returncode == -signal.SIGKILL, err
    resumed = grpo_proc(home, *common, "--out", str(broken), "--steps", "2", "--resume")
    out, err = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, err
    assert (last_json(out)["start_step"], last_json(out)["step"]) == (2, 4)
    a, b = ([{k: v for k, v in r.items() if k not in TIMING_KEYS} for r in metrics(p)] for p in (straight, broken))
    assert a == b
    wa, wb = (load_file(str(p / "checkpoints" / "step_000004" / "model.safetensors")) for p in (straight, broken))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_online_training_against_a_trained_judge_raises_the_judged_reward(grpo, tmp_path: Path) -> None:
    """`grpo train-judge` on mined demo groups, then online training on their prompts with that judge."""
    from test_judge import write_demo_groups  # demo groups as `grpo demo seed` + `grpo mine` give them

    groups = write_demo_groups(tmp_path / "global.jsonl")
    code, out, err = grpo("train-judge", "--dataset", str(groups), "--out", str(tmp_path / "judge"), "--json")
    assert code == 0, err
    assert last_json(out)["val_pairwise_acc"] >= 0.75
    run = tmp_path / "run"
    code, out, err = grpo(
        "train", "--online", "--dataset", str(groups), "--judge", str(tmp_path / "judge"), "--num-generations", "8",
        "--prompts-per-step", "4", "--max-new-tokens", "16", "--model", "tiny", "--lr", "1e-2", "--beta", "0",
        "--steps", "60", "--out", str(run), "--seed", "0", "--json",
    )  # fmt: skip
    assert code == 0, err
    summary = last_json(out)
    assert summary["reward_last"] > summary["reward_first"] + 0.1, summary
    assert all(r["reward/judge_mean"] is not None for r in metrics(run))


def test_mined_prompts_with_logged_candidates_mixed_into_the_sampled_groups(grpo, tmp_path: Path) -> None:
    from test_judge import write_demo_groups

    groups = write_demo_groups(tmp_path / "global.jsonl")
    run = tmp_path / "run"
    code, _, err = grpo(
        "train", "--online", "--dataset", str(groups), "--mix-logged", "2", "--reward-fn", f"{TASK}:length",
        "--num-generations", "4", "--prompts-per-step", "2", "--max-new-tokens", "8", "--model", "tiny",
        "--steps", "1", "--log-samples", "1", "--out", str(run), "--json",
    )  # fmt: skip
    assert code == 0, err
    lines = [json.loads(line) for line in (run / "samples.jsonl").read_text().splitlines()]
    assert len(lines) == 2 * (4 + 2) and sum(r["logged"] for r in lines) == 2 * 2
    logged_texts = {c["text"] for line in groups.read_text().splitlines() for c in json.loads(line)["candidates"]}
    assert all(r["completion"] in logged_texts for r in lines if r["logged"])
    assert all(r["reward"] == float(len(r["completion"])) for r in lines)  # logged ones scored like samples
