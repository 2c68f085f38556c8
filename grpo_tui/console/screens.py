"""Modal screens: help (built from the app's bindings), the start-auto form and the guard editor.

The forms validate with the same pydantic models the CLI uses (`AutoConfig`, `GuardConfig`): an
invalid field keeps the form open with the error under it; a valid one dismisses with the plain dict
to send to the scheduler. Escape cancels (dismisses with None). The start form's `train:` section is a
mode select plus one line of `grpo train` keys written as a YAML flow mapping, the same text
`grpo auto start --train` takes.
"""

from __future__ import annotations

from typing import Any

import yaml
from pydantic import BaseModel, ValidationError
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Grid, Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Select, Static

from grpo_tui.config import AutoConfig, GuardConfig, describe, parse_mapping
from grpo_tui.errors import ConfigError


class HelpScreen(ModalScreen[None]):
    """Every binding of the console with its key, what it does and, when disabled, why."""

    BINDINGS = [Binding("escape,q,question_mark,f1", "dismiss", "Close")]

    def __init__(self, rows: list[tuple[str, str, str]], intro: str) -> None:
        super().__init__()
        self.rows, self.intro = rows, intro

    def compose(self) -> ComposeResult:
        table = Table(box=None, padding=(0, 2), show_edge=False)
        table.add_column("key", style="bold", no_wrap=True)
        table.add_column("action")
        table.add_column("now")
        for key, description, state in self.rows:
            table.add_row(key, description, Text(state, style="yellow" if state != "enabled" else "green"))
        with VerticalScroll(id="help-box") as box:
            box.border_title = "grpo-tui help (escape closes)"
            yield Static(Text(self.intro))
            yield Static(table)


class _Form(ModalScreen[dict[str, Any] | None]):
    BINDINGS = [Binding("escape", "cancel", "Cancel")]
    MODEL: type[BaseModel] = BaseModel
    TITLE = ""

    def fields(self) -> ComposeResult:
        raise NotImplementedError

    def values(self) -> dict[str, Any]:
        raise NotImplementedError

    def compose(self) -> ComposeResult:
        with Vertical(id="form-box") as box:
            box.border_title = self.TITLE
            with Grid(classes="form-grid"):
                yield from self.fields()
            yield Label("", id="form-error")
            with Horizontal(classes="form-buttons"):
                yield Button("OK", variant="primary", id="ok", compact=True)
                yield Button("Cancel", id="cancel", compact=True)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.submit()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "ok":
            self.submit()
        else:
            self.dismiss(None)

    def action_cancel(self) -> None:
        self.dismiss(None)

    def submit(self) -> None:
        try:
            model = self.MODEL.model_validate(self.values())
        except ValidationError as exc:
            self.query_one("#form-error", Label).update(Text(f"✗ invalid: {describe(self.MODEL, exc)}", style="bold red"))
            return
        except ConfigError as exc:  # a field that is parsed before validation (the train keys)
            self.query_one("#form-error", Label).update(Text(f"✗ invalid: {exc}", style="bold red"))
            return
        self.dismiss(model.model_dump(mode="json"))


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def flow_text(keys: dict[str, Any]) -> str:
    """{'a': 1, 'b': ['x']} -> 'a: 1, b: [x]': one editable line, read back by `parse_mapping`."""
    if not keys:
        return ""
    return yaml.safe_dump(keys, default_flow_style=True, sort_keys=False, width=1 << 16).strip()[1:-1]


class StartAutoScreen(_Form):
    """The auto config (without guard thresholds: `g` edits those)."""

    MODEL = AutoConfig
    TITLE = "start auto mode (enter or OK starts, escape cancels)"
    AUTO_FOCUS = "#period_sec"
    NUMBERS = (("period_sec", "period s"), ("steps", "steps/level"), ("min_groups", "min groups"), ("hours", "window h"),
               ("lr", "lr"), ("beta", "beta (KL)"))

    def __init__(self, initial: dict[str, Any] | None = None) -> None:
        super().__init__()
        base = AutoConfig().model_dump(mode="json")
        base.update({k: v for k, v in (initial or {}).items() if k in base})
        self.initial = base

    def fields(self) -> ComposeResult:
        cfg = self.initial
        for name, label in self.NUMBERS[:4]:
            yield Label(label)
            yield Input(_text(cfg[name]), id=name, compact=True)
        yield Label("mode")
        yield Select([("single", "single"), ("hierarchical", "hierarchical")], value=cfg["mode"], allow_blank=False,
                     id="mode", compact=True)
        yield Label("levels")
        yield Input(",".join(cfg["levels"]), id="levels", compact=True, placeholder="global,signature,patch")
        for name, label in self.NUMBERS[4:]:
            yield Label(label)
            yield Input(_text(cfg[name]), id=name, compact=True)
        yield Label("model")
        yield Input(_text(cfg["model"]), id="model", compact=True, placeholder="bow, tiny or a model dir")
        yield Label("device")
        yield Input(_text(cfg["device"]), id="device", compact=True)
        train = dict(cfg.get("train") or {})
        yield Label("train mode")
        yield Select([("offline: the mined candidates", "offline"), ("online: sample, score with rewards", "online")],
                     value=train.pop("mode", "offline"), allow_blank=False, id="train_mode", compact=True)
        yield Label("train keys")
        yield Input(flow_text(train), id="train_keys", compact=True,
                    placeholder="reward_fn: [builtin:format], num_generations: 4")
        yield Label("policy nudges")  # words, not a tick box: the state must read without colour
        yield Select([("no: do not write .dspy_policy.yaml", False), ("yes: apply after training", True)],
                     value=bool(cfg["apply_policy"]), allow_blank=False, id="apply_policy", compact=True)

    def values(self) -> dict[str, Any]:
        out: dict[str, Any] = {name: self.query_one(f"#{name}", Input).value.strip() for name, _ in self.NUMBERS}
        out["lr"] = out["lr"] or None  # blank: the backend's default lr
        out["levels"] = [p.strip() for p in self.query_one("#levels", Input).value.split(",") if p.strip()]
        out["mode"] = self.query_one("#mode", Select).value
        out["model"] = self.query_one("#model", Input).value.strip()
        out["device"] = self.query_one("#device", Input).value.strip()
        out["apply_policy"] = self.query_one("#apply_policy", Select).value
        train = parse_mapping(self.query_one("#train_keys", Input).value, "train keys")
        if "mode" in train:
            raise ConfigError("train keys: choose the mode with the train mode select above, not here")
        out["train"] = train | {"mode": self.query_one("#train_mode", Select).value}
        for key in ("workspace", "top_k", "bottom_k", "lr_step", "lr_gamma", "kl_warmup", "kl_target", "on_checkpoint"):
            out[key] = self.initial[key]  # kept as they were (CLI or config file sets them)
        return out


class GuardScreen(_Form):
    """The three capacity-guard thresholds (0 turns a check off)."""

    MODEL = GuardConfig
    TITLE = "guard thresholds (0 = off; enter saves)"
    AUTO_FOCUS = "#min_free_gb"
    FIELDS = (("min_free_gb", "min free disk GB"), ("min_ram_gb", "min free RAM GB"), ("min_vram_mb", "min free VRAM MB"))

    def __init__(self, initial: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.initial = GuardConfig().model_dump() | (initial or {})

    def fields(self) -> ComposeResult:
        for name, label in self.FIELDS:
            yield Label(label)
            yield Input(_text(self.initial[name]), id=name, compact=True)

    def values(self) -> dict[str, Any]:
        return {name: self.query_one(f"#{name}", Input).value.strip() for name, _ in self.FIELDS}
