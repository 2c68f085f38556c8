"""Operator fixes (issue 16): scrolling keys and hints, visible form focus, `a` refused while auto mode runs
and starting the daemon when none runs, history read from disk without a scheduler, one Quit in the
palette, screenshots under the home, nothing cut at 120x40, honest quit messages.

Pilot on fixed data (`FixedSource`) where the data is the point, and on a real home with a real
`LiveSource` (and a real spawned daemon) where the scheduler is.
"""

from __future__ import annotations

import asyncio
import os
import stat
import time
from dataclasses import replace
from functools import partial
from pathlib import Path

import pytest
from console_fixed import NOW, fixed_source, plain_screen, snapshot
from textual.containers import VerticalScroll
from textual.widgets import Input

from grpo_tui.console.app import GrpoConsole
from grpo_tui.console.screens import GuardScreen, HelpScreen, StartAutoScreen
from grpo_tui.console.source import FixedSource, LiveSource
from grpo_tui.context import secure_home
from grpo_tui.control import ControlClient, probe, socket_path
from grpo_tui.cycles import append_cycle


async def _until(pilot, predicate, what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await pilot.pause(0.05)
    await pilot.pause()


def _idle_source() -> FixedSource:
    source = fixed_source()
    source.snapshot.status["state"] = "idle"
    return source


def test_panels_scroll_with_page_keys_and_j_k_and_say_so_at_80x24() -> None:
    async def drive() -> None:
        app = GrpoConsole(fixed_source(), mode="daemon", refresh=3600)
        async with app.run_test(size=(80, 24)) as pilot:
            await _until(pilot, lambda: app.polls >= 1, "the first refresh")
            main = app.query_one("#main", VerticalScroll)
            await _until(pilot, lambda: main.max_scroll_y > 0, "the layout")
            app.apply(app.snapshot)  # the hint follows the layout
            assert "PgUp/PgDn j/k scroll" in plain_screen(app).splitlines()[0]
            await pilot.press("pagedown")
            await pilot.pause()
            assert main.scroll_y > 0
            await pilot.press("end")
            await pilot.pause()
            assert main.scroll_y == main.max_scroll_y
            await pilot.press("home")
            await pilot.pause()
            assert main.scroll_y == 0
            await pilot.press("j")
            await pilot.pause()
            assert main.scroll_y == 1
            await pilot.press("k")
            await pilot.pause()
            assert main.scroll_y == 0
            await pilot.press("question_mark")
            await _until(pilot, lambda: isinstance(app.screen, HelpScreen), "help")
            assert any(row[0] == "pagedown / pageup / home / end / j / k" for row in app.screen.rows)
            assert "panels scroll with pagedown / pageup / home / end and j / k" in " ".join(plain_screen(app).replace("█", " ").split())

    asyncio.run(drive())
    readme = (Path(__file__).parents[3] / "README.md").read_text()
    assert "`pagedown` / `pageup` / `home` / `end`" in readme and "`j` / `k`" in readme


def test_forms_mark_the_focused_field_in_text_and_focus_the_invalid_one() -> None:
    async def drive() -> None:
        app = GrpoConsole(_idle_source(), mode="daemon", refresh=3600)
        async with app.run_test(size=(80, 24)) as pilot:
            await _until(pilot, lambda: app.polls >= 1, "the first refresh")
            await pilot.press("a")
            await _until(pilot, lambda: isinstance(app.screen, StartAutoScreen) and app.screen.focused is not None,
                         "the start form")
            form = app.screen
            assert "▶ period s" in plain_screen(app) and "▶ steps" not in plain_screen(app)
            await pilot.press("tab")
            await pilot.pause()
            assert "▶ steps/level" in plain_screen(app) and "▶ period s" not in plain_screen(app)
            form.query_one("#min_groups", Input).value = "many"
            form.query_one("#period_sec", Input).focus()
            await pilot.press("enter")
            await pilot.pause()
            assert isinstance(app.screen, StartAutoScreen) and app.screen.focused.id == "min_groups"
            assert "▶ min groups" in plain_screen(app) and "invalid: min_groups" in plain_screen(app)
            form.query_one("#min_groups", Input).value = "2"
            form.query_one("#train_keys", Input).value = "reward_fn: [oops"
            form.query_one("#period_sec", Input).focus()
            await pilot.press("enter")
            await pilot.pause()
            assert app.screen.focused.id == "train_keys" and "▶ train keys" in plain_screen(app)
            await pilot.press("escape")
            await _until(pilot, lambda: not isinstance(app.screen, StartAutoScreen), "the form to close")

            await pilot.press("g")
            await _until(pilot, lambda: isinstance(app.screen, GuardScreen) and app.screen.focused is not None,
                         "the guard form")
            assert "▶ min free disk GB" in plain_screen(app)
            app.screen.query_one("#min_ram_gb", Input).value = "-3"
            await pilot.press("enter")
            await pilot.pause()
            assert app.screen.focused.id == "min_ram_gb" and "▶ min free RAM GB" in plain_screen(app)

    asyncio.run(drive())


def test_a_while_auto_mode_runs_is_refused_without_the_form() -> None:
    async def drive() -> list[str]:
        app = GrpoConsole(fixed_source(), mode="daemon", refresh=3600)  # the fixed data's auto mode runs
        async with app.run_test(size=(120, 40)) as pilot:
            await _until(pilot, lambda: app.polls >= 1, "the first refresh")
            await pilot.press("a")
            await pilot.pause(0.3)
            assert not isinstance(app.screen, StartAutoScreen) and app.source.requests == []
            return [n.message for n in app._notifications]

    assert any("auto mode is running; s stops it" in m for m in asyncio.run(drive()))


def test_the_palette_has_one_quit() -> None:
    async def drive() -> list[str]:
        app = GrpoConsole(fixed_source(), mode="daemon", refresh=3600)
        async with app.run_test(size=(120, 40)) as pilot:
            await _until(pilot, lambda: app.polls >= 1, "the first refresh")
            return [c.title for c in app.get_system_commands(app.screen)]

    titles = asyncio.run(drive())
    assert titles.count("Quit") == 1 and "Screenshot" in titles


def test_screenshot_goes_to_the_home_screenshots_folder(tmp_path: Path) -> None:
    home = secure_home(tmp_path / "h")

    async def drive() -> list[str]:
        app = GrpoConsole(FixedSource(snapshot(), now=NOW, home=home), mode="daemon", refresh=3600)
        async with app.run_test(size=(80, 24)) as pilot:
            await _until(pilot, lambda: app.polls >= 1, "the first refresh")
            app.deliver_screenshot()  # what ctrl+p → Screenshot runs
            await _until(pilot, lambda: any("Saved screenshot" in str(n.message) for n in app._notifications),
                         "the screenshot notification")
            return [str(n.message) for n in app._notifications]

    messages = asyncio.run(drive())
    folder = home / "screenshots"
    shots = list(folder.glob("*.svg"))
    assert len(shots) == 1 and shots[0].read_text().startswith("<svg")
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert any(str(folder) in m for m in messages)


def test_nothing_is_cut_at_120x40_and_the_cycle_number_column_is_narrow() -> None:
    source = fixed_source()
    cycles = source.snapshot.status["cycles"]
    cycles[-1]["reason"] = "too few new groups (global 0 < 20, signature 0 < 20, patch 0 < 20): nothing to train"
    source.snapshot.status["config"]["train"] = {"mode": "online", "model": "/data/models/qwen2.5-coder-0.5b",
                                                 "steps": 400}

    async def drive() -> dict[str, tuple[int, list[str]]]:
        app = GrpoConsole(source, mode="daemon", refresh=3600)
        async with app.run_test(size=(120, 40)) as pilot:
            await _until(pilot, lambda: app.polls >= 1, "the first refresh")
            await pilot.pause(0.3)
            out = {}
            for name in ("auto", "cycles"):
                panel = app.query_one(f"#{name}")
                out[name] = (panel.content_size.width, panel.content.plain.splitlines())
            return out

    panels = asyncio.run(drive())
    for name, (width, rows) in panels.items():
        assert all(len(line) <= width for line in rows), (name, width, rows)
    auto = " ".join(" ".join(line.split()) for line in panels["auto"][1])
    assert "400 online steps · /data/models/qwen2.5-coder-0.5b · ≥20 groups" in auto
    assert cycles[-1]["reason"] in auto
    rows = panels["cycles"][1]
    assert rows[0].startswith("#  outcome")  # the column is as wide as "12", no wider
    assert "nothing to train" in " ".join(rows)


def _fixed_app(status_state: str | None, readonly: bool = False, mode: str = "daemon", job: str | None = None) -> GrpoConsole:
    snap = snapshot(scheduler=status_state is not None)
    if snap.status is not None:
        snap.status.update(state=status_state, job=job)
    app = GrpoConsole(FixedSource(snap, now=NOW), mode=mode, readonly=readonly)
    app.snapshot = snap
    return app


def test_quit_messages_are_true_for_every_mode() -> None:
    running = _fixed_app("waiting").quit_message()
    assert "training continues in the scheduler daemon (pid 4200), auto mode waiting" in running
    idle = _fixed_app("idle").quit_message()
    assert "auto mode is off" in idle and "training continues" not in idle and "pid 4200" in idle
    idle_job = _fixed_app("idle", job="train").quit_message()
    assert "its train job goes on" in idle_job
    for readonly in (True, False):
        gone = _fixed_app(None, readonly=readonly, mode="no daemon").quit_message()
        assert "no scheduler was running" in gone and "nothing is training" in gone and "continues" not in gone
        assert ("read-only" in gone) == readonly
    ro_attached = _fixed_app("running", readonly=True).quit_message()
    assert "training continues" in ro_attached
    assert "stopped with it" in _fixed_app("running", mode="in-process").quit_message()
    never = GrpoConsole(fixed_source(), mode="daemon").quit_message()
    assert "nothing was started or stopped" in never


@pytest.fixture()
def short_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return Path(tmp_path_factory.mktemp("op")) / "h"


def test_without_a_scheduler_cycles_and_checkpoints_come_from_disk(short_home: Path) -> None:
    secure_home(short_home)
    now = time.time()
    append_cycle(short_home, {"cycle": 1, "job": "cycle", "start": now - 300, "end": now - 200, "outcome": "ok",
                              "reason": "trained global"})
    append_cycle(short_home, {"cycle": 2, "job": "cycle", "start": now - 100, "end": now - 50, "outcome": "skipped",
                              "reason": "too few new groups (global 0 < 20)"})
    ckpt = short_home / "auto" / "ckpts_global" / "checkpoints" / "step_000003"
    ckpt.mkdir(parents=True)
    (ckpt / "meta.json").write_text('{"step": 3, "metrics": {"loss": 0.25}}')

    snap = LiveSource(short_home).poll()
    assert snap.status is None and [c["cycle"] for c in snap.cycles] == [1, 2]

    async def drive() -> str:
        app = GrpoConsole(LiveSource(short_home), readonly=True, mode="no daemon", refresh=3600)
        async with app.run_test(size=(120, 40)) as pilot:
            await _until(pilot, lambda: app.polls >= 1, "the first refresh")
            await pilot.pause(0.3)
            cycles = " ".join(app.query_one("#cycles").content.plain.split())
            return cycles, plain_screen(app)

    cycles, text = asyncio.run(drive())
    assert "too few new groups (global 0 < 20)" in cycles and "trained global" in cycles and "○ skipped" in cycles
    assert "from cycles.jsonl" in text and "no checkpoints yet" not in text
    assert any(line.split("│")[-2].split()[:2] == ["global", "3"] for line in text.splitlines() if line.count("│") >= 3)


def test_a_with_no_scheduler_starts_the_daemon_then_opens_the_form(short_home: Path) -> None:
    from grpo_tui.daemon import spawn_daemon

    secure_home(short_home)
    pids: list[int] = []

    def start() -> int:
        pids.append(spawn_daemon(short_home))
        return pids[-1]

    async def drive() -> None:
        app = GrpoConsole(LiveSource(short_home), mode="no daemon", refresh=1.0, auto_defaults={"model": "bow"},
                          start_scheduler=start)
        async with app.run_test(size=(120, 40)) as pilot:
            await _until(pilot, lambda: app.polls >= 1, "the first refresh")
            assert app.snapshot.status is None
            assert app.check_action("start_auto", ()) is True and app.check_action("mine", ()) is None
            assert "a starts one" in (app.start_blocked() or "")
            await pilot.press("a")
            await _until(pilot, lambda: isinstance(app.screen, StartAutoScreen), "the form after the daemon", 60)
            assert probe(socket_path(short_home)) and app.snapshot.status["pid"] == pids[0]
            await pilot.press("escape")
            await pilot.press("q")
            await _until(pilot, lambda: not app.is_running, "the console to exit")
        assert f"pid {pids[0]}" in (app.return_value or "") and "auto mode is off" in app.return_value

    try:
        asyncio.run(drive())
    finally:
        if probe(socket_path(short_home)):
            ControlClient(short_home).request("shutdown")
        deadline = time.monotonic() + 30
        while pids and time.monotonic() < deadline and _alive(pids[0]):
            time.sleep(0.1)
    assert len(pids) == 1


def test_a_read_only_console_never_starts_a_daemon(short_home: Path) -> None:
    app = GrpoConsole(FixedSource(replace(snapshot(scheduler=False)), now=NOW), readonly=True,
                      start_scheduler=partial(pytest.fail, "a read-only console started a daemon"))
    app.snapshot = snapshot(scheduler=False)
    assert app.start_scheduler is None and app.check_action("start_auto", ()) is None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie (our child, not yet reaped) counts as gone
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
