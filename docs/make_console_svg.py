"""Regenerate docs/console.svg: `grpo demo seed` data, one real hierarchical auto cycle (bow policy),
then the console's own screenshot (`App.save_screenshot`) at 120x40.

    python docs/make_console_svg.py        # about a minute on a CPU box; uses /tmp/grpo-shot/.grpo
"""

from __future__ import annotations

import asyncio
import shutil
import time
from pathlib import Path

from grpo_tui.cli import main as grpo
from grpo_tui.config import AutoConfig
from grpo_tui.console.app import GrpoConsole
from grpo_tui.console.source import LiveSource
from grpo_tui.daemon import Host

DOCS = Path(__file__).resolve().parent


async def shot(home: Path) -> str:
    app = GrpoConsole(LiveSource(home), mode="daemon", refresh=2)
    async with app.run_test(size=(120, 40)) as pilot:
        while app.polls < 4:  # a few refreshes: the CPU / RAM sparklines have points
            await pilot.pause(0.2)
        await pilot.pause(0.5)
        return app.save_screenshot("console.svg", str(DOCS))


def main() -> None:
    home = Path("/tmp/grpo-shot/.grpo")
    shutil.rmtree(home.parent, ignore_errors=True)
    assert grpo(["--home", str(home), "demo", "seed", "--json"]) == 0
    host = Host(home)
    try:
        cfg = AutoConfig(period_sec=900, mode="hierarchical", steps=40, min_groups=5, device="cpu")
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
