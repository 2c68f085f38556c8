"""Reward functions for the online tests, loaded by spec (`path/to/online_task.py:NAME`) as a user's would be.

The task is prompt-conditional: each prompt is a letter repeated (column `target`: the letter) and the
reward is the share of the completion's characters equal to it, so a policy that ignores the prompt gets at most the mean
over targets of hitting the one letter it always writes: 1 / (number of targets).
"""

from __future__ import annotations


def letter_rate(prompts, completions, target, **_):
    return [sum(ch == t for ch in c) / max(len(c), 1) for c, t in zip(completions, target)]


def length(prompts, completions, **_):
    return [float(len(c)) for c in completions]


def explode(prompts, completions, **_):
    return [1.0 / (len(c) > 10**9) for c in completions]  # ZeroDivisionError on every sample



def explode_on_o(prompts, completions, **_):
    """Fails only for the 'o' prompt, so only the rank sampling it fails (tests/policy/test_distributed.py)."""
    if any(p.startswith("o") for p in prompts):
        raise ValueError("no reward for o")
    return [0.5] * len(completions)
