"""One auto cycle: guard check, mine since the cursor, train each level in a child process, nudge policy.

Mined groups accumulate per level in `auto/pending_<level>.jsonl` until there are at least
`min_groups`; then they become `auto/<level>.jsonl`, the level trains on them, and only after that
training succeeds are they cleared, so every mined group is trained on once even when a cycle
mines only a few or a training fails.

Each level's trainer gets the top-level train keys as flags and the auto config's `train:` section as
`auto/train_<level>.yaml` (`--config-file`; `mode: online` writes `online: true`, so an online level
samples completions for the prompts of the groups it has just mined); see `train_args`.

Mining and training run as child processes of the host (`python -m grpo_tui.cli ...`), so a trainer
crash or out-of-memory kill fails that cycle with its reason recorded and the scheduler goes on.
A stop request sends the running child SIGTERM (the trainer checkpoints and exits) and SIGKILL
after `stop_timeout` seconds; a stopped trainer's summary still fills `trained` (from/to steps, with
`"stopped": true`). Children get GRPO_DIE_WITH_PARENT, so they end with the host (grpo_tui.lifeline),
and before a level trains, a trainer left over from a dead host that still holds the run folder's lock
is ended and recorded under `stale: {level: {"pid", "signal", "ended"}}`. Each cycle appends one record to `<home>/auto/cycles.jsonl`:

    {"cycle", "start", "end", "outcome": "ok"|"skipped"|"failed"|"stopped", "reason",
     "groups": {level: n}, "trained": {level: {"from_step", "to_step", "world_size", ...}}, "mine": {...summary},
     "serve": {level: {"ok", "step", "export", "kind", "reason"}}}

With `on_checkpoint.export`, a level that trained is exported (`grpo export`, a child logged as
`cycle_N_export_<level>`) into `<home>/serve/<level>/step_NNNNNN`, `serve/<level>/current` is switched
to it (a symlink replaced atomically), older exports beyond `on_checkpoint.keep` are deleted, and the
hook `command` runs through the shell (GRPO_EXPORT_DIR, GRPO_LEVEL, GRPO_STEP; `timeout_sec`; output in
`cycle_N_serve_<level>.log`). Its failure is recorded under `serve` and never changes the outcome.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import orjson
import yaml

from grpo_tui import guard
from miner.atomic import open_nofollow, write_atomic as write_bytes_atomic
from grpo_tui.config import AutoConfig
from grpo_tui.cycles import append_cycle, next_cycle_number
from grpo_tui.lifeline import child_env, end_stale_trainer

AUTO = "auto"
CHECKPOINT_NAME = re.compile(r"^step_(\d{6,})$")


class ChildFailed(Exception):
    """A mining or training child exited badly; the message is the recorded reason."""


class ChildStopped(Exception):
    """A stop request ended the child; `summary` is the JSON summary it printed while stopping, if any."""

    def __init__(self, message: str, summary: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.summary = summary or {}


def level_paths(home: Path, level: str) -> tuple[Path, Path]:
    """(dataset file, checkpoint root) of one level under `<home>/auto/`."""
    auto = Path(home) / AUTO
    return auto / f"{level}.jsonl", auto / f"ckpts_{level}"


class SubprocessCycleRunner:
    """Runs cycles with `grpo mine` and `grpo train` as child processes of the host."""

    def __init__(self, home: Path, stop_timeout: float = 30.0, python: str = sys.executable) -> None:
        self.home, self.stop_timeout, self.python = Path(home), stop_timeout, python
        self.current: subprocess.Popen[bytes] | None = None
        self.phase: str | None = None  # what the running child does ("mine", "train global"), for `status`

    def _grpo(self, *args: str) -> list[str]:
        return [self.python, "-m", "grpo_tui.cli", "--home", str(self.home), *args]

    def _run_child(self, argv: list[str], log_name: str, stop: threading.Event) -> dict[str, Any]:
        """Run one child to completion; its stdout's last line is a JSON summary."""
        log_dir = self.home / AUTO / "logs"
        log_dir.mkdir(parents=True, exist_ok=True)
        log_path = log_dir / f"{log_name}.log"
        try:
            err = open_nofollow(log_path)  # a planted symlink is refused, never followed
        except OSError as exc:
            raise ChildFailed(f"{log_name}: cannot open its log: {exc}") from exc
        with err:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err,
                                    env=child_env())  # it dies with this host (grpo_tui.lifeline)
            self.current, self.phase = proc, log_name.split("_", 2)[-1].replace("_", " ")  # cycle_00003_train_global
            try:
                out = self._wait(proc, stop)
            finally:
                self.current = self.phase = None
        lines = out.decode(errors="replace").strip().splitlines()
        if stop.is_set() and proc.returncode != 0:  # a stopped trainer still prints its summary (exit 130)
            raise ChildStopped(f"stopped during {log_name}", _json_line(lines[-1]) if lines else None)
        if proc.returncode != 0:
            raise ChildFailed(f"{log_name} {_exit_text(proc.returncode)}: {_last_line(log_path)}")
        try:
            return orjson.loads(lines[-1]) if lines else {}
        except orjson.JSONDecodeError as exc:
            raise ChildFailed(f"{log_name} printed no JSON summary (see {log_path})") from exc

    def _wait(self, proc: subprocess.Popen[bytes], stop: threading.Event) -> bytes:
        chunks: list[bytes] = []
        reader = threading.Thread(target=lambda: chunks.append(proc.stdout.read() if proc.stdout else b""), daemon=True)
        reader.start()
        while proc.poll() is None:
            if stop.wait(0.1):
                proc.send_signal(signal.SIGTERM)  # the trainer checkpoints and exits
                try:
                    proc.wait(self.stop_timeout)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        reader.join(5)
        return b"".join(chunks)

    def _mine(self, cfg: AutoConfig, stop: threading.Event, n: int) -> dict[str, Any]:
        """Mine what came after the cursor into `auto/incoming/`, then add it to each level's pending groups."""
        incoming = self.home / AUTO / "incoming"
        args = ["mine", "--since-cursor", "--cursor", "auto", "--hours", str(cfg.hours), "--json"]  # not `manual`'s entries
        if cfg.mode == "hierarchical":
            args += ["--hierarchical", "--out-dir", str(incoming)]
        else:
            args += ["--out", str(incoming / "global.jsonl")]
        summary = self._run_child(self._grpo(*args), f"cycle_{n:05d}_mine", stop)
        for level in _levels(cfg):
            add_pending(self.home, level, incoming / f"{level}.jsonl")
        return summary

    def _train(self, cfg: AutoConfig, level: str, stop: threading.Event, n: int) -> dict[str, Any]:
        return self._run_child(self._grpo(*train_args(self.home, cfg, level)), f"cycle_{n:05d}_train_{level}", stop)

    def _apply_policy(self, cfg: AutoConfig, stop: threading.Event, n: int) -> dict[str, Any]:
        workspace = cfg.workspace or Path.cwd()
        args = ["apply-policy", "--hours", str(cfg.hours), "--top-k", str(cfg.top_k), "--bottom-k", str(cfg.bottom_k),
                "--workspace", str(workspace), "--json"]
        return self._run_child(self._grpo(*args), f"cycle_{n:05d}_policy", stop)

    def run(self, cfg: AutoConfig, stop: threading.Event, job: str = "cycle") -> dict[str, Any]:
        """Run a whole cycle, or one part of it (`mine`, `train` on the latest datasets); record it."""
        n = next_cycle_number(self.home)
        record: dict[str, Any] = {"cycle": n, "job": job, "start": time.time(), "groups": {}, "trained": {}}
        steps = {"cycle": self._cycle, "mine": self._mine_only, "train": self._train_latest}[job]
        try:
            outcome, reason = steps(cfg, stop, n, record)
        except ChildStopped as exc:
            outcome, reason = "stopped", str(exc)
        except ChildFailed as exc:
            outcome, reason = "failed", str(exc)
        record.update(outcome=outcome, reason=reason, end=time.time())
        append_cycle(self.home, record)
        return record

    def _mine_into(self, cfg: AutoConfig, stop: threading.Event, n: int, record: dict[str, Any]) -> list[str]:
        summary = self._mine(cfg, stop, n)
        record["mine"] = summary
        levels = _levels(cfg)
        record["groups"] = {lvl: int(summary.get("groups", {}).get(lvl, 0)) for lvl in levels}
        record["pending"] = {lvl: count_lines(pending_path(self.home, lvl)) for lvl in levels}
        return levels

    def _mine_only(self, cfg: AutoConfig, stop: threading.Event, n: int, record: dict[str, Any]) -> tuple[str, str]:
        self._mine_into(cfg, stop, n, record)
        return "ok", "mined " + ", ".join(f"{lvl} {k}" for lvl, k in record["groups"].items())

    def _train_latest(self, cfg: AutoConfig, stop: threading.Event, n: int, record: dict[str, Any]) -> tuple[str, str]:
        ready = [lvl for lvl in _levels(cfg) if _has_groups(level_paths(self.home, lvl)[0])]
        if not ready:
            return "skipped", "no mined dataset yet; mine first"
        return self._train_levels(cfg, stop, n, record, ready)

    def _cycle(self, cfg: AutoConfig, stop: threading.Event, n: int, record: dict[str, Any]) -> tuple[str, str]:
        report = guard.check(self.home, guard.load_thresholds(self.home))
        record["guard"] = report.to_dict()
        if not report.ok:
            return "skipped", f"guard: {report.reason}"
        levels = self._mine_into(cfg, stop, n, record)
        ready = [lvl for lvl in levels if record["pending"][lvl] >= cfg.min_groups]
        if not ready:
            counts = ", ".join(f"{lvl} {record['pending'][lvl]}" for lvl in levels)
            return "skipped", f"too few new groups ({counts} < {cfg.min_groups})"
        for level in ready:
            promote_pending(self.home, level)
        outcome, reason = self._train_levels(cfg, stop, n, record, ready)
        if outcome == "ok" and cfg.apply_policy:
            record["policy"] = self._apply_policy(cfg, stop, n)
        skipped = [lvl for lvl in levels if lvl not in ready]
        return outcome, reason + (f"; too few groups for {', '.join(skipped)}" if skipped else "")

    def _train_levels(self, cfg: AutoConfig, stop: threading.Event, n: int, record: dict[str, Any],
                      ready: list[str]) -> tuple[str, str]:
        for level in ready:
            if stop.is_set():
                return "stopped", "stop requested"
            report = guard.check(self.home, guard.load_thresholds(self.home))  # right before each training start
            if not report.ok:
                return "skipped", f"guard before training {level}: {report.reason}"
            stale = end_stale_trainer(level_paths(self.home, level)[1], self.stop_timeout)
            if stale is not None:  # a trainer left over from a host that died still held this run folder
                record.setdefault("stale", {})[level] = stale
            try:
                result = self._train(cfg, level, stop, n)
            except ChildStopped as exc:
                if exc.summary:  # what the stopped trainer checkpointed (steps from -> to)
                    record["trained"][level] = _trained(exc.summary, cfg) | {"stopped": True}
                raise
            if record.get("job") == "cycle":
                clear_pending(self.home, level)  # trained on: those groups are consumed exactly once
            record["trained"][level] = _trained(result, cfg)
            if cfg.on_checkpoint.export:
                record.setdefault("serve", {})[level] = self._serve(cfg, level, result, stop, n)
        return "ok", f"trained {', '.join(ready)}"

    def _serve(self, cfg: AutoConfig, level: str, result: dict[str, Any], stop: threading.Event, n: int) -> dict[str, Any]:
        """The serving hook after `level` trained: export its newest checkpoint into `serve/<level>/step_N`,
        point `serve/<level>/current` at it, run the hook command. Never raises: a failure is the entry's
        `{"ok": false, "reason"}` in the cycle record, and the cycle's outcome stays that of training."""
        hook = cfg.on_checkpoint
        ckpt = Path(str(result.get("checkpoint") or ""))
        if not CHECKPOINT_NAME.match(ckpt.name):
            return {"ok": False, "reason": f"training reported no checkpoint ({result.get('checkpoint')!r})"}
        ckpt = ckpt.absolute()  # children run in the host's cwd (and train's --out is absolute anyway)
        root = serve_root(self.home, level)
        export_dir, step = root / ckpt.name, int(CHECKPOINT_NAME.match(ckpt.name).group(1))
        entry: dict[str, Any] = {"ok": False, "step": step, "export": str(export_dir)}
        args = ["export", "--checkpoint", str(ckpt), "--out", str(export_dir), "--dtype", hook.dtype, "--force", "--json"]
        args.append("--merge-lora" if hook.merge_lora or not _is_lora(ckpt) else "--adapter-only")
        try:
            entry["kind"] = self._run_child(self._grpo(*args), f"cycle_{n:05d}_export_{level}", stop).get("kind")
            point_current(root, export_dir.name)
            prune_exports(root, hook.keep)
        except (ChildFailed, ChildStopped, OSError) as exc:
            return entry | {"reason": f"export: {exc}"}
        if hook.command:
            env = {**os.environ, "GRPO_EXPORT_DIR": str(export_dir), "GRPO_LEVEL": level, "GRPO_STEP": str(step)}
            problem = self._run_hook(hook.command, env, hook.timeout_sec, f"cycle_{n:05d}_serve_{level}", stop)
            if problem:
                return entry | {"reason": f"command: {problem}"}
        return entry | {"ok": True}

    def _run_hook(self, command: str, env: dict[str, str], timeout: float, log_name: str, stop: threading.Event) -> str | None:
        """Run the hook command through the shell (its own process group, output into the cycle's log);
        the reason it failed, or None. Past `timeout` seconds, or on a stop request, its group is killed."""
        log_path = self.home / AUTO / "logs" / f"{log_name}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        try:
            out = open_nofollow(log_path)
        except OSError as exc:
            return f"cannot open its log ({exc})"
        with out:
            try:
                proc = subprocess.Popen(command, shell=True, env=env, cwd=self.home, stdin=subprocess.DEVNULL,
                                        stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
            except OSError as exc:
                return f"cannot start ({exc})"
            deadline = time.monotonic() + timeout
            while proc.poll() is None:
                if stop.wait(0.1) or time.monotonic() > deadline:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
                    return "stopped" if stop.is_set() else f"timed out after {timeout:g} s (see {log_path})"
        if proc.returncode != 0:
            return f"{_exit_text(proc.returncode)}: {_last_line(log_path)}"
        return None


AUTO_VAL_SPLIT = 0.1  # share of each level's groups held out (by prompt) unless the train section says otherwise


def train_args(home: Path, cfg: AutoConfig, level: str) -> list[str]:
    """`grpo train` arguments of one level: its dataset and run dir, `--resume`, the top-level train keys as
    flags, and the `train:` section (if any) as `--config-file auto/train_<level>.yaml`. A section key
    wins over its top-level shorthand, whose flag is then left out (flags would beat the file)."""
    dataset, out = level_paths(home, level)
    section = cfg.train.overrides()
    args = ["train", "--dataset", str(dataset), "--out", str(out)]

    def put(key: str, value: Any) -> None:
        if key not in section:
            args.extend(["--" + key.replace("_", "-"), str(value)])

    put("model", cfg.model)
    put("device", cfg.device)
    put("steps", cfg.steps)
    args.append("--resume")
    if cfg.lr is not None:  # unset: the trainer uses the backend's default lr
        put("lr", cfg.lr)
    put("beta", cfg.beta)
    put("kl_warmup", cfg.kl_warmup)
    args.append("--json")
    if "val_split" not in section and "val_dataset" not in section:
        args += ["--val-split", str(AUTO_VAL_SPLIT)]  # held-out quality per cycle (policy.data.split_holdout)
    if "val_interval" not in section:  # four held-out measurements per cycle: the console shows them move
        args += ["--val-interval", str(max(1, int(cfg.train_value("steps")) // 4))]
    if cfg.train_value("lr_step"):
        put("lr_step", cfg.lr_step)
        put("lr_gamma", cfg.lr_gamma)
    if cfg.train_value("kl_target") is not None:
        put("kl_target", cfg.kl_target)
    if cfg.train.preset:
        args += ["--preset", cfg.train.preset]  # below the section's keys (--config-file) and the flags
    path = Path(home) / AUTO / f"train_{level}.yaml"
    if section:
        write_bytes_atomic(path, yaml.safe_dump(section, sort_keys=True).encode())
        args += ["--config-file", str(path)]
    else:
        path.unlink(missing_ok=True)  # no stale section beside a run that did not use one
    return args


def serve_root(home: Path, level: str) -> Path:
    """Where a level's exports go: `<home>/serve/<level>/step_NNNNNN`, and `current` pointing at one."""
    return Path(home) / "serve" / level


def point_current(root: Path, name: str) -> None:
    """Switch `root/current` to the export `name` in one step: a new relative symlink, then os.replace."""
    tmp = root / ".current.tmp"
    tmp.unlink(missing_ok=True)
    os.symlink(name, tmp)
    os.replace(tmp, root / "current")


def prune_exports(root: Path, keep: int) -> None:
    """Delete all exports of `root` but the one `current` points at and the newest `keep` others."""
    current = os.readlink(root / "current") if (root / "current").is_symlink() else None
    found = sorted((p for p in root.iterdir() if p.is_dir() and not p.is_symlink() and CHECKPOINT_NAME.match(p.name)), reverse=True)
    for path in [p for p in found if p.name != current][keep:]:
        shutil.rmtree(path, ignore_errors=True)


def _is_lora(ckpt: Path) -> bool:
    try:
        meta = orjson.loads((ckpt / "meta.json").read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return False  # the export child reads it again and says what is wrong
    return int(meta.get("policy", {}).get("lora_r", 0) or 0) > 0


def pending_path(home: Path, level: str) -> Path:
    return Path(home) / AUTO / f"pending_{level}.jsonl"


def count_lines(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.exists() else 0


def add_pending(home: Path, level: str, mined: Path) -> None:
    """Append newly mined groups to the level's pending groups (atomically: old + new, then replace)."""
    if not mined.exists() or mined.stat().st_size == 0:
        return
    path = pending_path(home, level)
    old = path.read_bytes() if path.exists() else b""
    new = mined.read_bytes()
    write_bytes_atomic(path, old + new if new.endswith(b"\n") else old + new + b"\n")
    mined.unlink()


def promote_pending(home: Path, level: str) -> None:
    """The pending groups become the level's dataset (`auto/<level>.jsonl`), the one the trainer reads."""
    write_bytes_atomic(level_paths(home, level)[0], pending_path(home, level).read_bytes())


def clear_pending(home: Path, level: str) -> None:
    write_bytes_atomic(pending_path(home, level), b"")


def _levels(cfg: AutoConfig) -> list[str]:
    return list(cfg.levels) if cfg.mode == "hierarchical" else ["global"]


def _has_groups(path: Path) -> bool:
    return path.exists() and path.stat().st_size > 0


def _trained(result: dict[str, Any], cfg: AutoConfig) -> dict[str, Any]:
    """A trainer summary as the cycle record's `trained[level]` entry; `world_size` is the processes the
    level trained on (the summary's, else the `train:` section's nproc)."""
    return {"world_size": result.get("world_size") or cfg.train.nproc, "from_step": result.get("start_step"), "to_step": result.get("step"),
            "loss": result.get("loss"), "checkpoint": result.get("checkpoint"), "val_acc": result.get("val_pairwise_acc"),
            "expected_reward": result.get("policy_expected_reward")}  # fmt: skip


def _json_line(line: str) -> dict[str, Any] | None:
    try:
        value = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


def _exit_text(code: int) -> str:
    if code < 0:
        name = signal.Signals(-code).name
        hint = " (out of memory?)" if -code == signal.SIGKILL else ""
        return f"killed by {name}{hint}"
    return f"exited with code {code}"


def _last_line(path: Path) -> str:
    lines = [ln for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    return lines[-1].strip()[:300] if lines else "no output"
