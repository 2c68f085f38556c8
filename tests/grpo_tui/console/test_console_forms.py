"""The start form's `train:` section, driven with Pilot on fixed data (`FixedSource` records the request).

The form shows a train mode select and a line of train keys; what it submits is what `AutoConfig`
validates, and an invalid section (online with the bow policy, broken YAML, a misspelt or cycle-owned
key) keeps the form open with the reason.
"""

from __future__ import annotations

import asyncio

from console_fixed import fixed_source, plain_screen
from textual.widgets import Input, Select

from grpo_tui.config import AutoConfig
from grpo_tui.console.app import GrpoConsole
from grpo_tui.console.screens import StartAutoScreen


async def _until(pilot, predicate, what: str, timeout: float = 10.0) -> None:
    for _ in range(int(timeout / 0.02)):
        if predicate():
            return
        await pilot.pause(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def test_start_form_shows_validates_and_submits_the_train_section() -> None:
    source = fixed_source()
    source.snapshot.status["state"] = "idle"  # `a` refuses while auto mode runs

    async def drive() -> None:
        app = GrpoConsole(source, mode="daemon", refresh=3600)
        async with app.run_test(size=(80, 24)) as pilot:
            await _until(pilot, lambda: app.polls >= 1, "the first refresh")
            await pilot.press("a")
            await _until(pilot, lambda: isinstance(app.screen, StartAutoScreen), "the start form")
            form = app.screen
            await pilot.pause()
            text = plain_screen(app)
            assert "train mode" in text and "offline: the mined candidates" in text and "train keys" in text

            def error() -> str:
                return str(form.query_one("#form-error").render())

            async def submit() -> None:
                form.query_one("#period_sec", Input).focus()
                await pilot.press("enter")
                await pilot.pause(0.1)

            form.query_one("#train_mode", Select).value = "online"
            form.query_one("#train_keys", Input).value = "reward_fn: [builtin:format]"
            await submit()  # the fixed config's policy is bow: online needs a generative model
            assert isinstance(app.screen, StartAutoScreen) and "not bow" in error()

            form.query_one("#model", Input).value = "tiny"
            form.query_one("#train_keys", Input).value = "reward_fn: [builtin:format"
            await submit()
            assert isinstance(app.screen, StartAutoScreen) and "train keys" in error()

            form.query_one("#train_keys", Input).value = "reward_fn: [builtin:format], num_generation: 4"
            await submit()
            assert "unknown key 'train.num_generation'; did you mean 'num_generations'?" in error()

            form.query_one("#train_keys", Input).value = "reward_fn: [builtin:format], dataset: x.jsonl"
            await submit()
            assert "train.dataset is set by the auto cycle" in error()

            keys = form.query_one("#train_keys", Input)
            keys.value = ""
            keys.focus()
            await pilot.press(*'reward_fn: [builtin:format], format_regex: "^def ", num_generations: 4')
            await pilot.press("enter")
            await _until(pilot, lambda: not isinstance(app.screen, StartAutoScreen), "the form to close")
            await _until(pilot, lambda: bool(source.requests), "the start request")

    asyncio.run(drive())
    cmd, fields = source.requests[-1]
    assert cmd == "start"
    train = fields["config"]["train"]
    assert train == {"mode": "online", "reward_fn": ["builtin:format"], "format_regex": "^def ", "num_generations": 4}
    cfg = AutoConfig.model_validate(fields["config"])  # what the scheduler does with it
    assert cfg.train.overrides() == {"reward_fn": ["builtin:format"], "format_regex": "^def ", "num_generations": 4,
                                     "online": True}
    assert cfg.train_value("model") == "tiny" and cfg.train_value("steps") == cfg.steps


def test_start_form_shows_a_running_config_train_section() -> None:
    initial = {"model": "tiny", "train": {"mode": "online", "reward_fn": ["builtin:format"], "steps": 2}}

    async def drive() -> tuple[object, str]:
        app = GrpoConsole(fixed_source(), mode="daemon", refresh=3600)
        async with app.run_test(size=(120, 40)) as pilot:
            await _until(pilot, lambda: app.polls >= 1, "the first refresh")
            await app.push_screen(StartAutoScreen(initial))
            await pilot.pause()
            form = app.screen
            return form.query_one("#train_mode", Select).value, form.query_one("#train_keys", Input).value

    mode, keys = asyncio.run(drive())
    assert mode == "online"
    assert "mode" not in keys and keys.replace("'", "") == "reward_fn: [builtin:format], steps: 2"


def test_auto_panel_plan_shows_the_train_section_steps_model_and_online() -> None:
    source = fixed_source()
    source.snapshot.status["config"] |= {"model": "bow", "train": {"mode": "online", "model": "tiny", "steps": 2}}

    async def drive() -> str:
        app = GrpoConsole(source, mode="daemon", refresh=3600)
        async with app.run_test(size=(80, 24)) as pilot:
            await _until(pilot, lambda: app.polls >= 1, "the first refresh")
            await pilot.pause()
            return plain_screen(app)

    assert "every 10m00s · 2 online steps · tiny · ≥20 groups" in asyncio.run(drive())
