"""Pilot tests: every binding of the console against a real in-process scheduler host (`Host`) on a home
seeded with `grpo demo seed` (the embedded store), training the `bow` policy in real child processes.

Each key is checked by the state change it causes on the scheduler or in the home's files, not by the
screen alone: `a` starts auto mode and a cycle record appears, `s` stops it, `m` / `t` leave a mine /
train job record, `g` rewrites guard.json, a failing guard refuses `a`, `p` stops the polling, `+` /
`-` change the refresh period, `?` / F1 open the help, ctrl+p the command palette, `a` while auto mode
runs is refused without the form, `i` shows the cycle's mined groups scored by the new checkpoint, a
screenshot lands under the home, and `q` exits with the scheduler still running.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from textual.command import CommandPalette
from textual.widgets import Input

from console_fixed import plain_screen

from grpo_tui.cli import main as grpo
from grpo_tui.console.app import GrpoConsole
from grpo_tui.console.inspect import InspectScreen
from grpo_tui.console.screens import GuardScreen, HelpScreen, StartAutoScreen
from grpo_tui.console.source import LiveSource
from grpo_tui.cycles import read_cycles
from grpo_tui.daemon import Host

FAST = {"period_sec": 3600, "steps": 3, "min_groups": 1, "mode": "single", "hours": 48, "model": "bow", "device": "cpu"}


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory):
    """A short home (Unix socket paths are limited to ~100 bytes) with demo actions in its embedded store."""
    home = Path(tmp_path_factory.mktemp("tui")) / "h"
    assert grpo(["--home", str(home), "demo", "seed", "--actions", "300", "--days", "1", "--json"]) == 0
    yield home
    grpo(["--home", str(home), "store", "stop"])


async def until(pilot, predicate, timeout: float = 120.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await pilot.pause(0.1)


def records(home: Path) -> list[dict[str, Any]]:
    return read_cycles(home)


def test_every_binding_against_a_real_scheduler(seeded: Path) -> None:
    asyncio.run(_drive_every_binding(seeded))


async def _drive_every_binding(home: Path) -> None:
    host = Host(home)
    try:
        app = GrpoConsole(LiveSource(home), refresh=1.0, mode="daemon", auto_defaults=FAST)
        async with app.run_test(size=(120, 40)) as pilot:
            await until(pilot, lambda: app.polls >= 1, 30, "the first refresh")
            assert app.snapshot.state == "idle" and app.check_action("start_auto", ()) is True

            # a: the form, validated; a bad value keeps it open with the reason
            await pilot.press("a")
            await until(pilot, lambda: isinstance(app.screen, StartAutoScreen), 5, "the start form")
            form = app.screen
            form.query_one("#steps", Input).value = "zero"
            await pilot.press("enter")
            await pilot.pause(0.2)
            assert isinstance(app.screen, StartAutoScreen)
            assert "steps" in str(form.query_one("#form-error").render())
            form.query_one("#steps", Input).value = "3"
            form.query_one("#period_sec", Input).focus()
            await pilot.press("enter")
            await until(pilot, lambda: not isinstance(app.screen, StartAutoScreen), 5, "the form to close")
            await until(pilot, lambda: host.scheduler.state in ("running", "waiting"), 10, "auto mode on")
            assert host.scheduler.cfg.steps == 3 and host.scheduler.cfg.period_sec == 3600
            await until(pilot, lambda: any(r.get("job") == "cycle" for r in records(home)), 180, "a cycle record")
            cycle = records(home)[-1]
            assert cycle["outcome"] == "ok", cycle
            assert cycle["trained"]["global"]["to_step"] == 3
            await until(pilot, lambda: bool((app.snapshot.status or {}).get("cycles")), 10, "the cycle on screen")
            assert app.snapshot.metrics.get("global"), "metrics of the trained level are shown"
            assert app.snapshot.checkpoints, "the checkpoint is listed"

            # a while auto mode runs: refused up front (a notification), no form
            await pilot.press("a")
            await until(pilot, lambda: any("s stops it" in str(n.message) for n in app._notifications), 5, "the refusal")
            assert not isinstance(app.screen, StartAutoScreen)

            # i: the inspect screen shows this cycle's mined groups, scored by the level's new checkpoint
            prompts = [orjson.loads(line)["prompt"] for line in (home / "auto" / "global.jsonl").read_text().splitlines()]
            await pilot.press("i")
            await until(pilot, lambda: isinstance(app.screen, InspectScreen) and bool(app.screen.analyses), 120, "scores")
            screen = plain_screen(app)
            assert any(p[:40] in screen for p in prompts) and "bow step 3" in screen
            assert "adv" in screen and "score" in screen
            await pilot.press("escape")
            await until(pilot, lambda: not isinstance(app.screen, InspectScreen), 5, "the inspect screen to close")

            # ctrl+p -> screenshot: under the home, not ~/Downloads
            app.deliver_screenshot()
            await until(pilot, lambda: list((home / "screenshots").glob("*.svg")), 10, "the screenshot file")

            # s: stop
            await pilot.press("s")
            await until(pilot, lambda: host.scheduler.state == "idle", 30, "auto mode off")

            # t: train once on the latest dataset (resumes the level's checkpoint)
            n = len(records(home))
            await pilot.press("t")
            await until(pilot, lambda: len(records(home)) > n and host.scheduler.job is None, 180, "a train record")
            train = records(home)[-1]
            assert train["job"] == "train" and train["outcome"] == "ok", train
            assert train["trained"]["global"]["from_step"] == 3 and train["trained"]["global"]["to_step"] == 6

            # m: one-off mine job
            n = len(records(home))
            await pilot.press("m")
            await until(pilot, lambda: len(records(home)) > n and host.scheduler.job is None, 120, "a mine record")
            assert records(home)[-1]["job"] == "mine" and records(home)[-1]["outcome"] == "ok"

            # g: guard thresholds -> guard.json; a failing guard disables a / m / t with the reason
            await pilot.press("g")
            await until(pilot, lambda: isinstance(app.screen, GuardScreen), 5, "the guard form")
            app.screen.query_one("#min_free_gb", Input).value = "1000000"
            await pilot.press("enter")
            await until(pilot, lambda: (home / "guard.json").exists()
                        and orjson.loads((home / "guard.json").read_bytes())["min_free_gb"] == 1_000_000, 10, "guard.json")
            await until(pilot, lambda: app.snapshot.guard and not app.snapshot.guard["ok"], 10, "the failing guard")
            assert app.check_action("start_auto", ()) is None and app.check_action("mine", ()) is None
            assert "guard FAIL" in (app.start_blocked() or "")
            n = len(records(home))
            await pilot.press("a")
            await pilot.press("m")
            await pilot.pause(1.0)
            assert not isinstance(app.screen, StartAutoScreen)
            assert host.scheduler.state == "idle" and host.scheduler.job is None and len(records(home)) == n
            assert any(a.key == "guard" for a in app.alerts)
            assert "guard FAIL" in plain_screen(app)
            await pilot.press("g")
            await until(pilot, lambda: isinstance(app.screen, GuardScreen), 5, "the guard form")
            app.screen.query_one("#min_free_gb", Input).value = "0"
            await pilot.press("enter")
            await until(pilot, lambda: app.snapshot.guard["ok"] and app.check_action("start_auto", ()) is True, 10,
                        "the guard to pass again")

            # p pauses updates; p again resumes
            await pilot.press("p")
            assert app.paused
            polls = app.polls
            await pilot.pause(2.5)
            assert app.polls == polls
            await pilot.press("p")
            await until(pilot, lambda: app.polls > polls, 10, "updates to resume")

            # + / - change the refresh period
            await pilot.press("plus")
            assert app.refresh_s == 0.5 and "refresh 0.5s" in app.status_line
            await pilot.press("minus", "minus")
            assert app.refresh_s == 2.0

            # ? and F1: help from the bindings; ctrl+p: the command palette
            for key in ("question_mark", "f1"):
                await pilot.press(key)
                await until(pilot, lambda: isinstance(app.screen, HelpScreen), 5, "help")
                assert {row[1] for row in app.screen.rows} >= {b.tooltip for b in app.BINDINGS}
                await pilot.press("escape")
                await until(pilot, lambda: not isinstance(app.screen, HelpScreen), 5, "help to close")
            await pilot.press("ctrl+p")
            await until(pilot, lambda: isinstance(app.screen, CommandPalette), 5, "the command palette")
            await pilot.press("escape")
            await until(pilot, lambda: not isinstance(app.screen, CommandPalette), 5, "the palette to close")

            # auto mode on again, then q: the console exits, the scheduler keeps running
            await pilot.press("a")
            await until(pilot, lambda: isinstance(app.screen, StartAutoScreen), 5, "the start form")
            await pilot.press("enter")
            await until(pilot, lambda: host.scheduler.state in ("running", "waiting"), 10, "auto mode on")
            await pilot.press("q")
            await until(pilot, lambda: not app.is_running, 10, "the console to exit")
        assert app.return_value and "training continues" in app.return_value
        await asyncio.sleep(0.5)
        assert host.scheduler.state in ("running", "waiting")
        status = LiveSource(home).request("status")
        assert status["ok"] and status["state"] in ("running", "waiting")
    finally:
        host.close()
    assert host.scheduler.state == "idle"
