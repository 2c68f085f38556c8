"""The console without a scheduler: an empty home, NaN metrics on disk, a failing source, read-only mode,
NO_COLOR. Real files and the real LiveSource; no scheduler runs, so every panel must say so and keep going.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import orjson
import pytest
from console_fixed import fixed_source, plain_screen

from grpo_tui.console.app import GrpoConsole, main, open_console
from grpo_tui.console.screens import StartAutoScreen
from grpo_tui.console.source import LiveSource


async def _until(pilot, predicate, timeout: float = 30.0) -> None:
    """Wait for `predicate`, then for the screen to settle (layout and paint done)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        await pilot.pause(0.05)
    await pilot.wait_for_scheduled_animations()
    await pilot.pause()


@pytest.fixture()
def short_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return Path(tmp_path_factory.mktemp("off")) / "h"


def test_empty_home_without_scheduler_says_so_in_every_panel(short_home: Path) -> None:
    async def drive() -> str:
        app = GrpoConsole(LiveSource(short_home), readonly=True, mode="no daemon")
        async with app.run_test(size=(120, 40)) as pilot:
            await _until(pilot, lambda: app.polls >= 1)
            assert app.snapshot.status is None and app.snapshot.stats_origin == "local"
            assert app.check_action("start_auto", ()) is None and app.check_action("stop_auto", ()) is None
            await pilot.press("a", "s", "g", "m", "t")
            await pilot.pause(0.3)
            assert not isinstance(app.screen, StartAutoScreen) and app.screen is app.screen_stack[0]
            assert {a.key for a in app.alerts} >= {"scheduler"}
            return plain_screen(app)

    text = asyncio.run(drive())
    for words in ("no scheduler", "no training metrics yet", "no checkpoints yet", "no logs yet",
                  "no scheduler", "read-only", "measured here"):
        assert words in text, words
    assert not short_home.exists()  # a read-only console creates nothing


def test_nan_and_inf_metrics_render_and_alert(short_home: Path) -> None:
    path = short_home / "auto" / "ckpts_global" / "metrics.jsonl"
    path.parent.mkdir(parents=True)
    good = [orjson.dumps({"step": i, "loss": 0.5 / i, "kl": 0.01, "reward_mean": 0.4, "grad_norm": 1.0,
                          "lr": 1e-4, "clip_frac_low": 0.0, "clip_frac_high": 0.0}) for i in range(1, 9)]
    bad = [b'{"step": 9, "loss": null, "kl": null, "reward_mean": 0.4, "grad_norm": null, "lr": 1e-4}',
           b'{"step": 10, "loss": NaN, "kl": Infinity, "reward_mean": 0.4, "grad_norm": -Infinity, "lr": 1e-4}']
    path.write_bytes(b"\n".join(good + bad) + b"\n")

    async def drive() -> tuple[str, list[str]]:
        app = GrpoConsole(LiveSource(short_home), readonly=True)
        async with app.run_test(size=(120, 40)) as pilot:
            await _until(pilot, lambda: app.polls >= 1)
            await pilot.pause(0.2)
            toasts = [n.message for n in app._notifications]
            assert [a.text for a in app.alerts if a.key == "nan:global"] == ["global: loss, kl, grad_norm NaN/inf at step 10"]
            return plain_screen(app), toasts

    text, toasts = asyncio.run(drive())
    assert "NaN/inf" in text and "×" in text  # the value and the sparkline points
    assert "step 10" in text
    assert any("NaN/inf at step 10" in t for t in toasts)
    assert "✗ ERROR global:" in text


class BrokenSource:
    """A source whose refresh fails the way a bug would: the console must notify and keep running."""

    def __init__(self, home: Path) -> None:
        self.home, self.clock, self.calls = home, time.time, 0

    def poll(self):
        self.calls += 1
        raise RuntimeError("disk on fire")

    def request(self, cmd: str, **fields):
        raise OSError("socket gone")


def test_a_failing_refresh_or_request_becomes_a_notification(short_home: Path) -> None:
    async def drive() -> list[str]:
        source = BrokenSource(short_home)
        app = GrpoConsole(source, refresh=0.5)
        async with app.run_test(size=(80, 24)) as pilot:
            await _until(pilot, lambda: source.calls >= 2)  # it keeps polling after a failure
            app.send("stop", lambda r: "stopped")
            await _until(pilot, lambda: any("socket gone" in n.message for n in app._notifications))
            assert app.is_running
            return [n.message for n in app._notifications]

    messages = asyncio.run(drive())
    assert any("refresh failed: RuntimeError: disk on fire" in m for m in messages)


def test_no_color_is_respected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NO_COLOR", "1")
    app = GrpoConsole(fixed_source(guard_ok=False))
    assert app.no_color

    async def drive() -> str:
        async with app.run_test(size=(120, 40)) as pilot:
            await _until(pilot, lambda: app.polls >= 1)
            return plain_screen(app)

    text = asyncio.run(drive())
    assert "✗ FAIL disk" in text and "✓ ok   ram" in text  # symbol + word, never colour alone


def test_readonly_console_starts_no_daemon(short_home: Path) -> None:
    source, mode, on_close = open_console(short_home, in_process=False, readonly=True)
    assert mode.startswith("no daemon") and on_close is None
    assert not (short_home / "control.sock").exists()


def test_in_process_refused_while_another_host_serves_the_home(short_home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from grpo_tui.daemon import Host

    host = Host(short_home)
    try:
        assert main(["--home", str(short_home), "--in-process"]) == 1
    finally:
        host.close()
    assert "another scheduler host" in capsys.readouterr().err
    assert main(["--help"]) == 0


def test_in_process_hosts_the_scheduler_until_closed(short_home: Path) -> None:
    source, mode, on_close = open_console(short_home, in_process=True, readonly=False)
    try:
        assert mode == "in-process" and source.request("status")["state"] == "idle"
    finally:
        assert on_close is not None
        on_close()
    assert not (short_home / "control.sock").exists()
    assert "no scheduler" in source.request("status")["error"]
