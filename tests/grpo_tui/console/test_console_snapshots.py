"""SVG snapshots of the console at 80x24 and 120x40 on fixed data (clock, stats and files injected through
`FixedSource`), so they are the same on every run. Update after an intended change with
`pytest tests/grpo_tui/console/test_console_snapshots.py --snapshot-update` and look at the SVGs.
"""

from __future__ import annotations

from console_fixed import fixed_source
from textual.widgets import Input

from grpo_tui.console.app import GrpoConsole
from grpo_tui.console.screens import StartAutoScreen


async def _first_refresh(pilot) -> None:
    while pilot.app.polls < 1:
        await pilot.pause(0.02)
    await pilot.wait_for_scheduled_animations()
    await pilot.pause()


def _app(**kw: bool) -> GrpoConsole:
    return GrpoConsole(fixed_source(**kw), mode="daemon", refresh=3600)  # one poll at mount, none during the shot


def test_running_wide(snap_compare) -> None:
    assert snap_compare(_app(), terminal_size=(120, 40), run_before=_first_refresh)


def test_running_narrow(snap_compare) -> None:
    assert snap_compare(_app(), terminal_size=(80, 24), run_before=_first_refresh)


def test_trouble_wide_nan_no_gpu_guard_failing(snap_compare) -> None:
    assert snap_compare(_app(nan=True, gpu=False, guard_ok=False), terminal_size=(120, 40), run_before=_first_refresh)


def test_no_scheduler_narrow(snap_compare) -> None:
    assert snap_compare(_app(scheduler=False, gpu=False), terminal_size=(80, 24), run_before=_first_refresh)


def test_start_form_narrow(snap_compare) -> None:
    async def open_form(pilot) -> None:
        await _first_refresh(pilot)  # the fixed data's auto mode runs, so `a` would refuse: open the form as `a` does
        await pilot.app.push_screen(StartAutoScreen(pilot.app.snapshot.status["config"]))
        while not (isinstance(pilot.app.screen, StartAutoScreen) and pilot.app.screen.focused is not None
                   and pilot.app.screen.focused.id == "period_sec"):
            await pilot.pause(0.02)
        for field in pilot.app.screen.query(Input):
            field.cursor_blink = False  # a blinking cursor would make the shot depend on timing
        await pilot.wait_for_scheduled_animations()
        await pilot.pause()

    assert snap_compare(_app(), terminal_size=(80, 24), run_before=open_form)


ONLINE = {"model": "tiny", "train": {"mode": "online", "reward_fn": ["builtin:format"], "format_regex": "^def ",
                                     "num_generations": 4, "max_new_tokens": 32}}


def test_start_form_online_wide(snap_compare) -> None:
    """The start form with an online train section (mode select + the train keys line) at 120x40."""

    async def open_form(pilot) -> None:
        await _first_refresh(pilot)
        config = {**pilot.app.snapshot.status["config"], **ONLINE}
        await pilot.app.push_screen(StartAutoScreen(config))
        while not (isinstance(pilot.app.screen, StartAutoScreen) and pilot.app.screen.focused is not None):
            await pilot.pause(0.02)
        for field in pilot.app.screen.query(Input):
            field.cursor_blink = False
        await pilot.wait_for_scheduled_animations()
        await pilot.pause()

    assert snap_compare(_app(), terminal_size=(120, 40), run_before=open_form)
