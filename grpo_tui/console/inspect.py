"""The inspect screen (`i`): the latest mined groups and online samples, scored by each level's newest
checkpoint, with a selected candidate's tokens coloured by log-prob under the policy and the reference.

Top to bottom: a head line (group n/N, level, where the scores come from), the search input (`/`;
case-insensitive prompt substring), the group list (level, mined or samples, prompt), the selected
group's candidates (reward, reward axes or reward functions, advantage, the policy's score, a text
preview) and the detail pane (the prompt, the highlighted candidate's text as tokens coloured on a fixed
scale, log-prob -8 red .. 0 green, once under the policy and once under the reference, with a legend).
A bow policy has no tokens: the detail shows the candidate's listwise log-prob under the policy against
the uniform reference, and says so.

All file and model work runs in thread workers (`inspect_data.load_groups` / `analyse`, which imports
torch lazily and caches loaded policies per checkpoint); analyses are cached per (checkpoint, group).
The screen shows "scoring…" meanwhile and never blocks a key. A load or scoring failure is a line on
screen, never a crash.

Keys: up/down or j/k move between groups (or candidates, in the candidate list) · enter / right: the
candidate list · left: back to the groups · / search · escape closes the search, then the screen.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

from rich.console import Group as RichGroup
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, Input, OptionList, Static
from textual.widgets.option_list import Option
from textual.worker import Worker, WorkerState

from grpo_tui.console.inspect_data import LOGP_HIGH, LOGP_LOW, Analysis, InspectGroup, analyse, load_groups

SCORING = "scoring…"


def logp_style(logp: float) -> str:
    """A fixed colour scale: LOGP_LOW (and below) red, through yellow, to LOGP_HIGH green."""
    x = min(max((logp - LOGP_LOW) / (LOGP_HIGH - LOGP_LOW), 0.0), 1.0)
    if x < 0.5:
        r, g = 220, int(60 + 2 * x * 160)
    else:
        r, g = int(220 - (x - 0.5) * 2 * 170), 220
    return f"black on rgb({r},{g},60)"


def legend() -> Text:
    out = Text("log-prob ")
    for v in range(int(LOGP_LOW), int(LOGP_HIGH) + 1):
        out.append(f"{v:^4}", style=logp_style(float(v)))
    out.append("  (fixed scale; ≤ -8 is red)")
    return out


def token_text(tokens: list[str], logp: list[float]) -> Text:
    """Tokens as they read (byte-level markers made visible), each on its log-prob colour."""
    out = Text()
    for tok, lp in zip(tokens, logp, strict=False):
        shown = tok.replace("Ġ", " ").replace("▁", " ").replace("Ċ", "↵").replace("\n", "↵")
        out.append(shown or "∅", style=logp_style(lp))
    return out


def _num(value: float | None, fmt: str = "+.3f") -> str:
    return "—" if value is None else format(value, fmt)


def _preview(text: str, n: int = 80) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= n else flat[: n - 1] + "…"


class _List(OptionList):
    """An option list whose left / right move between the group and candidate lists (not scroll sideways)."""

    BINDINGS = [
        Binding("right", "screen.candidates", "Candidates", key_display="enter/→"),
        Binding("left", "screen.groups", "Groups", key_display="←"),
    ]


class InspectScreen(Screen[None]):
    """Groups and candidates of the home's auto levels, scored by their newest checkpoints."""

    DEFAULT_CSS = """
    InspectScreen #inspect-head { height: 1; background: $panel; text-wrap: nowrap; text-overflow: ellipsis; }
    InspectScreen #inspect-search { height: 1; border: none; padding: 0 1; }
    InspectScreen #inspect-groups { height: 30%; min-height: 4; border: round $primary-darken-1; }
    InspectScreen #inspect-cands { height: 25%; min-height: 4; border: round $primary-darken-1; }
    InspectScreen OptionList { text-wrap: nowrap; text-overflow: ellipsis; }
    InspectScreen OptionList:focus { border: round $accent; }
    InspectScreen #inspect-detail-box { height: 1fr; border: round $primary-darken-1; padding: 0 1; }
    """
    BINDINGS = [
        Binding("escape,q", "close", "Close", tooltip="close the search, then this screen"),
        Binding("slash", "search", "Search", key_display="/", tooltip="filter groups by prompt substring"),
        Binding("j", "move(1)", "Down", show=False, tooltip="next group or candidate"),
        Binding("k", "move(-1)", "Up", show=False, tooltip="previous group or candidate"),
    ]

    def __init__(self, home: Path, device: str = "cpu", limit: int = 100) -> None:
        super().__init__()
        self.home, self.device, self.limit = Path(home), device, limit
        self.groups: list[InspectGroup] = []
        self.shown: list[InspectGroup] = []
        self.notes: list[str] = []
        self.loaded = False
        self.analyses: dict[tuple[object, ...], Analysis] = {}  # group key -> analysis (per checkpoint, below)
        self.pending: set[tuple[object, ...]] = set()
        self.group_index = 0
        self.cand_index = 0
        self.detail_parts: list[Text] = []

    def compose(self) -> ComposeResult:
        yield Static(Text(" inspect · loading…"), id="inspect-head")
        yield Input(placeholder="/ search prompts (escape closes the search)", id="inspect-search", compact=True)
        groups = _List(id="inspect-groups")
        groups.border_title = "groups (↑↓ / j k; enter or → the candidates)"
        yield groups
        cands = _List(id="inspect-cands")
        cands.border_title = "candidates (reward · axes · advantage · policy score · text)"
        yield cands
        with VerticalScroll(id="inspect-detail-box") as box:
            box.border_title = "candidate"
            yield Static(Text("loading the mined groups…"), id="inspect-detail")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#inspect-groups", OptionList).focus()
        self.run_worker(partial(load_groups, self.home, self.limit), name="inspect-load", group="inspect-load",
                        thread=True, exit_on_error=False)

    # ---- data -------------------------------------------------------------------------------------

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        worker, state = event.worker, event.state
        if worker.name == "inspect-load":
            if state == WorkerState.SUCCESS:
                self.groups, self.notes = worker.result
            elif state == WorkerState.ERROR:
                self.groups, self.notes = [], [f"cannot read the datasets: {type(worker.error).__name__}: {worker.error}"]
            else:
                return
            self.loaded = True
            self.apply_filter(self.query_one("#inspect-search", Input).value)
        elif worker.name.startswith("inspect-score"):
            key = getattr(worker, "group_key", None)
            if key is None or state not in (WorkerState.SUCCESS, WorkerState.ERROR):
                return
            self.pending.discard(key)
            if state == WorkerState.SUCCESS:
                self.analyses[key] = worker.result
            else:
                self.analyses[key] = Analysis(level=str(key[0]), error=f"scoring failed: {worker.error}")
            group = self.current()
            if group is not None and group.key == key:
                self.show_group(rebuild=True)

    def score(self, group: InspectGroup) -> None:
        """Analyse `group` in a worker thread unless it is cached or already on its way."""
        key = group.key
        if key in self.analyses or key in self.pending:
            return
        self.pending.add(key)
        worker = self.run_worker(partial(analyse, self.home, group, self.device), name="inspect-score",
                                 group="inspect-score", thread=True, exit_on_error=False)
        worker.group_key = key  # type: ignore[attr-defined]

    def current(self) -> InspectGroup | None:
        return self.shown[self.group_index] if 0 <= self.group_index < len(self.shown) else None

    def apply_filter(self, query: str) -> None:
        q = query.strip().lower()
        self.shown = [g for g in self.groups if q in g.prompt.lower()] if q else list(self.groups)
        options = self.query_one("#inspect-groups", OptionList)
        options.clear_options()
        options.add_options([Option(self._group_line(g)) for g in self.shown])
        self.group_index = 0
        if self.shown:
            options.highlighted = 0
        self.show_group(rebuild=True)

    # ---- rendering ----------------------------------------------------------------------------------

    @staticmethod
    def _group_line(g: InspectGroup) -> Text:
        tag = "mined" if g.source == "mined" else f"samples@{g.step}"
        return Text.assemble((f"{g.level:<9} ", "bold"), (f"{tag:<12} ", "dim"), f"{len(g.candidates)}× ",
                             _preview(g.prompt, 200), no_wrap=True, overflow="ellipsis")

    def _head(self) -> Text:
        g = self.current()
        if not self.loaded:
            return Text(" inspect · loading…")
        if g is None:
            where = "no match" if self.groups else "no groups"
            return Text.assemble((" inspect ", "bold reverse"), f" group 0/{len(self.shown)} · {where}")
        a = self.analyses.get(g.key)
        if a is None:
            model = SCORING
        elif a.error:
            model = "✗ no scores"
        else:
            model = f"{a.kind} step {a.step}"
        return Text.assemble((" inspect ", "bold reverse"),
                             f" group {self.group_index + 1}/{len(self.shown)} · {g.level} {g.source} · {model}",
                             no_wrap=True, overflow="ellipsis")

    def show_group(self, rebuild: bool = False) -> None:
        g = self.current()
        self.query_one("#inspect-head", Static).update(self._head())
        cands = self.query_one("#inspect-cands", OptionList)
        if g is None:
            cands.clear_options()
            lines = list(self.notes) or (["no group matches the search"] if self.groups else ["no groups"])
            self.query_one("#inspect-detail", Static).update(Text("\n".join(lines)))
            return
        self.score(g)
        a = self.analyses.get(g.key)
        if rebuild:
            keep = self.cand_index
            cands.clear_options()
            cands.add_options([Option(self._cand_line(i, c, a)) for i, c in enumerate(g.candidates)])
            self.cand_index = min(keep, len(g.candidates) - 1)
            cands.highlighted = self.cand_index
        self.show_candidate()

    @staticmethod
    def _cand_line(i: int, c, a: Analysis | None) -> Text:  # noqa: ANN001
        if a is None:
            score = "…"
        elif a.error or i >= len(a.scores):
            score = "—"
        else:
            score = f"{a.scores[i]:+.3f}"
        axes = " ".join(f"{k} {_num(v, '.2f')}" for k, v in c.rewards.items())
        return Text.assemble((f"#{i + 1} ", "bold"), f"r {_num(c.reward)}  ", (f"{axes}  " if axes else ""),
                             f"adv {_num(c.advantage, '+.2f')}  score {score} │ ", _preview(c.text, 200),
                             no_wrap=True, overflow="ellipsis")

    def show_candidate(self) -> None:
        g = self.current()
        if g is None or not g.candidates:
            return
        i = min(self.cand_index, len(g.candidates) - 1)
        c = g.candidates[i]
        a = self.analyses.get(g.key)
        parts: list[Text] = [Text.assemble(("prompt: ", "bold"), g.prompt)]
        parts.append(Text.assemble((f"candidate #{i + 1}", "bold"), f" of {len(g.candidates)} · reward {_num(c.reward)}"
                                   f" · advantage {_num(c.advantage, '+.3f')}"))
        if a is None:
            parts.append(Text(f"{SCORING} (loading the newest {g.level} checkpoint)", style="italic"))
            parts.append(Text(c.text))
        elif a.error:
            parts.append(Text(f"✗ {a.error}", style="bold red"))
            parts.append(Text(c.text))
        elif a.tokens is None:  # bow: one listwise log-prob per candidate
            lp, ref = a.logp[i][0], a.ref_logp[i][0]
            parts.append(Text(f"policy: {a.kind} step {a.step} ({Path(a.checkpoint or '').name}) · score {a.scores[i]:+.4f}"))
            parts.append(Text.assemble("bow policy: no tokens. Listwise log-prob of this candidate: policy ",
                                       (f" {lp:+.3f} ", logp_style(lp)), " vs uniform reference ",
                                       (f" {ref:+.3f} ", logp_style(ref)), f" (log 1/{len(g.candidates)})"))
            parts.append(Text(c.text))
            parts.append(legend())
        else:
            lp, ref = a.logp[i], a.ref_logp[i]
            mean = sum(lp) / max(len(lp), 1)
            rmean = sum(ref) / max(len(ref), 1)
            parts.append(Text(f"policy: {a.kind} step {a.step} ({Path(a.checkpoint or '').name}) · score {a.scores[i]:+.4f}"
                              f" · mean token log-prob policy {mean:+.3f}, reference {rmean:+.3f}"))
            parts.append(legend())
            parts.append(Text(f"under the policy ({len(lp)} tokens):", style="bold"))
            parts.append(token_text(a.tokens[i], lp))
            parts.append(Text("under the reference (the base model):", style="bold"))
            parts.append(token_text(a.tokens[i], ref))
        self.detail_parts = parts  # what the detail pane shows (tests read the token styles here)
        self.query_one("#inspect-detail", Static).update(RichGroup(*parts))

    # ---- events and keys ------------------------------------------------------------------------------

    def on_option_list_option_highlighted(self, event: OptionList.OptionHighlighted) -> None:
        if event.option_list.id == "inspect-groups":
            if event.option_index != self.group_index:
                self.group_index = event.option_index
                self.cand_index = 0
                self.show_group(rebuild=True)
        elif event.option_list.id == "inspect-cands" and event.option_index != self.cand_index:
            self.cand_index = event.option_index
            self.show_candidate()

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        if event.option_list.id == "inspect-groups":
            self.action_candidates()

    def on_input_changed(self, event: Input.Changed) -> None:
        if self.loaded:
            self.apply_filter(event.value)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.query_one("#inspect-groups", OptionList).focus()

    def action_search(self) -> None:
        self.query_one("#inspect-search", Input).focus()

    def action_candidates(self) -> None:
        self.query_one("#inspect-cands", OptionList).focus()

    def action_groups(self) -> None:
        self.query_one("#inspect-groups", OptionList).focus()

    def action_move(self, step: int) -> None:
        focused = self.focused if isinstance(self.focused, OptionList) else self.query_one("#inspect-groups", OptionList)
        if step > 0:
            focused.action_cursor_down()
        else:
            focused.action_cursor_up()

    def action_close(self) -> None:
        search = self.query_one("#inspect-search", Input)
        if self.focused is search:  # closing the search drops its filter
            search.value = ""
            self.action_groups()
        elif self.focused is not None and self.focused.id == "inspect-cands":
            self.action_groups()
        else:
            self.dismiss(None)
