"""The console's panels: each is a `Static` that renders one `Snapshot` (plus the console's `View`).

Panels: auto (state, the running job on one line (`observe.job_line`), mode, levels, countdown, last
outcome and reason, the last 20 cycles as a timeline, and which controls are enabled), guard (each check as value / threshold with a symbol and a
word), system (CPU, RAM, disk of the home, each GPU with 0-100 % sparklines, or why there is no GPU), top
(containers, else processes), metrics (per level, quality first: held-out accuracy, expected reward, online
rewards per function; then KL and entropy; then the optimiser's numbers; constant rows on one `steady` line;
see `metric_rows`), cycles, checkpoints, alerts and the log tail. Every panel says plainly
when its source is missing (no scheduler, no GPU, no docker, an empty home).

Panels render plain `rich.text.Text` lines in fixed-width columns (cheap to draw; long lines are cut
with an ellipsis by the CSS), and skip rendering when what they depend on (`key`) is unchanged:
that is what keeps an idle console near zero CPU.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from rich.text import Text
from textual.widgets import Log, Static

from grpo_tui import observe
from grpo_tui.console.alerts import Alert
from grpo_tui.console.render import (
    DASH, OUTCOME_MARK, STATE_MARK, VERDICT_MARK, age, ago, finite, gb, last_min_max, mark, num, sparkline, timeline,
)
from grpo_tui.console.source import Snapshot

# (label, keys, scale): a row per metric a level's records carry, quality first. scale: (lo, hi) a fixed scale,
# "zero" from 0 to the largest value (KL: its size shows, not only its shape), "none" no sparkline (the loss,
# whose shape is mostly beta * KL's), None the values' own min..max. The online rows show only for online runs.
QUALITY = (("val acc", ("val_pairwise_acc",), (0.0, 1.0)), ("exp rew", ("policy_expected_reward",), None))
DRIFT = (("kl", ("kl",), "zero"), ("entropy", ("entropy",), None))
OPTIMISER = (("loss", ("loss",), "none"), ("clip", ("clip_frac_low", "clip_frac_high"), "zero"), ("lr", ("lr",), None),
             ("grad", ("grad_norm",), None), ("len", ("completion_len_mean",), None), ("trunc", ("frac_truncated",), (0.0, 1.0)),
             ("gen/s", ("gen_tokens_per_s",), None))
LABEL_COLS = 8
METRIC_FIXED_COLS = 10 + 1 + LABEL_COLS + 1 + 1 + 3 * 10  # tag, label, then last / min / max: the sparkline gets the rest


@dataclass
class View:
    """Console-side state the panels show next to the snapshot."""

    readonly: bool = False
    blocked: str | None = None  # why start actions are disabled, None when enabled
    alerts: list[Alert] = field(default_factory=list)
    spark_width: int = 20


def cell(value: str | Text, width: int, justify: str = "left") -> Text:
    """`value` cut (with an ellipsis) or padded to exactly `width` cells."""
    text = value.copy() if isinstance(value, Text) else Text(str(value))
    text.truncate(width, overflow="ellipsis")
    text.align(justify, width)  # type: ignore[arg-type]
    return text


def row(cells: Sequence[tuple[str | Text, int, str]]) -> Text:
    return Text(" ").join(cell(value, width, justify) for value, width, justify in cells)


def lines(parts: Sequence[Text]) -> Text:
    return Text("\n").join(parts)


def wrap(value: str | Text, width: int) -> list[Text]:
    """`value` in lines of at most `width` cells, broken at spaces where it can (styles kept); one line
    when `width` is too small to wrap usefully."""
    text = value.copy() if isinstance(value, Text) else Text(str(value))
    if width < 8 or text.cell_len <= width or "\n" in text.plain:
        return [text]
    plain, out, start = text.plain, [], 0
    while len(plain) - start > width:
        cut = plain.rfind(" ", start, start + width + 1)
        if cut <= start:
            cut = start + width
        out.append(text[start:cut])
        start = cut + 1 if plain[cut:cut + 1] == " " else cut
    out.append(text[start:])
    return out


def kv(rows: Sequence[tuple[str, str | Text]], width: int = 0) -> Text:
    """`key  value` lines, keys bold and aligned; with `width` (the panel's content width) a long value
    wraps onto lines indented under it instead of being cut."""
    key_w = max((len(k) for k, _ in rows), default=0)
    out: list[Text] = []
    for k, v in rows:
        parts = wrap(v, width - key_w - 1) if width else [v if isinstance(v, Text) else Text(v)]
        out.append(Text.assemble((k.ljust(key_w), "bold"), " ", parts[0]))
        out += [Text.assemble(" " * (key_w + 1), part) for part in parts[1:]]
    return lines(out)


def coarse_now(now: float, seconds: float = 60.0) -> int:
    """The clock in `seconds` steps: ages shown in minutes only need a re-render once a minute."""
    return int(now // seconds)


def _round(value: object, digits: int = 0) -> float | None:
    v = finite(value)
    return None if v is None else round(v, digits)


class Panel(Static):
    """A bordered panel with a title; `show` re-renders it from a snapshot when what it shows changed.

    `key(snap, view)` names what the panel depends on (None: always re-render); an unchanged key skips
    the render. `fixed` panels (the wide layout sizes them by CSS, not by content) also skip the
    screen's layout pass.
    """

    TITLE = ""
    fixed = False

    def on_mount(self) -> None:
        self.border_title = self.TITLE
        self._key: object = object()
        self.update(Text("waiting for the first refresh…", style="dim"))

    def show(self, snap: Snapshot, view: View) -> None:
        self._last = (snap, view)
        key = self.key(snap, view)
        if key is not None and key == self._key:
            return
        self._key = key
        self.update(self.build(snap, view), layout=not self.fixed)

    def on_resize(self) -> None:
        last = getattr(self, "_last", None)
        if last is not None:  # widths changed: draw again now, not at the next refresh
            self._key = object()
            self.show(*last)

    def key(self, snap: Snapshot, view: View) -> object | None:
        return None

    def build(self, snap: Snapshot, view: View) -> Text:
        raise NotImplementedError


class AutoPanel(Panel):
    TITLE = "auto"

    def key(self, snap: Snapshot, view: View) -> object:
        st = snap.status or {}
        cycles = snap.cycles
        counting = any(st.get(k) is not None for k in ("next_cycle_in", "cycle_running_for", "job_running_for"))
        progress = observe.job_progress(st, snap.metrics, snap.runs, snap.time) or {}
        return (snap.status_error, st.get("state"), st.get("job"), st.get("pid"), repr(st.get("config")),
                _round(st.get("next_cycle_in")), _round(st.get("cycle_running_for")), st.get("cycles_run"),
                tuple((c.get("cycle"), c.get("outcome"), c.get("end")) for c in cycles), repr(st.get("last_cycle")),
                coarse_now(snap.time, 1 if counting else 60), view.readonly, view.blocked, self.size.width,
                st.get("phase"), progress.get("step"), progress.get("target_step"), _round(progress.get("left")))

    def build(self, snap: Snapshot, view: View) -> Text:
        status = snap.status
        cycles = snap.cycles
        if status is None:
            self.border_subtitle = ""
            rows: list[tuple[str, str | Text]] = [
                ("state", mark(STATE_MARK, "no scheduler")),
                ("why", Text(snap.status_error or "not reachable", style="dim")),
                ("history", timeline(cycles))]
        else:
            self.border_subtitle = f"scheduler pid {status.get('pid', '?')}"
            cfg = status.get("config") or {}
            state = mark(STATE_MARK, status.get("state"))
            progress = observe.job_progress(status, snap.metrics, snap.runs, snap.time)
            if cfg:
                levels = ", ".join(cfg.get("levels") or []) if cfg.get("mode") == "hierarchical" else "global"
                mode: str | Text = f"{cfg.get('mode', '?')} ({levels})"
                train = cfg.get("train") or {}  # its keys win over the top-level ones
                online = " online" if train.get("mode") == "online" else ""
                plan: str | Text = (f"every {ago(cfg.get('period_sec'))} · {train.get('steps', cfg.get('steps'))}{online} steps · "
                                    f"{train.get('model', cfg.get('model'))} · ≥{cfg.get('min_groups')} groups")
            else:
                mode, plan = Text("not started since the scheduler came up", style="dim"), DASH
            nxt = status.get("next_cycle_in")
            rows = [("state", state)]
            if progress is not None:  # the running job on one line: which, step x of y, for how long, time left
                rows.append(("job", Text(observe.job_line(progress), style="bold")))
            rows += [("mode", mode), ("plan", plan),
                    ("next", f"{DASH if nxt is None else 'in ' + ago(nxt)} · cycles run: {status.get('cycles_run', 0)}")]
            last = cycles[-1] if cycles else status.get("last_cycle")
            if last:
                when = age(snap.time - last["end"]) + " ago" if last.get("end") else ""
                rows.append(("last", Text.assemble(mark(OUTCOME_MARK, last.get("outcome")),
                                                   f" #{last.get('cycle', '?')} {last.get('job', 'cycle')} {when}")))
                rows.append(("reason", Text(str(last.get("reason", "")), style="italic")))
            else:
                rows.append(("last", Text("no cycle yet", style="dim")))
            rows.append(("history", timeline(cycles)))
        if view.readonly:
            rows.append(("controls", Text("read-only: start, stop, edits off", style="yellow")))
        elif view.blocked:
            rows.append(("controls", Text(f"a/m/t off: {view.blocked}", style="yellow")))
        else:
            rows.append(("controls", Text("a start · s stop · m mine · t train", style="dim")))
        text = kv(rows, self.content_size.width)  # long plan / reason / why lines wrap under their value
        self._fit_row(text)
        return text

    def _fit_row(self, text: Text) -> None:
        """In the wide layout, grow the top row when wrapped lines need more than its 10 lines."""
        row_widget = self.parent
        if row_widget is None or row_widget.id != "top":
            return
        height = max(10, len(text.plain.splitlines()) + 2) if self.fixed else None  # narrow: the CSS's auto
        if height != getattr(self, "_row_height", None):
            self._row_height = height
            row_widget.styles.height = height


def _amount(value: object) -> str:
    """Free space for the guard: one decimal below 1000, whole numbers above; n/a when not measured."""
    v = finite(value)
    if v is None:
        return "n/a"
    return f"{v:.0f}" if abs(v) >= 1000 else f"{v:.1f}"


class GuardPanel(Panel):
    TITLE = "guard"

    def key(self, snap: Snapshot, view: View) -> object:
        report = snap.guard or {}
        return (snap.stats_origin, report.get("ok"), report.get("reason"),
                tuple((c.get("name"), _round(c.get("value"), 1), c.get("threshold"), c.get("verdict"))
                      for c in report.get("checks", [])))

    def build(self, snap: Snapshot, view: View) -> Text:
        report = snap.guard
        if report is None:
            return Text("guard not evaluated yet", style="dim")
        out = []
        for check in report.get("checks", []):
            off = check.get("verdict") == "off"
            threshold = "off" if off else f"{_amount(check.get('threshold'))} {check.get('unit', '')}"
            out.append(row([(mark(VERDICT_MARK, check.get("verdict")), 6, "left"),
                            (Text(check.get("name", "?"), style="bold"), 4, "left"),
                            (f"{_amount(check.get('value'))} / {threshold}", 16, "left")]))
        self.set_class(not report.get("ok"), "-wrap")
        out.append(Text.assemble(("overall ", "bold"), mark(VERDICT_MARK, "ok" if report.get("ok") else "FAIL"),
                                 (" " + str(report.get("reason", "")), "italic")))
        if snap.stats_origin == "local":
            out.append(Text("(measured here: no scheduler)", style="dim"))
        return lines(out)


SERIES_POINTS = 60  # source.Series keeps this many points: a wider sparkline would only pad


class SystemPanel(Panel):
    TITLE = "system"

    def build(self, snap: Snapshot, view: View) -> Text:
        stats, series = snap.stats, snap.series
        spark: dict[int, tuple[str, str, str, str]] = {}  # row -> (value, series key, style, suffix), drawn at the end

        def pct(value: str, key: str, suffix: str, style: str = "cyan") -> Text:  # a percentage series row
            spark[len(rows)] = (value, key, style, suffix)
            return Text()
        self.border_subtitle = "measured here" if snap.stats_origin == "local" else ""
        if not stats:
            return Text("no stats yet", style="dim")
        rows: list[tuple[str, str | Text]] = []
        cpu, ram, disk = stats.get("cpu") or {}, stats.get("ram") or {}, stats.get("disk") or {}
        if "unavailable" in cpu or not cpu:
            rows.append(("CPU", Text(f"unavailable: {cpu.get('unavailable', 'no data')}", style="dim")))
        else:
            rows.append(("CPU", pct(f"{num(cpu.get('percent'))}%", "cpu", f" load {gb(cpu.get('load1'))}/{cpu.get('cores', '?')}c")))
        if "unavailable" in ram or not ram:
            rows.append(("RAM", Text(f"unavailable: {ram.get('unavailable', 'no data')}", style="dim")))
        else:
            rows.append(("RAM", pct(f"{num(ram.get('percent'))}%", "ram", f" {gb(ram.get('available_gb'))}/{gb(ram.get('total_gb'))}G free")))
        if "unavailable" in disk or not disk:
            rows.append(("disk", Text(f"unavailable: {disk.get('unavailable', 'no data')}", style="dim")))
        else:
            rows.append(("disk", f"{gb(disk.get('free_gb'))}/{gb(disk.get('total_gb'))}G free "
                                 f"({num(disk.get('percent'))}% used) {disk.get('path', '')}"))
        gpus = stats.get("gpus") or {}
        devices = gpus.get("devices") or []
        if not devices:
            rows.append(("GPU", Text(f"✗ no GPU — {gpus.get('unavailable', 'no GPU visible')}", style="yellow")))
        for dev in devices:
            i = dev.get("index")
            rows.append((f"GPU{i}", pct(f"{num(dev.get('util'))}%", f"gpu{i}.util", " util")))
            rows.append(("", pct(f"{gb(dev.get('mem_used_mb', 0) / 1024)}/{gb(dev.get('mem_total_mb', 0) / 1024)}G",
                                 f"gpu{i}.mem", " mem", style="magenta")))
            rows.append(("", Text(f"{num(dev.get('temp_c'))}°C {num(dev.get('power_w'))}W {dev.get('name', '')}",
                                  style="dim")))
        # the sparklines line up after the widest value and fill what the key, value and widest suffix leave
        lead = max((len(v) for v, *_ in spark.values()), default=0) + 1
        key_w = max(len(k) for k, _ in rows) + 1
        width = self.content_size.width
        rest = width - key_w - lead - max((len(x) for *_, x in spark.values()), default=0)
        w = min(SERIES_POINTS, max(4, rest)) if width else max(8, view.spark_width // 2)
        for i, (value, key, style, suffix) in spark.items():
            line = sparkline(series.get(key, []), w, style=style, lo=0.0, hi=100.0)  # percentages: fixed 0..100
            rows[i] = (rows[i][0], Text.assemble(value.ljust(lead), line, suffix))
        return kv(rows)


class TopPanel(Panel):
    TITLE = "top"

    def build(self, snap: Snapshot, view: View) -> Text:
        stats = snap.stats
        containers = stats.get("containers") or {}
        out: list[Text] = []
        name_w = max(8, self.size.width - 14)
        head = [("cpu%", 5, "right"), ("MB", 6, "right")]
        if containers.get("items"):
            out.append(row([(Text("container", style="bold"), name_w, "left"), *head]))
            out += [row([(c["name"], name_w, "left"), (num(round(c["cpu_percent"], 1)), 5, "right"),
                         (f"{c['mem_mb']:.0f}", 6, "right")]) for c in containers["items"]]
        else:
            why = containers.get("unavailable", "no running containers" if "items" in containers else "no data")
            out.append(Text(f"containers: {why}", style="dim"))
        procs = (stats.get("processes") or {}).get("items") or []
        if procs:
            out.append(row([(Text("process", style="bold"), name_w, "left"), *head]))
            out += [row([(f"{p['name']} ({p['pid']})", name_w, "left"), (num(round(p["cpu_percent"], 1)), 5, "right"),
                         (f"{p['mem_mb']:.0f}", 6, "right")]) for p in procs]
        elif not containers.get("items"):
            out.append(Text("processes: no data", style="dim"))
        return lines(out)


def metric_values(records: list[dict], keys: tuple[str, ...]) -> list[object] | None:
    """The series of one metric over the records that log it (a sum when several keys, e.g. clip low + high;
    held-out accuracy is logged every `val_interval` steps only); None when never logged."""
    if not any(k in r for r in records for k in keys):
        return None
    out: list[object] = []
    for r in records:
        vals = [r.get(k) for k in keys if k in r]
        if vals:
            out.append(None if any(v is None for v in vals) else sum(vals))
    return out


def metric_rows(records: list[dict]) -> list[tuple[str, tuple[str, ...], object]]:
    """The rows a level shows, in reading order: held-out quality, then (online runs) each reward function's
    mean and the policy's own mean reward, then KL and entropy, then the optimiser's numbers, and last (offline
    runs) `data rew`, the mean reward of the logged candidates, which a policy cannot move."""
    fns = sorted({k[len("reward/"):-len("_mean")] for r in records for k in r if k.startswith("reward/") and k.endswith("_mean")})
    online = bool(fns) or any("completion_len_mean" in r for r in records)
    rewards = [(f"r:{fn}", (f"reward/{fn}_mean",), None) for fn in fns]
    if online:
        return [*QUALITY, *rewards, ("reward", ("reward_mean",), None), *DRIFT, *OPTIMISER]
    return [*QUALITY, *DRIFT, *OPTIMISER, ("data rew", ("reward_mean",), None)]


def constant(values: list[object]) -> float | None:
    """The value of a series that never changed (at least 3 points, all finite), else None."""
    good = [finite(v) for v in values]
    if len(good) < 3 or any(v is None for v in good) or max(good) != min(good):  # type: ignore[type-var]
        return None
    return good[0]


def short(value: float) -> str:
    """A constant's value, short: 1e-4, 0.04, 0."""
    return re.sub(r"\.?0*e([+-])0*(\d)", r"e\1\2", num(value))


def headline(records: list[dict]) -> Text | None:
    """A level's quality headline: the latest held-out pairwise accuracy and expected reward, and where the
    accuracy started (the untrained policy's, logged with the run's first step, else the first measurement)."""
    vals = [r for r in records if r.get("val_pairwise_acc") is not None]
    if not vals:
        return None
    last = vals[-1]
    start = next((r["val_pairwise_acc_start"] for r in records if r.get("val_pairwise_acc_start") is not None), None)
    if start is None and len(vals) > 1:
        start = vals[0]["val_pairwise_acc"]
    parts = [("held-out acc ", "dim"), (num(last["val_pairwise_acc"]), "bold")]
    if start is not None:
        parts.append((f" (from {num(start)})", "dim"))
    if last.get("policy_expected_reward") is not None:
        parts += [(" · exp reward ", "dim"), (num(last["policy_expected_reward"]), "bold")]
    return Text.assemble(*parts)  # the step it was measured at: under the level's name


class MetricsPanel(Panel):
    TITLE = "metrics"

    def key(self, snap: Snapshot, view: View) -> object:
        return (view.spark_width, tuple((level, len(recs), repr(recs[-1]) if recs else None)
                                        for level, recs in snap.metrics.items()))

    def build(self, snap: Snapshot, view: View) -> Text:
        if not snap.metrics or not any(snap.metrics.values()):
            self.border_title = "metrics"
            return Text("no training metrics yet: they appear once a level trains\n"
                        "(<home>/auto/ckpts_<level>/metrics.jsonl)", style="dim")
        shown = max(len(r) for r in snap.metrics.values())
        self.border_title = f"metrics · last {shown} logged steps · trend  last  min  max"
        width = self.content_size.width
        sw = min(120, max(8, width - METRIC_FIXED_COLS)) if width else view.spark_width
        out: list[Text] = []
        for level, records in snap.metrics.items():
            if not records:
                continue
            tags = [Text(level, style="bold"), Text(f"step {records[-1].get('step', '?')}", style="dim")]
            world = records[-1].get("world_size") or 1  # ranks of a data-parallel run (`grpo train --nproc N`)
            if world > 1:
                tags.append(Text(f"world {world}", style="dim"))
            quality = headline(records)
            if quality is not None:
                out.append(Text.assemble((level.ljust(10), "bold"), " ", quality))
                tags[0] = Text("")
            steady: list[str] = []  # rows that never changed: one short line for all of them
            for label, keys, scale in metric_rows(records):
                values = metric_values(records, keys)
                if values is None:
                    continue
                fixed = constant(values)
                if fixed is not None:
                    steady.append(f"{label} {short(fixed)} ({'always' if fixed == 0 else 'constant'})")
                    continue
                last, lo, hi = last_min_max(values)
                bad = finite(last) is None
                if scale == "none":
                    trend: Text = Text("")
                elif scale == "zero":
                    trend = sparkline(values, sw, lo=min(0.0, lo or 0.0), hi=hi)
                else:
                    trend = sparkline(values, sw, *(("cyan", *scale) if isinstance(scale, tuple) else ()))
                out.append(row([(tags.pop(0) if tags else "", 10, "left"), (label, LABEL_COLS, "left"), (trend, sw, "left"),
                                (Text(num(last, missing="NaN/inf"), style="bold red" if bad else ""), 9, "right"),
                                (num(lo), 9, "right"), (num(hi), 9, "right")]))
            if steady:
                out.append(Text.assemble(cell(tags.pop(0) if tags else "", 10), " ", ("steady ", "dim"), " · ".join(steady)))
            out += [tag for tag in tags]  # fewer rows than tags (every metric constant): the tags still show
        return lines(out)


class CyclesPanel(Panel):
    TITLE = "cycles"

    def key(self, snap: Snapshot, view: View) -> object:
        cycles = snap.cycles
        recent = bool(cycles) and snap.time - (cycles[-1].get("end") or 0) < 60
        return (snap.status is None, tuple((c.get("cycle"), c.get("outcome"), c.get("end")) for c in cycles[-10:]),
                coarse_now(snap.time, 1 if recent else 60), self.size.width)

    def build(self, snap: Snapshot, view: View) -> Text:
        cycles = snap.cycles
        self.border_subtitle = "from cycles.jsonl: no scheduler" if snap.status is None and cycles else ""
        if not cycles:
            return Text("no scheduler, and no cycles.jsonl in this home" if snap.status is None
                        else "no cycle has run in this home yet", style="dim")
        recent = list(reversed(cycles[-10:]))
        names = [f"{rec.get('cycle', '?')}" + ("" if rec.get("job", "cycle") == "cycle" else f" {rec['job']}")
                 for rec in recent]
        num_w = max(1, *(len(n) for n in names))  # as wide as the widest cycle number (or job), no wider
        head = [("#", num_w, "left"), ("outcome", 10, "left"), ("ago", 5, "right"), ("took", 5, "right")]
        fixed_w = num_w + 10 + 5 + 5 + 4
        reason_w = self.content_size.width - fixed_w
        out = [Text.assemble(row(head), " reason", style="bold")]
        for name, rec in zip(names, recent):
            end, start = rec.get("end"), rec.get("start")
            cells = row([(name, num_w, "left"), (mark(OUTCOME_MARK, rec.get("outcome")), 10, "left"),
                         (age(snap.time - end) if end else DASH, 5, "right"),
                         (ago(end - start) if end and start else DASH, 5, "right")])
            reason = str(rec.get("reason", ""))
            if reason_w >= 16:  # the reason wraps in its column
                parts = wrap(reason, reason_w)
                out.append(Text.assemble(cells, " ", parts[0]))
                out += [Text(" " * (fixed_w) + part.plain) for part in parts[1:]]
            else:  # too narrow for a column: the reason goes on its own lines below
                out.append(cells)
                out += [Text.assemble("  ", part) for part in wrap(reason, max(8, self.content_size.width - 2))]
        return lines(out)


class CheckpointsPanel(Panel):
    TITLE = "checkpoints"

    def key(self, snap: Snapshot, view: View) -> object:
        newest = max((r["mtime"] for r in snap.checkpoints), default=0.0)
        return (tuple((r["level"], r["step"], r["mtime"]) for r in snap.checkpoints),
                coarse_now(snap.time, 1 if snap.time - newest < 60 else 60))

    def build(self, snap: Snapshot, view: View) -> Text:
        if not snap.checkpoints:
            return Text("no checkpoints yet", style="dim")
        cols = [(10, "left"), (7, "right"), (6, "right"), (7, "right"), (9, "right")]
        head = row([(n, w, j) for n, (w, j) in zip(("level", "step", "age", "MB", "loss"), cols)])
        head.stylize("bold")
        out = [head]
        for r in snap.checkpoints:
            values = (r["level"], str(r["step"]), age(snap.time - r["mtime"]), f"{r['size_mb']:.1f}", num(r.get("loss")))
            out.append(row([(v, w, j) for v, (w, j) in zip(values, cols)]))
        return lines(out)


class AlertsPanel(Panel):
    TITLE = "alerts"

    def key(self, snap: Snapshot, view: View) -> object:
        return tuple((a.severity, a.text) for a in view.alerts)

    def build(self, snap: Snapshot, view: View) -> Text:
        if not view.alerts:
            return Text("✓ no alerts", style="green")
        out = []
        for alert in view.alerts:
            symbol, word, style = ("✗", "ERROR", "bold red") if alert.severity == "error" else ("!", "WARN", "yellow")
            out.append(Text.assemble((f"{symbol} {word} ", style), alert.text))
        return lines(out)


class LogPanel(Log):
    """The newest child log's tail, kept scrolled to its end."""

    def __init__(self, **kw: object) -> None:
        super().__init__(max_lines=200, auto_scroll=True, **kw)  # type: ignore[arg-type]
        self._shown: tuple[str | None, tuple[str, ...]] | None = None

    def on_mount(self) -> None:
        self.border_title = "log"
        self.write_line("waiting for the first refresh…")

    def show(self, snap: Snapshot, view: View) -> None:
        log = snap.log or {}
        name, text = log.get("name"), tuple(log.get("lines") or ())
        if (name, text) == self._shown:
            return
        self._shown = (name, text)
        self.border_title = f"log: {name}" if name else "log"
        self.clear()
        if not name:
            self.write_line("no logs yet (<home>/auto/logs/, <home>/auto/daemon.log)")
        else:
            self.write_lines(text or ("(empty)",))
