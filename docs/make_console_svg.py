"""Regenerate docs/console.svg and docs/inspect.svg: `grpo demo seed` data, one real hierarchical auto
cycle (the tiny transformer policy, so the inspect screen has tokens to colour), then the console's own
screenshots (`App.save_screenshot`) at 120x40: the main screen, and the inspect screen (`i`) on the
newest group's best candidate once the worker has scored it.

    python docs/make_console_svg.py        # a few minutes on a CPU box; uses /tmp/grpo-shot/.grpo
"""

from __future__ import annotations

import asyncio
import shutil
import time
from pathlib import Path

from grpo_tui.cli import main as grpo
from grpo_tui.config import AutoConfig
from grpo_tui.console.app import GrpoConsole
from grpo_tui.console.inspect import InspectScreen
from grpo_tui.console.source import LiveSource
from grpo_tui.daemon import Host

DOCS = Path(__file__).resolve().parent


async def shot(home: Path) -> str:
    app = GrpoConsole(LiveSource(home), mode="daemon", refresh=2)
    async with app.run_test(size=(120, 40)) as pilot:
        while app.polls < 4:  # a few refreshes: the CPU / RAM sparklines have points
            await pilot.pause(0.2)
        await pilot.pause(0.5)
        main = app.save_screenshot("console.svg", str(DOCS))
        await pilot.press("i")
        while not isinstance(app.screen, InspectScreen) or not app.screen.analyses:  # scored by its worker
            await pilot.pause(0.2)
        await pilot.press("enter")  # the candidates list; the detail pane shows the highlighted one's tokens
        await pilot.pause(0.5)
        return main + "\n" + app.save_screenshot("inspect.svg", str(DOCS))


def main() -> None:
    home = Path("/tmp/grpo-shot/.grpo")
    shutil.rmtree(home.parent, ignore_errors=True)
    assert grpo(["--home", str(home), "demo", "seed", "--json"]) == 0
    host = Host(home)
    try:
        cfg = AutoConfig(period_sec=900, mode="hierarchical", steps=20, min_groups=5, device="cpu", model="tiny")
        host.handle({"cmd": "start", "config": cfg.model_dump(mode="json", exclude={"guard"})})
        while not (host.scheduler.state == "waiting" and host.scheduler.cycles_run >= 1):
            time.sleep(1)
        print(asyncio.run(shot(home)))
    finally:
        host.close()
        grpo(["--home", str(home), "store", "stop"])
        shutil.rmtree(home.parent, ignore_errors=True)


if __name__ == "__main__":
    main()
