"""The inspect screen (`i`) and its data module on a real home: `grpo demo seed`, `grpo mine --hierarchical`
into auto/, a real bow run (global, 2 steps) and a real tiny-transformer run (patch, 1 step); online
samples are a `samples.jsonl` in the documented format (docs/formats.md).

Checked: the data module's groups, advantages (equal to policy.advantages.group_advantages), scores and
per-token log-probs (tiny) or listwise log-probs vs the uniform reference (bow), a level without a
checkpoint as a line, not an error; in the console: `i` opens the screen, `/` filters by prompt, enter
selects the candidates, the selected candidate's tokens appear coloured once the scoring worker is
done, escape closes the search and then the screen.
"""

from __future__ import annotations

import asyncio
import math
import time
from pathlib import Path

import orjson
import pytest
from console_fixed import NOW, plain_screen, snapshot

from grpo_tui.cli import main as grpo
from grpo_tui.console.app import GrpoConsole
from grpo_tui.console.inspect import InspectScreen
from grpo_tui.console.inspect_data import analyse, load_groups
from grpo_tui.console.source import FixedSource

SAMPLES = [{"step": s, "prompt": p, "completion": f"def f():\n    return {k}", "rewards": {"format": float(k % 2), "overlong": None},
            "reward": float(k % 2), "advantage": (-1.0) ** (k + 1), "truncated": False, "logged": False}
           for s in (5, 10) for p in ("Write a function returning a number", "Write another tiny function") for k in range(2)]


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = Path(tmp_path_factory.mktemp("insp")) / "h"
    run = ["--home", str(home)]
    assert grpo([*run, "demo", "seed", "--actions", "300", "--days", "1", "--json"]) == 0
    try:
        assert grpo([*run, "mine", "--hierarchical", "--out-dir", str(home / "auto"), "--json"]) == 0
    finally:
        grpo([*run, "store", "stop"])
    auto = home / "auto"
    assert grpo([*run, "train", "--dataset", str(auto / "global.jsonl"), "--model", "bow", "--steps", "2",
                 "--out", str(auto / "ckpts_global"), "--device", "cpu", "--json"]) == 0
    assert grpo([*run, "train", "--dataset", str(auto / "patch.jsonl"), "--model", "tiny", "--steps", "1",
                 "--max-completion-tokens", "16", "--out", str(auto / "ckpts_patch"), "--device", "cpu", "--json"]) == 0
    (auto / "ckpts_global" / "samples.jsonl").write_bytes(b"\n".join(orjson.dumps(r) for r in SAMPLES) + b"\n")
    return home


def test_data_module_reads_groups_and_scores_them(home: Path) -> None:
    from policy.advantages import group_advantages

    groups, notes = load_groups(home)
    assert notes == []
    mined = [g for g in groups if g.source == "mined"]
    assert {g.level for g in mined} == {"global", "signature", "patch"}
    raw = [orjson.loads(line) for line in (home / "auto" / "global.jsonl").read_bytes().splitlines()]
    first = next(g for g in mined if g.level == "global")
    assert first.prompt == raw[-1]["prompt"]  # newest first
    assert [c.reward for c in first.candidates] == [c["reward"] for c in raw[-1]["candidates"]]
    assert first.candidates[0].rewards and set(first.candidates[0].rewards) == {"correctness", "style"}
    expected = group_advantages([[c.reward for c in first.candidates]])[0].tolist()
    assert [c.advantage for c in first.candidates] == pytest.approx(expected)
    samples = [g for g in groups if g.source == "samples"]
    assert len(samples) == 2 and all(g.step == 10 and len(g.candidates) == 2 for g in samples)  # the latest step only
    assert samples[0].candidates[1].rewards == {"format": 1.0, "overlong": None}
    assert [c.advantage for c in samples[0].candidates] == [-1.0, 1.0]

    bow = analyse(home, first)
    assert bow.error is None and bow.kind == "bow" and bow.step == 2 and bow.tokens is None
    g = len(first.candidates)
    assert len(bow.scores) == g and all(len(lp) == 1 for lp in bow.logp)
    assert [r[0] for r in bow.ref_logp] == pytest.approx([-math.log(g)] * g)  # uniform reference
    assert math.fsum(math.exp(lp[0]) for lp in bow.logp) == pytest.approx(1.0, rel=1e-5)  # a listwise distribution
    assert bow.scores[0] != bow.scores[1]  # trained weights, not zeros

    patch = next(g for g in mined if g.level == "patch")
    tiny = analyse(home, patch)
    assert tiny.error is None and tiny.kind == "hf" and tiny.step == 1
    assert tiny.tokens is not None and len(tiny.tokens) == len(patch.candidates)
    for toks, lp, ref in zip(tiny.tokens, tiny.logp, tiny.ref_logp, strict=True):
        assert 0 < len(toks) == len(lp) == len(ref) <= 16
        assert all(x <= 0 for x in lp + ref)
    mean0 = sum(tiny.logp[0]) / len(tiny.logp[0])
    assert tiny.scores[0] == pytest.approx(mean0, abs=1e-4)  # hf score: mean token log-prob

    sig = next(g for g in mined if g.level == "signature")
    missing = analyse(home, sig)
    assert missing.error is not None and "no checkpoint for signature" in missing.error


def test_data_module_on_an_empty_home(tmp_path: Path) -> None:
    groups, notes = load_groups(tmp_path)
    assert groups == [] and "no auto-mode datasets" in notes[0]


async def _until(pilot, predicate, timeout: float = 120.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await pilot.pause(0.05)


def test_inspect_screen_keys(home: Path) -> None:
    asyncio.run(_drive(home))


async def _drive(home: Path) -> None:
    app = GrpoConsole(FixedSource(snapshot(), now=NOW, home=home), mode="daemon", refresh=3600)
    async with app.run_test(size=(120, 40)) as pilot:
        await _until(pilot, lambda: app.polls >= 1, what="first poll")
        await pilot.press("i")
        await _until(pilot, lambda: isinstance(app.screen, InspectScreen), what="the inspect screen")
        screen = app.screen
        assert isinstance(screen, InspectScreen)
        await _until(pilot, lambda: screen.loaded, what="groups loaded")
        total = len(screen.groups)
        assert total > 10 and "group 1/" in plain_screen(app)
        await pilot.press("j")
        assert screen.group_index == 1 and f"group 2/{total}" in plain_screen(app)
        await pilot.press("k")
        assert screen.group_index == 0

        patch = next(g for g in screen.groups if g.level == "patch")
        word = patch.prompt.split()[-1]
        await pilot.press("slash")
        assert screen.focused is not None and screen.focused.id == "inspect-search"
        await pilot.press(*word.upper())  # case-insensitive
        expected = [g for g in screen.groups if word.lower() in g.prompt.lower()]
        assert screen.shown == expected and len(expected) < total
        assert f"/{len(expected)}" in plain_screen(app)
        await pilot.press("enter")  # back to the groups, filter kept
        assert screen.focused is not None and screen.focused.id == "inspect-groups"
        await _until(pilot, lambda: True)
        while screen.current() is not None and screen.current().level != "patch":
            await pilot.press("down")
        assert screen.current() is not None and screen.current().level == "patch"
        await pilot.press("enter")
        assert screen.focused is not None and screen.focused.id == "inspect-cands"
        await pilot.press("down")
        assert screen.cand_index == 1
        await _until(pilot, lambda: screen.current().key in screen.analyses, what="the scoring worker")
        text = plain_screen(app)
        assert "under the policy" in text and "under the reference" in text and "log-prob" in text
        assert "hf step 1" in text
        styles = [str(span.style) for part in screen.detail_parts for span in part.spans]
        assert any("on rgb(" in s for s in styles)  # tokens coloured by log-prob

        await pilot.press("escape")  # candidates -> groups
        assert screen.focused is not None and screen.focused.id == "inspect-groups"
        await pilot.press("slash", "escape")  # closes the search and drops its filter
        assert len(screen.shown) == total
        await pilot.press("escape")
        await _until(pilot, lambda: not isinstance(app.screen, InspectScreen), what="the screen to close")
        await pilot.press("i")  # reopens; the main screen is intact underneath
        await _until(pilot, lambda: isinstance(app.screen, InspectScreen), what="reopen")
        await pilot.press("q")
        await _until(pilot, lambda: not isinstance(app.screen, InspectScreen), what="q closes the screen")
        assert app.is_running
