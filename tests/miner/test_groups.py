"""Grouping per level, duplicate folding, min/max k selection and meta (miner.groups), no Redis needed."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from miner.extract import Action
from miner.groups import build_groups, merge_hits, select_extremes


def act(prompt="Fix the pagination bug", text="t", reward=0.5, action_type="code_edit", env="development",
        sig="FixBug", ctx=None) -> Action:
    return Action(prompt, text, reward, action_type, env, sig, ctx, None)


def ids(n: int) -> list[bytes]:
    return [f"{1000 - i}-0".encode() for i in range(n)]  # newest first, as the miner reads


def test_select_extremes_examples():
    assert select_extremes(3, 8) == [0, 1, 2]
    assert select_extremes(10, 4) == [0, 3, 6, 9]
    assert select_extremes(10, 2) == [0, 9]
    assert select_extremes(9, 3) == [0, 4, 8]


@given(st.integers(1, 500), st.integers(2, 64))
def test_select_extremes_keeps_both_ends_and_distinct_middles(n, k):
    picked = select_extremes(n, k)
    assert len(picked) == min(n, k)
    assert picked == sorted(set(picked))
    assert picked[0] == 0 and picked[-1] == n - 1


def test_duplicates_folded_keeping_the_best_reward_and_counting_them():
    actions = list(zip(ids(5), [act(text="same", reward=0.2), act(text="same", reward=0.9), act(text="same", reward=0.4),
                                act(text="other", reward=0.1), act(text="same", reward=0.9)]))
    (group,) = build_groups(actions, "global")
    assert group["candidates"] == [{"text": "same", "reward": 0.9}, {"text": "other", "reward": 0.1}]
    meta = group["meta"]
    assert (meta["group_size"], meta["n_entries"], meta["duplicates"], meta["counts"]) == (2, 5, 3, [4, 1])
    assert meta["source_ids"] == ["999-0", "997-0"]  # the newest entry holding the best reward


def test_min_k_drops_small_groups():
    actions = list(zip(ids(3), [act(prompt="Prompt number one", text="a"), act(prompt="Prompt number one", text="a"),
                                act(prompt="Prompt number two", text="b")]))
    assert build_groups(actions, "global", min_k=2) == []


def test_max_k_keeps_extremes_plus_middles():
    rewards = [0.3, 0.9, 0.0, 0.5, 0.7, 0.1, 0.8, 0.2, 0.6, 0.4]  # 10 distinct candidates
    actions = list(zip(ids(10), [act(text=f"answer {r}", reward=r) for r in rewards]))
    (group,) = build_groups(actions, "global", max_k=4)
    # sorted best first: 0.9 0.8 0.7 0.6 0.5 0.4 0.3 0.2 0.1 0.0 -> indices 0, 3, 6, 9
    assert [c["reward"] for c in group["candidates"]] == [0.9, 0.6, 0.3, 0.0]
    assert group["meta"]["group_size"] == 10


def test_reward_ties_rank_newest_first():
    actions = list(zip(ids(3), [act(text="newest", reward=0.5), act(text="middle", reward=0.5), act(text="oldest", reward=0.5)]))
    (group,) = build_groups(actions, "global")
    assert [c["text"] for c in group["candidates"]] == ["newest", "middle", "oldest"]


def test_levels_and_meta():
    actions = list(zip(ids(6), [
        act(text="a", reward=0.1, action_type="code_edit", sig="FixBug", env="testing", ctx="h1"),
        act(text="b", reward=0.2, action_type="test_execution", sig="FixBug", env="testing", ctx="h1"),
        act(text="c", reward=0.3, action_type="patch_generation", sig="Other", env="development", ctx="h2"),
        act(text="d", reward=0.4, action_type="file_search", sig=None, env=None, ctx=None),
        act(text="e", reward=0.5, action_type="code_edit", sig="Other", env="testing", ctx=None),
        act(text="f", reward=0.6, action_type="file_search", sig="FixBug", env="local", ctx=None),
    ]))
    (glob,) = build_groups(actions, "global", hits_by_query={"Fix the pagination bug": [{"path": "p.py", "score": 1.0, "source": None}]})
    assert len(glob["candidates"]) == 6
    meta = glob["meta"]
    assert meta["level"] == "global"
    assert meta["action_types"] == ["code_edit", "file_search", "patch_generation", "test_execution"]
    assert (meta["environment"], meta["context_hash"], meta["signature_name"]) == ("testing", "h1", "FixBug")
    assert meta["imesh_hits"] == [{"path": "p.py", "score": 1.0, "source": None}]
    sig = build_groups(actions, "signature")
    assert {(g["meta"]["signature_name"], len(g["candidates"])) for g in sig} == {("FixBug", 3), ("Other", 2)}
    assert all(g["prompt"] == "Fix the pagination bug" and g["meta"]["level"] == "signature" for g in sig)
    (patch,) = build_groups(actions, "patch")
    assert sorted(c["text"] for c in patch["candidates"]) == ["a", "c", "e"]
    assert patch["meta"]["action_types"] == ["code_edit", "patch_generation"]


def test_merge_hits_dedupes_by_path_best_score_first():
    hits = [{"path": "a", "score": 0.2, "source": "x"}, {"path": "b", "score": 0.9, "source": "x"},
            {"path": "a", "score": 0.7, "source": "y"}]
    assert merge_hits(hits) == [{"path": "b", "score": 0.9, "source": "x"}, {"path": "a", "score": 0.7, "source": "y"}]


def test_behavior_logprobs_go_with_the_best_entry_of_a_folded_candidate():
    b_old, b_best = {"token_ids": [1], "logprobs": [-0.1]}, {"token_ids": [2], "logprobs": [-0.2]}
    actions = [
        (b"3-0", act(text="a", reward=0.2)._replace(behavior=b_old)),
        (b"2-0", act(text="a", reward=0.9)._replace(behavior=b_best)),
        (b"1-0", act(text="b", reward=0.1)),
    ]
    (group,) = build_groups(actions, "global")
    by_text = {c["text"]: c for c in group["candidates"]}
    assert by_text["a"]["behavior_logprobs"] == b_best and "behavior_logprobs" not in by_text["b"]
