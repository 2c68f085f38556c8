"""`grpo-tui`: the Textual operator console for a home's auto mode.

Launch attaches to the home's scheduler daemon, starting one when none answers (so quitting, or a
dropped SSH session, never stops auto mode); `--in-process` hosts the scheduler inside the console
instead (auto mode then ends with the console); `--readonly` never starts, stops or edits anything
(and starts no daemon). The console talks to the scheduler only through `ControlClient` (via a
`Source`), polling in a worker thread every `--refresh` seconds; the UI thread never blocks on it.
A failed refresh or request becomes a notification, never a crash.

Keys: a start auto (form; with no scheduler it starts the daemon first; refused while auto mode
runs) · s stop · g guard thresholds · m mine now · t train once · p pause updates · + / - refresh
rate · pagedown/pageup/home/end, j/k scroll the panels · ? / F1 help · ctrl+p command palette
(screenshots go to <home>/screenshots/) · q quit (the message says what keeps running).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import click
from rich.text import Text
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import Screen
from textual.timer import Timer
from textual.widgets import Footer, Static
from textual.worker import Worker, WorkerState

from grpo_tui.console.alerts import Alert, evaluate
from grpo_tui.console.screens import GuardScreen, HelpScreen, StartAutoScreen
from grpo_tui.console.source import LiveSource, Snapshot, Source
from grpo_tui.console.widgets import (
    AlertsPanel, AutoPanel, CheckpointsPanel, CyclesPanel, GuardPanel, LogPanel, MetricsPanel, SystemPanel,
    TopPanel, View,
)

RATES = (0.5, 1.0, 2.0, 5.0, 10.0, 30.0)  # refresh periods `+` / `-` step through, seconds
START_ACTIONS = ("start_auto", "mine", "train")
EDIT_ACTIONS = ("stop_auto", "edit_guard")
GUARD_KEYS = {"disk": "min_free_gb", "ram": "min_ram_gb", "vram": "min_vram_mb"}
SCROLL_HELP = ("scroll the panels: a page, to the top or bottom, a line (at 80x24 they stack; the title line "
               "says when there is more below)")


class GrpoConsole(App[str]):
    """The operator console; `source` supplies snapshots and carries control requests."""

    TITLE = "grpo-tui"
    CSS_PATH = "console.tcss"
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (100, "-wide")]
    AUTO_FOCUS = "#main"  # arrows / page keys scroll the panels (at 80x24 they stack)
    BINDINGS = [
        Binding("a", "start_auto", "Start", tooltip="start auto mode (a form with the auto config)"),
        Binding("s", "stop_auto", "Stop", tooltip="stop auto mode; the running trainer checkpoints and exits"),
        Binding("g", "edit_guard", "Guard", tooltip="edit the capacity-guard thresholds"),
        Binding("m", "mine", "Mine", tooltip="mine now (one-off job)"),
        Binding("t", "train", "Train", tooltip="train once on the latest mined datasets (one-off job)"),
        Binding("p", "toggle_pause", "Pause", tooltip="pause or resume screen updates"),
        Binding("i", "inspect", "Inspect", tooltip="inspect the latest mined groups and samples, scored by the policy"),
        Binding("question_mark,f1", "help", "Help", key_display="?", tooltip="this help"),
        Binding("q", "quit_console", "Quit", tooltip="quit the console; auto mode keeps running in the daemon"),
        Binding("plus", "faster", "Faster", key_display="+", show=False, tooltip="refresh more often"),
        Binding("minus", "slower", "Slower", key_display="-", show=False, tooltip="refresh less often"),
        # scrolling the panels (at 80x24 they stack): one help row, see `help_rows`
        Binding("pagedown", "scroll_main('page_down')", "Page down", show=False, tooltip=SCROLL_HELP),
        Binding("pageup", "scroll_main('page_up')", "Page up", show=False, tooltip=SCROLL_HELP),
        Binding("home", "scroll_main('home')", "Top", show=False, tooltip=SCROLL_HELP),
        Binding("end", "scroll_main('end')", "Bottom", show=False, tooltip=SCROLL_HELP),
        Binding("j", "scroll_main('down')", "Line down", show=False, tooltip=SCROLL_HELP),
        Binding("k", "scroll_main('up')", "Line up", show=False, tooltip=SCROLL_HELP),
    ]

    def __init__(self, source: Source, *, readonly: bool = False, refresh: float = 2.0, mode: str = "daemon",
                 kl_max: float = 1.0, stall_minutes: float = 10.0, auto_defaults: dict[str, Any] | None = None,
                 start_scheduler: Callable[[], int] | None = None) -> None:
        super().__init__()
        # starts the home's scheduler daemon (returns its pid) when `a` finds none; None: `a` needs a scheduler
        self.start_scheduler = None if readonly else start_scheduler
        self._spawning = False
        self._form_pending = False
        self._scrollable = False  # the panels overflow the screen: the title line hints how to scroll
        self.source = source
        self.readonly = readonly
        self.refresh_s = refresh
        self.mode_label = mode
        self.kl_max, self.stall_s = kl_max, stall_minutes * 60.0
        self.auto_defaults = auto_defaults or {}  # the start form's values when the scheduler has no config yet
        self.paused = False
        self.snapshot: Snapshot | None = None
        self.alerts: list[Alert] = []
        self._alert_keys: set[str] = set()
        self._job_seen: tuple[str, float] | None = None  # (job, first seen at)
        self._timer: Timer | None = None
        self._polling = False
        self.polls = 0  # snapshots applied (tests wait on it)
        self._enabled: tuple[str | None, str | None] | None = None

    # ---- layout ---------------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield Static(id="title")
        with VerticalScroll(id="main"):
            with Horizontal(id="top", classes="row"):
                yield AutoPanel(id="auto", classes="panel")
                yield GuardPanel(id="guard", classes="panel")
                yield SystemPanel(id="system", classes="panel")
            with Horizontal(id="mid", classes="row"):
                yield MetricsPanel(id="metrics", classes="panel")
                with Vertical(id="side"):
                    yield CyclesPanel(id="cycles", classes="panel")
                    yield CheckpointsPanel(id="checkpoints", classes="panel")
            with Horizontal(id="bottom", classes="row"):
                yield AlertsPanel(id="alerts", classes="panel")
                yield TopPanel(id="top-procs", classes="panel")
                yield LogPanel(id="log", classes="panel")
        yield Footer()

    def on_mount(self) -> None:
        self._set_subtitle()
        self.refresh_now()
        self._timer = self.set_interval(self.refresh_s, self.refresh_now)

    def _set_subtitle(self) -> None:
        """The title line: home, how the scheduler is reached, read-only, refresh period, PAUSED."""
        bits = [str(self.source.home), self.mode_label]
        if self.readonly:
            bits.append("READ-ONLY")
        bits.append(f"refresh {self.refresh_s:g}s")
        if self.paused:
            bits.append("⏸ PAUSED (p resumes)")
        if self._scrollable:
            bits.append("PgUp/PgDn j/k scroll")
        self.status_line = " · ".join(bits)  # not App.sub_title: that reactive repaints the whole screen
        title = Text.assemble((f" {self.title} ", "bold reverse"), " ", self.status_line)
        self.query_one("#title", Static).update(title, layout=False)  # one fixed line: no layout pass

    # ---- polling --------------------------------------------------------------------------------

    def refresh_now(self) -> None:
        """Start one poll in a worker thread, unless paused or one is already in flight."""
        if self.paused or self._polling:
            return
        self._polling = True
        self.run_worker(self.source.poll, name="poll", group="poll", thread=True, exit_on_error=False)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        worker = event.worker
        if worker.name == "poll":
            if event.state == WorkerState.SUCCESS:
                self._polling = False
                if not self.paused:
                    self.apply(worker.result)
            elif event.state in (WorkerState.ERROR, WorkerState.CANCELLED):
                self._polling = False
                if event.state == WorkerState.ERROR:
                    self.notify(f"refresh failed: {type(worker.error).__name__}: {worker.error}",
                                title="refresh", severity="error")
        elif worker.name.startswith("request:") and event.state == WorkerState.ERROR:
            self.notify(f"{worker.name[8:]} failed: {type(worker.error).__name__}: {worker.error}", severity="error")

    def apply(self, snap: Snapshot) -> None:
        """Render one snapshot into every panel, evaluate alerts, toast the new ones."""
        if not self.is_running or not self.screen_stack or self._exit:
            return  # a poll that finished while the console closes
        self.snapshot = snap
        self.polls += 1
        if self._form_pending and snap.status is not None:
            self._form_pending = False
            self.call_later(self.action_start_auto)
        job = snap.job
        if job is None:
            self._job_seen = None
        elif self._job_seen is None or self._job_seen[0] != job:
            running_for = (snap.status or {}).get("cycle_running_for")
            self._job_seen = (job, snap.time - running_for if running_for is not None else snap.time)
        started = self._job_seen[1] if self._job_seen else None
        self.alerts = evaluate(snap, self.kl_max, self.stall_s, started)
        for alert in self.alerts:
            if alert.key not in self._alert_keys:
                self.notify(alert.text, title="alert", severity="error" if alert.severity == "error" else "warning",
                            timeout=8)
        self._alert_keys = {a.key for a in self.alerts}
        wide = self.size.width >= 100  # the -wide layout: panels sized by CSS, so no layout pass per update
        view = View(readonly=self.readonly, blocked=self.start_blocked(), alerts=self.alerts,
                    spark_width=18 if wide else 12)
        for panel in self.screen_stack[0].query(".panel"):
            panel.fixed = wide  # type: ignore[attr-defined]
            try:
                panel.show(snap, view)  # type: ignore[attr-defined]
            except Exception as exc:  # a panel that cannot render this data says so; the console goes on
                self.notify(f"{panel.id} panel: {type(exc).__name__}: {exc}", title="render", severity="error")
        self.call_after_refresh(self._scroll_hint)  # once the panels' new sizes are laid out
        enabled = (self.start_blocked(), self.edit_blocked())
        if enabled != self._enabled:  # re-draws the footer: only when an action's state changed
            self._enabled = enabled
            self.refresh_bindings()

    # ---- enabled / disabled actions ---------------------------------------------------------------

    def start_blocked(self) -> str | None:
        """Why start actions (a, m, t) are disabled now, or None."""
        if self.readonly:
            return "read-only console"
        snap = self.snapshot
        if snap is None:
            return "waiting for the first status"
        if snap.status is None:
            return "no scheduler running" + (" (a starts one)" if self.start_scheduler else "")
        if snap.guard is not None and not snap.guard.get("ok", True):
            return f"guard FAIL: {snap.guard.get('reason', '?')}"
        return None

    def edit_blocked(self) -> str | None:
        if self.readonly:
            return "read-only console"
        if self.snapshot is not None and self.snapshot.status is None:
            return "no scheduler running"
        return None

    def can_spawn(self) -> bool:
        """`a` may start the home's scheduler daemon: none answers and this console may start one."""
        return self.start_scheduler is not None and self.snapshot is not None and self.snapshot.status is None

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "start_auto" and self.can_spawn():
            return True
        if action in START_ACTIONS:
            return None if self.start_blocked() else True
        if action in EDIT_ACTIONS:
            return None if self.edit_blocked() else True
        return True

    # ---- requests ---------------------------------------------------------------------------------

    def send(self, cmd: str, done: Callable[[dict[str, Any]], str], **fields: Any) -> None:
        """Send one control request from a worker thread; notify its outcome; refresh."""

        def call() -> None:
            reply = self.source.request(cmd, **fields)
            if reply.get("ok"):
                self.call_from_thread(self.notify, done(reply), title=cmd)
            else:
                self.call_from_thread(self.notify, str(reply.get("error", "refused")), title=f"{cmd} refused",
                                      severity="error")
            self.call_from_thread(self.refresh_now)

        self.run_worker(call, name=f"request:{cmd}", group="request", thread=True, exit_on_error=False)

    def action_start_auto(self) -> None:
        """The start form; refused up front while auto mode runs; with no scheduler (and one may be started
        here) the daemon is started first and the form opens once it answers."""
        if self.can_spawn():
            self._spawn_then_start()
            return
        state = self.snapshot.state if self.snapshot else None
        if state in ("waiting", "running"):
            self.notify("auto mode is running; s stops it (then a starts it with a new config)", title="start",
                        severity="warning")
            return
        if state == "stopping":
            self.notify("auto mode is stopping; try a again in a few seconds", title="start", severity="warning")
            return
        initial = ((self.snapshot.status or {}).get("config") if self.snapshot else None) or self.auto_defaults
        self.push_screen(StartAutoScreen(initial), self._start_with)

    def _spawn_then_start(self) -> None:
        """Start the scheduler daemon in a worker thread, then poll and open the start form."""
        if self._spawning or self.start_scheduler is None:
            return
        self._spawning = True
        start = self.start_scheduler
        self.notify("no scheduler is running: starting the scheduler daemon…", title="start")

        def spawn() -> None:
            try:
                pid = start()
            finally:
                self.call_from_thread(setattr, self, "_spawning", False)
            self.call_from_thread(self._spawned, pid)

        self.run_worker(spawn, name="request:start scheduler", group="request", thread=True, exit_on_error=False)

    def _spawned(self, pid: int) -> None:
        self.notify(f"scheduler daemon started (pid {pid}); it keeps running after this console quits",
                    title="start")
        self.mode_label = f"daemon pid {pid} (started)"
        self._set_subtitle()
        self._form_pending = True  # the form opens with the first status the daemon answers (see `apply`)
        self.refresh_now()

    def _start_with(self, config: dict[str, Any] | None) -> None:
        if config is None:
            return
        config.pop("guard", None)  # thresholds are edited with `g`; the form never overwrites guard.json
        train = config.get("train") or {}
        self.send("start", lambda r: f"auto mode {r.get('state', 'started')}: every {config['period_sec']:g} s, "
                                     f"{config['mode']}, model {train.get('model', config['model'])}, "
                                     f"train {train.get('mode', 'offline')}", config=config)

    def action_stop_auto(self) -> None:
        self.send("stop", lambda r: r.get("message") or f"auto mode {r.get('state', 'stopping')}")

    def action_mine(self) -> None:
        self.send("run", lambda r: "mining started (one-off job)", job="mine")

    def action_train(self) -> None:
        self.send("run", lambda r: "training on the latest datasets started (one-off job)", job="train")

    def action_inspect(self) -> None:
        from grpo_tui.console.inspect import InspectScreen

        self.push_screen(InspectScreen(self.source.home))

    def action_edit_guard(self) -> None:
        checks = ((self.snapshot.guard or {}).get("checks") if self.snapshot else None) or []
        initial = {GUARD_KEYS[c["name"]]: c["threshold"] for c in checks if c.get("name") in GUARD_KEYS}
        self.push_screen(GuardScreen(initial), self._guard_with)

    def _guard_with(self, thresholds: dict[str, Any] | None) -> None:
        if thresholds is not None:
            self.send("guard", lambda r: f"guard thresholds saved: {r['guard']['reason']}", set=thresholds)

    # ---- view actions -----------------------------------------------------------------------------

    def action_toggle_pause(self) -> None:
        self.paused = not self.paused
        self._set_subtitle()  # the header says PAUSED: no toast, a key press stays cheap
        if not self.paused:
            self.refresh_now()

    def _set_rate(self, seconds: float) -> None:
        self.refresh_s = seconds
        if self._timer is not None:
            self._timer.stop()
            self._timer = self.set_interval(self.refresh_s, self.refresh_now)
        self._set_subtitle()

    def action_faster(self) -> None:
        self._set_rate(max([r for r in RATES if r < self.refresh_s] or [RATES[0]]))

    def action_slower(self) -> None:
        self._set_rate(min([r for r in RATES if r > self.refresh_s] or [RATES[-1]]))

    def _scroll_hint(self) -> None:
        """Say how to scroll in the title line only when the panels overflow the screen."""
        if not self.screen_stack:
            return
        main = self.screen_stack[0].query_one("#main", VerticalScroll)
        if (main.max_scroll_y > 0) != self._scrollable:
            self._scrollable = main.max_scroll_y > 0
            self._set_subtitle()

    def on_resize(self) -> None:
        self.call_after_refresh(self._scroll_hint)

    def action_scroll_main(self, how: str) -> None:
        """pagedown/pageup/home/end (and j/k a line) scroll the panels, whatever has focus."""
        main = self.screen_stack[0].query_one("#main", VerticalScroll)
        {"page_down": main.scroll_page_down, "page_up": main.scroll_page_up, "home": main.scroll_home,
         "end": main.scroll_end, "down": main.scroll_down, "up": main.scroll_up}[how](animate=False)

    def help_rows(self) -> list[tuple[str, str, str]]:
        rows = []
        for binding in self.BINDINGS:
            assert isinstance(binding, Binding)
            if binding.action.startswith("scroll_main"):
                if binding.key == "pagedown":
                    rows.append(("pagedown / pageup / home / end / j / k", SCROLL_HELP, "enabled"))
                continue
            keys = " / ".join("?" if k == "question_mark" else {"plus": "+", "minus": "-"}.get(k, k)
                              for k in binding.key.split(","))
            state = "enabled"
            if binding.action == "start_auto" and self.can_spawn():
                state = "enabled: starts the scheduler daemon first"
            elif binding.action in START_ACTIONS and self.start_blocked():
                state = f"disabled: {self.start_blocked()}"
            elif binding.action in EDIT_ACTIONS and self.edit_blocked():
                state = f"disabled: {self.edit_blocked()}"
            rows.append((keys, binding.tooltip or binding.description, state))
        rows.append(("ctrl+p", "command palette: every action by name", "enabled"))
        return rows

    def action_help(self) -> None:
        intro = (f"Home {self.source.home} ({self.mode_label}). Auto mode runs in the scheduler, not in this "
                 "console: quitting leaves it running" + (" — except in --in-process mode, where quitting stops it."
                                                           if self.mode_label == "in-process" else "."))
        intro += (" The panels scroll with pagedown / pageup / home / end and j / k (the title line says when "
                  "there is more below); this help scrolls with the arrows and page keys.")
        self.push_screen(HelpScreen(self.help_rows(), intro))

    def get_system_commands(self, screen: Screen) -> Any:
        for command in super().get_system_commands(screen):
            if command.title != "Quit":  # ours (below) quits with the honest message: one Quit in the palette
                yield command
        for binding in self.BINDINGS:
            assert isinstance(binding, Binding)
            if (binding.action == "help" or binding.action.startswith("scroll_")
                    or self.check_action(binding.action, ()) is not True):
                continue
            yield SystemCommand(binding.description, binding.tooltip or binding.description,
                                partial(self.run_action, binding.action))

    def deliver_screenshot(self, filename: str | None = None, path: str | None = None,
                           time_format: str | None = None) -> str | None:
        """ctrl+p → screenshot: saved under `<home>/screenshots/` (made 0700, like the home), not ~/Downloads;
        Textual then notifies the file's path (in a browser, `textual serve` downloads it instead)."""
        if path is None:
            folder = Path(self.source.home) / "screenshots"
            try:
                folder.mkdir(mode=0o700, parents=True, exist_ok=True)
                folder.chmod(0o700)
            except OSError as exc:
                self.notify(f"cannot create {folder}: {exc}", title="Screenshot", severity="error")
                return None
            path = str(folder)
        return super().deliver_screenshot(filename, path, time_format)

    def action_quit_console(self) -> None:
        self.exit(self.quit_message())

    def quit_message(self) -> str:
        """What quitting leaves behind, true for each mode: in-process, daemon (auto on or off), no scheduler
        (read-only or not), or never reached."""
        home = self.source.home
        if self.mode_label == "in-process":
            return "grpo-tui closed; its in-process scheduler stopped with it (auto mode is off)."
        snap = self.snapshot
        if snap is None:
            return f"grpo-tui closed before the first status of {home}; nothing was started or stopped."
        if snap.status is None:
            started = "this read-only console started nothing" if self.readonly else "nothing was started"
            return (f"grpo-tui closed; no scheduler was running for {home}, so nothing is training ({started}). "
                    f"Start one with `grpo-tui --home {home}` then `a`, or `grpo auto start`.")
        pid = snap.status.get("pid")
        where = f"the scheduler daemon (pid {pid})" if pid else "the scheduler daemon"
        job = f"; its {snap.job} job goes on" if snap.job and snap.job != "cycle" else ""
        if snap.state in ("waiting", "running"):
            what = f"training continues in {where}, auto mode {snap.state}{job}"
        elif snap.state == "stopping":
            what = f"auto mode is stopping in {where}{job}"
        else:
            what = f"auto mode is off; {where} stays up{job}"
        return (f"grpo-tui closed; {what}. Reattach with `grpo-tui --home {home}`"
                + ("; stop with `grpo auto stop`." if snap.state in ("waiting", "running") else "."))


def open_console(home: Path, in_process: bool, readonly: bool) -> tuple[Source, str, Callable[[], None] | None]:
    """The source for `home`: attach to (or spawn) its daemon, or host the scheduler here."""
    from grpo_tui.control import probe, socket_path

    home = home.expanduser().absolute()
    if in_process:
        from grpo_tui.daemon import Host

        host = Host(home)
        return LiveSource(home), "in-process", host.close
    if probe(socket_path(home)):
        return LiveSource(home), "daemon", None
    if readonly:
        return LiveSource(home), "no daemon (read-only: none started)", None
    from grpo_tui.daemon import spawn_daemon

    pid = spawn_daemon(home)
    return LiveSource(home), f"daemon pid {pid} (started)", None


@click.command("grpo-tui", context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--home", type=click.Path(path_type=Path, file_okay=False), envvar="GRPO_HOME", default=Path(".grpo"),
              show_default=True, help="The home to watch (env GRPO_HOME).")
@click.option("--in-process", is_flag=True, help="Host the scheduler inside the console (auto mode stops on quit).")
@click.option("--readonly", is_flag=True, help="Watch only: no start, stop or edits, and no daemon is started.")
@click.option("--refresh", type=click.FloatRange(min=0.2), default=2.0, show_default=True, help="Seconds between refreshes.")
@click.option("--kl-alert", type=click.FloatRange(min=0), default=1.0, show_default=True, help="Alert when a level's KL is above this.")
@click.option("--config-file", type=click.Path(path_type=Path, dir_okay=False),
              help="Auto config YAML that fills the start form (`a`) when the scheduler has none yet.")
@click.option("--stall-minutes", type=click.FloatRange(min=0.1), default=10.0, show_default=True,
              help="Alert when a running trainer writes no metrics for this long.")
def tui_command(home: Path, in_process: bool, readonly: bool, refresh: float, kl_alert: float,
                config_file: Path | None, stall_minutes: float) -> None:
    """The grpo operator console: watch and drive auto mode; quitting leaves the daemon running."""
    from grpo_tui.config import AutoConfig, load_config

    defaults = load_config(AutoConfig, config_file=config_file).model_dump(mode="json") if config_file else None
    from grpo_tui.context import secure_home

    home = home.expanduser().absolute()
    if not readonly or home.exists():  # read-only creates nothing, but never trusts a home others can write
        secure_home(home)
    source, mode, on_close = open_console(home, in_process, readonly)
    spawn = None
    if not readonly and not in_process:  # a console left open after a shutdown can start the daemon again (`a`)
        from grpo_tui.daemon import spawn_daemon

        spawn = partial(spawn_daemon, home)
    app = GrpoConsole(source, readonly=readonly, refresh=refresh, mode=mode, kl_max=kl_alert,
                      stall_minutes=stall_minutes, auto_defaults=defaults, start_scheduler=spawn)
    try:
        message = app.run()
    finally:
        if on_close is not None:
            on_close()  # --in-process: stop auto mode (the trainer checkpoints) and release the home
    if message:
        click.echo(message)


def main(argv: list[str] | None = None) -> int:
    """The `grpo-tui` console script; errors map to exit codes as in `grpo` (grpo_tui.cli.exit_code)."""
    from grpo_tui.cli import exit_code
    from grpo_tui.errors import GrpoError

    try:
        tui_command.main(args=argv, prog_name="grpo-tui", standalone_mode=False)
        return 0
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except (KeyboardInterrupt, click.Abort):
        return 130
    except GrpoError as exc:
        click.echo(f"error: {exc}", err=True)
        return exit_code(exc)


def run() -> None:
    sys.exit(main())


if __name__ == "__main__":
    run()
