"""Modal screens: help (built from the app's bindings), the start-auto form and the guard editor.

The forms validate with the same pydantic models the CLI uses (`AutoConfig`, `GuardConfig`): an
invalid field keeps the form open with the error under it and takes the focus; a valid one dismisses
with the plain dict to send to the scheduler. The focused field's label (and a focused button) starts
with `▶`, so focus reads without colour. Escape cancels (dismisses with None). The start form's
`train:` section is a mode select plus one line of `grpo train` keys written as a YAML flow mapping,
the same text `grpo auto start --train` takes.
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
    PARSED_FIELD = ""  # the field parsed before validation (a ConfigError names it)

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

    FIELD_OF: dict[str, str] = {}  # a model key -> the id of the field that edits it, where they differ
    MARK = "▶ "  # before the focused field's label (and button): focus reads without colour, in a tmux capture

    def on_mount(self) -> None:
        grid = self.query_one(".form-grid", Grid)
        cells = list(grid.children)
        self._labels = {field: label for label, field in zip(cells[0::2], cells[1::2]) if isinstance(label, Label)}
        self._label_text = {label: str(label.content) for label in self._labels.values()}
        self._buttons = {button: str(button.label) for button in self.query(Button)}
        self._mark_focus()

    def on_descendant_focus(self, event: object) -> None:
        self._mark_focus()

    def on_descendant_blur(self, event: object) -> None:
        self.call_after_refresh(self._mark_focus)

    def _mark_focus(self) -> None:
        if not hasattr(self, "_labels"):
            return
        focused = self.focused
        inside = focused.ancestors_with_self if focused is not None else []  # a Select's open list counts
        for field, label in self._labels.items():
            text = self._label_text[label]
            label.update((self.MARK if field in inside else "  ") + text)
        for button, text in self._buttons.items():
            button.label = (self.MARK if button is focused else "") + text

    def focus_key(self, key: str) -> None:
        """Move focus to the field that edits model key `key` (the first part of a validation error's loc)."""
        name = self.FIELD_OF.get(key, key)
        found = self.query(f"#{name}") if name.isidentifier() else []
        if found:
            found.first().focus()

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
            loc = exc.errors()[0]["loc"]
            if loc:
                self.focus_key(str(loc[0]))  # the invalid field gets the focus (and the ▶ mark)
            return
        except ConfigError as exc:  # a field that is parsed before validation (the train keys)
            self.query_one("#form-error", Label).update(Text(f"✗ invalid: {exc}", style="bold red"))
            self.focus_key(self.PARSED_FIELD)
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
    TITLE = "start auto mode (enter or OK starts, escape cancels, tab: next field)"
    AUTO_FOCUS = "#period_sec"
    FIELD_OF = {"train": "train_keys"}
    PARSED_FIELD = "train_keys"
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
    TITLE = "guard thresholds (0 = off; enter saves, tab: next field)"
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
