"""Frozen judges: a bow judge learnt from mined demo groups ranks held-out candidates, HF judges load
with one label, score deterministically and independently of the batch they are in (policy.judge,
policy.judge_train)."""

from __future__ import annotations

import math
from pathlib import Path

import orjson
import pytest
import torch

from miner.demo import demo_actions, stream_ids
from miner.extract import parse_action
from miner.groups import build_groups
from miner.mine import encode_groups
from policy.data import load_dataset
from policy.errors import DatasetError, PolicyError
from policy.judge import JUDGE_JSON, load_judge
from policy.judge_train import flatten, pair_accuracy, split_groups, train_judge
from policy.tiny import build_tiny, build_tiny_scorer, build_tokenizer, tiny_config

NOW = 1_900_000_000.0


def write_demo_groups(path: Path, *, n: int = 1200, seed: int = 0, hours: float = 48.0) -> Path:
    """The global level `grpo demo seed` + `grpo mine --hours H` gives, without a store: the demo
    actions inside the window, newest first, grouped by miner.groups.build_groups."""
    actions, _ = demo_actions(n, seed, now=NOW)
    ids = stream_ids([a["timestamp"] for a in actions], None)
    parsed = [(i.encode(), parse_action([b"data", orjson.dumps(a)])) for i, a in zip(ids, actions) if a["timestamp"] >= NOW - hours * 3600]
    assert not any(isinstance(p, str) for _, p in parsed)
    path.write_bytes(encode_groups(build_groups(parsed[::-1], "global")))
    return path


@pytest.fixture()
def demo_groups(tmp_path: Path) -> Path:
    return write_demo_groups(tmp_path / "global.jsonl")


def test_bow_judge_learns_demo_preferences_and_ranks_held_out_candidates(demo_groups: Path, tmp_path: Path) -> None:
    out = tmp_path / "judge"
    summary = train_judge(demo_groups, out, model="bow", seed=0, device="cpu")
    assert summary["val_groups"] >= 5 and summary["val_pairs"] >= 50, summary
    assert summary["val_pairwise_acc"] >= 0.75, summary
    assert summary["train_pairwise_acc"] >= summary["val_pairwise_acc"] - 0.05
    assert summary["pairs"] == summary["train_pairs"] + summary["val_pairs"]
    assert summary["groups"] == summary["train_groups"] + summary["val_groups"]
    assert {p.name for p in out.iterdir()} == {JUDGE_JSON, "model.safetensors"} and not (tmp_path / "judge.tmp").exists()

    judge = load_judge(out, device="cpu", batch_size=7)
    assert judge.name == "judge"
    _, held = split_groups(load_dataset(demo_groups).groups, 0.2, seed=0)
    split = flatten(held)
    scores = torch.tensor(judge(split.prompts, split.texts, completion_ids=None))  # extra TRL columns are ignored
    assert scores.shape == (len(split.texts),) and torch.isfinite(scores).all()
    margin = scores[split.pairs[:, 0]] - scores[split.pairs[:, 1]]  # (P,) better minus worse
    assert margin.mean() > 0
    assert pair_accuracy(scores, split.pairs) == pytest.approx(summary["val_pairwise_acc"])  # the saved judge is the trained one


def test_split_is_by_prompt_deterministic_and_keeps_a_training_group(demo_groups: Path) -> None:
    groups = load_dataset(demo_groups).groups
    train, held = split_groups(groups, 0.2, seed=3)
    assert (train, held) == split_groups(groups, 0.2, seed=3)
    assert not {g.prompt for g in train} & {g.prompt for g in held}
    assert len(held) == math.ceil(0.2 * len(groups)) and held != split_groups(groups, 0.2, seed=4)[1]
    assert split_groups(groups[:1], 0.5, seed=0) == (groups[:1], [])


def test_judge_accepts_chat_messages_and_refuses_mismatched_lengths(demo_groups: Path, tmp_path: Path) -> None:
    judge = load_judge(train_judge(demo_groups, tmp_path / "j", steps=5)["out"], device="cpu")
    plain = judge(["Fix the bug in cli/main.py"], ["Ran the tests: 3 passed"])
    chat = judge([[{"role": "user", "content": "Fix the bug in cli/main.py"}]], [[{"role": "assistant", "content": "Ran the tests: 3 passed"}]])
    assert plain == chat and len(plain) == 1
    with pytest.raises(PolicyError, match="2 prompts but 1 completions"):
        judge(["a", "b"], ["c"])


def test_dataset_without_pairs_is_a_dataset_error(tmp_path: Path) -> None:
    data = tmp_path / "flat.jsonl"
    data.write_text('{"prompt": "same reward everywhere", "candidates": [{"text": "a", "reward": 1}, {"text": "b", "reward": 1}]}\n')
    with pytest.raises(DatasetError, match="no training pairs"):
        train_judge(data, tmp_path / "j")
    assert not (tmp_path / "j").exists()


def _save_hf_judge(path: Path, *, num_labels: int = 1, pad: bool = True, chat_template: str | None = None) -> Path:
    """A tiny Llama sequence-classification checkpoint built locally, saved with save_pretrained."""
    from transformers import LlamaForSequenceClassification

    tokenizer = build_tokenizer()
    config = tiny_config(tokenizer, num_labels=num_labels)
    if not pad:  # as many decoder checkpoints ship: no pad token at all
        tokenizer.pad_token = None
        config.pad_token_id = None
    tokenizer.chat_template = chat_template
    torch.manual_seed(0)
    LlamaForSequenceClassification(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


PROMPTS = ["Fix the crash in parse_file", "Explain the cache", "Find where run_command is defined", "Write tests"]
COMPLETIONS = ["Ran the tests: 12 passed, 0 failed.", "It first validates its arguments, then delegates to a helper.", "Done.", "x" * 40]


def test_hf_judge_scores_each_sample_independently_of_its_batch(tmp_path: Path) -> None:
    path = _save_hf_judge(tmp_path / "rm", pad=False)
    judge = load_judge(path, device="cpu", batch_size=1)
    assert judge.describe()["text_format"] == "newline"  # a decoder tokenizer has no separator token
    assert judge.tokenizer.pad_token_id == judge.tokenizer.eos_token_id == judge.model.config.pad_token_id
    alone = torch.tensor(judge(PROMPTS, COMPLETIONS), dtype=torch.float64)  # (B,) no padding at all
    assert alone.shape == (4,) and torch.isfinite(alone).all() and alone.std() > 0
    judge.batch_size = 3  # the rows are now right-padded to the longest of their batch
    batched = torch.tensor(judge(PROMPTS, COMPLETIONS), dtype=torch.float64)
    assert torch.equal(batched, torch.tensor(judge(PROMPTS, COMPLETIONS), dtype=torch.float64))  # same batches, same bits
    # Error model: padding changes only shapes (so BLAS blocking and reduction order), not the maths. Each of
    # the ~n_ops fp32 reductions per layer (length <= K) adds a relative error of about c * sqrt(K) * eps to
    # the activations, carried with unit gain through the normalised residual stack; the score is a
    # dot product of the final normed hidden state h (||h|| <= sqrt(H) * max|norm weight|) with the head w.
    model, eps = judge.model, torch.finfo(torch.float32).eps
    n_ops = 6 * model.config.num_hidden_layers + 2  # q, k, v, attention, o, mlp per layer; final norm, head
    tokens = max(len(judge.tokenizer(f"{p}\n{c}")["input_ids"]) for p, c in zip(PROMPTS, COMPLETIONS))
    k = max(model.config.intermediate_size, model.config.hidden_size, tokens)
    h_norm = math.sqrt(model.config.hidden_size) * model.model.norm.weight.abs().max().item()
    tol = 4 * n_ops * math.sqrt(k) * eps * h_norm * model.score.weight.norm().item()
    assert (batched - alone).abs().max().item() <= tol, ((batched - alone).abs().max().item(), tol)
    assert tol < 1e-2 * alone.std().item()  # the bound is far below the spread of the scores: padding leaks would show


def test_hf_judge_formats_chat_messages_with_the_chat_template(tmp_path: Path) -> None:
    template = "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
    judge = load_judge(_save_hf_judge(tmp_path / "rm", chat_template=template), device="cpu")
    tok = judge.tokenizer
    chat = judge.encode([[{"role": "user", "content": "Fix it"}], "Explain"], [[{"role": "assistant", "content": "Done."}], "It caches."])
    rows = [ids[mask.bool()].tolist() for ids, mask in zip(chat["input_ids"], chat["attention_mask"])]
    assert rows == [tok("user: Fix it\nassistant: Done.\n", add_special_tokens=False)["input_ids"],
                    tok("user: Explain\nassistant: It caches.\n", add_special_tokens=False)["input_ids"]]  # fmt: skip
    plain = judge.encode(["Fix it"], ["Done."])["input_ids"][0].tolist()
    assert plain == tok("Fix it\nDone.")["input_ids"]  # plain text: the newline format, with the tokenizer's <s>
    assert all(math.isfinite(s) for s in judge([[{"role": "user", "content": "Fix it"}]], ["Done."]))


def test_checkpoint_with_two_labels_is_refused(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="num_labels=2"):
        load_judge(_save_hf_judge(tmp_path / "cls2", num_labels=2), device="cpu")
    with pytest.raises(PolicyError, match="no judge there"):
        load_judge(tmp_path / "missing", device="cpu")


def test_hf_judge_trained_from_a_causal_lm_checkpoint_loads_with_its_format(tmp_path: Path) -> None:
    data = tmp_path / "short.jsonl"
    data.write_text("".join(
        orjson.dumps({"prompt": f"task {i}", "candidates": [{"text": "ok!", "reward": 1.0}, {"text": "no?", "reward": 0.0}]}).decode() + "\n"
        for i in range(6)
    ))  # fmt: skip
    lm = build_tiny(tmp_path / "lm", seed=0)  # a causal LM: the judge gets a new, seeded score head
    summary = train_judge(data, tmp_path / "judge", model=str(lm), steps=2, lr=1e-3, seed=1, device="cpu", groups_per_step=2)
    assert summary["kind"] == "hf" and summary["train_pairs"] > 0 and summary["final_loss"] is not None
    judge = load_judge(tmp_path / "judge", device="cpu", batch_size=2)
    assert judge.model.config.num_labels == 1 and judge.describe()["max_length"] == 512
    first = judge(["task 0", "task 9"], ["ok!", "no?"])
    assert first == judge(["task 0", "task 9"], ["ok!", "no?"]) and all(math.isfinite(s) for s in first)
    again = train_judge(data, tmp_path / "judge2", model=str(lm), steps=2, lr=1e-3, seed=1, device="cpu", groups_per_step=2)
    assert again["final_loss"] == summary["final_loss"]  # seeded head and group order: the same run twice


def test_tiny_scorer_is_a_one_label_llama(tmp_path: Path) -> None:
    model, tokenizer = build_tiny_scorer(seed=0)
    assert model.config.num_labels == 1 and model.config.pad_token_id == tokenizer.pad_token_id
