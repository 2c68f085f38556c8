"""Synthetic preference datasets for the policy tests (written as real group JSONL files).

`write_topic_groups`: prompt-dependent preferences for bow. Each prompt asks for one of TOPICS; a good
candidate uses that topic's answer word, a bad one the answer word of another topic, so no candidate
word is good or bad on its own: only (prompt word, candidate word) pairs separate them.
`write_byte_groups`: for the tiny LM. Candidates are random letter strings; good ones carry "!" where
bad ones carry "?", so a policy that learns to prefer the "!" byte ranks them right.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

TOPICS = {
    "sort": "sorted", "read": "open", "parse": "loads", "fetch": "requests",
    "test": "pytest", "plot": "matplotlib", "zip": "archive", "hash": "sha256",
}  # fmt: skip
FILLER = "the a list file data value result thing item code module function please quickly now".split()


def write_topic_groups(path: Path, n: int, seed: int, k: int = 4) -> Path:
    rng = random.Random(seed)
    topics = sorted(TOPICS)
    with open(path, "w", encoding="utf-8") as f:
        for _ in range(n):
            topic = rng.choice(topics)
            prompt = f"{topic} {rng.choice(FILLER)}"
            cands = []
            for i in range(k):
                good = i < k // 2
                word = TOPICS[topic] if good else TOPICS[rng.choice([t for t in topics if t != topic])]
                words = rng.sample(FILLER, 2) + [word]
                rng.shuffle(words)
                cands.append({"text": " ".join(words), "reward": 1.0 if good else 0.0})
            rng.shuffle(cands)
            f.write(json.dumps({"prompt": prompt, "candidates": cands, "meta": {"topic": topic}}) + "\n")
    return path


def write_byte_groups(path: Path, n: int, seed: int, k: int = 4, length: int = 8) -> Path:
    rng = random.Random(seed)
    letters = "abcdefghijklmnop"
    with open(path, "w", encoding="utf-8") as f:
        for i in range(n):
            cands = []
            for j in range(k):
                good = j < k // 2
                body = "".join(rng.choice(letters) for _ in range(length))
                cut = rng.randrange(1, length)
                text = body[:cut] + ("!" if good else "?") + body[cut:]
                cands.append({"text": text, "reward": 1.0 if good else 0.0})
            rng.shuffle(cands)
            f.write(json.dumps({"prompt": f"task {i}: answer", "candidates": cands}) + "\n")
    return path
