"""SVG snapshots of the inspect screen at 80x24 and 120x40 on a fixed home: three mined groups with
reward axes and a bow checkpoint with fixed weights (so scores and log-probs are the same everywhere).
Update after an intended change with
`pytest tests/grpo_tui/console/test_console_inspect_snapshots.py --snapshot-update` and look at the SVGs.
"""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
import torch
from console_fixed import fixed_source

from grpo_tui.console.app import GrpoConsole
from grpo_tui.console.inspect import InspectScreen
from policy.bow import BowPolicy
from policy.checkpoint import save_checkpoint

GROUPS = [
    ("Fix the off-by-one in paginate() of pagination.py", ["end = min(start + size, len(items))", "Done.", "end = start + size + 1"]),
    ("Find where the config of net/client.py is loaded", ["net/client.py:42 load_config()", "grep found nothing"]),
    ("Write unit tests for process_batch in sync/worker.py", ["def test_process_batch(): assert process_batch([]) == []",
                                                              "tests added", "pytest: 3 passed"]),
]


@pytest.fixture(scope="module")
def fixed_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = Path(tmp_path_factory.mktemp("snapi")) / "h"
    auto = home / "auto"
    auto.mkdir(parents=True)
    lines = []
    for g, (prompt, texts) in enumerate(GROUPS):
        cands = [{"text": t, "reward": round(((g + 1) * (j + 2)) % 5 / 4, 2),
                  "rewards": {"correctness": round((g + j) % 3 / 2, 2), "style": round((j + 1) % 2 * 0.8, 2)}}
                 for j, t in enumerate(texts)]
        lines.append(orjson.dumps({"prompt": prompt, "candidates": cands}))
    (auto / "global.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    policy = BowPolicy(buckets=4096)
    with torch.no_grad():
        policy.weight.copy_(torch.tensor([((i * 7919) % 200 - 100) / 100 for i in range(4096)]))  # fixed, exact in fp32
    save_checkpoint(auto / "ckpts_global" / "checkpoints", 7, save_weights=policy.save, state={"step": 7},
                    meta={"policy": policy.describe(), "config": {}}, keep=2)
    return home


def _shot(home: Path):
    async def open_inspect(pilot) -> None:
        while pilot.app.polls < 1:
            await pilot.pause(0.02)
        await pilot.app.push_screen(InspectScreen(home))
        screen = pilot.app.screen
        while not (isinstance(screen, InspectScreen) and screen.loaded):
            await pilot.pause(0.02)
            screen = pilot.app.screen
        await pilot.press("enter", "down")  # the candidates, the second one
        while screen.current().key not in screen.analyses:
            await pilot.pause(0.05)
        await pilot.wait_for_scheduled_animations()
        await pilot.pause()

    return open_inspect


def test_inspect_narrow(snap_compare, fixed_home: Path) -> None:
    app = GrpoConsole(fixed_source(), mode="daemon", refresh=3600)
    assert snap_compare(app, terminal_size=(80, 24), run_before=_shot(fixed_home))


def test_inspect_wide(snap_compare, fixed_home: Path) -> None:
    app = GrpoConsole(fixed_source(), mode="daemon", refresh=3600)
    assert snap_compare(app, terminal_size=(120, 40), run_before=_shot(fixed_home))
