"""`grpo bench [CASES...]`: benchmark the hot path against baselines, in fresh subprocesses.

Cases come from the `bench` registry (default: logprob, loss, fused-linear); each case runs every
provider it has (ours, naive, and trl / liger where installed) at each token count and vocabulary.
Output: a rich table; `--json` sends the table to stderr and prints one JSON object on stdout.
`--aot` adds the Triton ahead-of-time compile report (alone when no CASES are named).
`ddp` is not a registry case: it runs offline `grpo train` with `--nproc 1` and `--nproc N` (`bench.ddp`)
and prints steps/s, speedup and scaling efficiency (JSON key `ddp`).
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

ARCHS = ("sm_80", "sm_90a")


def _int_list(minimum: int):
    def parse(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> tuple[int, ...]:
        out: list[int] = []
        for value in values:
            for part in filter(None, value.split(",")):
                try:
                    number = int(part)
                except ValueError:
                    raise click.BadParameter(f"{part!r} is not an integer") from None
                if number < minimum:
                    raise click.BadParameter(f"{number} is below {minimum}")
                out.append(number)
        return tuple(dict.fromkeys(out))

    return parse


@click.command("bench")
@click.argument("cases", nargs=-1, metavar="[CASES]...")
@click.option("--tokens", multiple=True, metavar="N[,N..]", callback=_int_list(1), help="Token counts N (comma-separated or repeated); default per case (logprob, loss, fused-linear: 8192 on CUDA; rollout: max new tokens per completion, 16).")
@click.option("--vocab", multiple=True, metavar="V[,V..]", callback=_int_list(2), help="Vocabulary sizes V, any value; default 50257,128256,151936.")
@click.option("--hidden", type=click.IntRange(min=1), help="Hidden size H: fused-linear (default 256); train-step and rollout, the model's (default 64).")
@click.option("--dtype", type=click.Choice(["fp32", "bf16"]), default="fp32", show_default=True, help="Logits / hidden / weight dtype.")
@click.option("--provider", "providers", multiple=True, metavar="NAME", help="Only these providers (repeatable): ours, naive, trl, liger.")
@click.option("--repeats", type=click.IntRange(min=1), default=5, show_default=True, help="Timed runs per row.")
@click.option("--warmup", type=click.IntRange(min=0), default=1, show_default=True, help="Untimed runs before measuring.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object as the last line of stdout (table to stderr).")
@click.option("--aot", is_flag=True, help="Compile every Triton kernel for sm_80 and sm_90a; report registers, spills, shared memory.")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False, path_type=Path), help="Draw memory and time against tokens into FILE.png (needs matplotlib).")
@click.option("--profile", "profile_dir", type=click.Path(file_okay=False, path_type=Path), help="Write a torch.profiler chrome trace of the first case's `ours` run into DIR.")
@click.option("--nproc", type=click.IntRange(min=1), default=2, show_default=True, help="ddp: processes of the data-parallel run (against one process).")
@click.option("--model", type=click.Choice(["bow", "tiny"]), default="tiny", show_default=True, help="ddp: the policy trained.")
@click.option("--steps", type=click.IntRange(min=1), default=8, show_default=True, help="ddp: training steps of each run.")
@click.option("--groups-per-step", type=click.IntRange(min=1), default=4, show_default=True, help="ddp: global groups per step (divisible by --nproc), the same in both runs.")
def bench_command(
    cases: tuple[str, ...],
    tokens: tuple[int, ...],
    vocab: tuple[int, ...],
    hidden: int | None,
    dtype: str,
    providers: tuple[str, ...],
    repeats: int,
    warmup: int,
    as_json: bool,
    aot: bool,
    plot_path: Path | None,
    profile_dir: Path | None,
    nproc: int,
    model: str,
    steps: int,
    groups_per_step: int,
) -> None:
    """Benchmark CASES (logprob, loss, fused-linear by default; also miner, train-step, rollout, tui, tui-inspect, calibrate, ddp).

    Each (case, provider, tokens, vocab) runs in a fresh subprocess: time p20/p50/p80, peak extra
    memory, max abs error vs float64, ratios vs naive (and roofline % on CUDA).
    `grpo bench --aot` with no CASES runs only the ahead-of-time compile report.
    """
    from rich.console import Console

    from bench import registry, report, runner
    from bench.errors import BenchError
    from bench.plot import plot, require_matplotlib

    out = Console(file=sys.stderr if as_json else sys.stdout, width=None if sys.stdout.isatty() else 200)
    err = Console(file=sys.stderr, width=None if sys.stderr.isatty() else 200, highlight=False)
    if plot_path is not None:
        require_matplotlib()
    ddp = "ddp" in cases
    cases = tuple(c for c in cases if c != "ddp")
    selected = [] if (aot or ddp) and not cases else registry.select(cases)
    device = runner.detect_device()
    skipped: list[str] = []

    def note(line: str) -> None:
        skipped.append(line)
        err.print(line)

    plan = runner.Plan(selected, tokens, vocab, hidden, dtype, providers, repeats, warmup, profile_dir)
    specs = runner.plan_specs(plan, device, note)
    if any(s["provider"] == "ours" for s in specs):
        import kernels

        err.print(f"ours = kernels backend {kernels.backend()!r} on {device}")

    def progress(row: dict) -> None:
        where = f"{row['case']}/{row['provider']} N={row['tokens']}" + (f" V={row['vocab']}" if row["vocab"] else "")
        if "error" in row:
            err.print(f"[red]{where}: failed: {row['error']}[/red]")
        else:
            extra = "".join(f", {k} {v:.4g}" if isinstance(v, float) else f", {k} {v}" for k, v in (row.get("extra") or {}).items())
            err.print(f"{where}: p50 {row['time_ms_p50']:.2f} ms, peak extra {row['peak_extra_mib']:.1f} MiB{extra}")

    rows = runner.run_specs(specs, progress)
    aot_rows: list[dict] = []
    if aot:
        from kernels.aot import compile_report

        aot_rows = compile_report(list(ARCHS))
    if rows:
        out.print(report.cases_table(rows, device))
        for table in report.extra_tables(rows):
            out.print(table)
    if aot_rows:
        out.print(report.aot_table(aot_rows))
    ddp_result = None
    if ddp:
        from bench.ddp import run_bench, table

        err.print(f"ddp: grpo train --model {model} --steps {steps} --groups-per-step {groups_per_step}, --nproc 1 then --nproc {nproc}")
        ddp_result = run_bench(nproc, model, steps, groups_per_step)
        out.print(table(ddp_result))
    for row in rows:
        if row.get("trace"):
            err.print(f"profile trace: {row['trace']}")
    failed = [r for r in rows if "error" in r]
    for row in failed:
        err.print(f"--- {row['case']}/{row['provider']} stderr ---\n{row.get('stderr', '').rstrip()}", markup=False)
    if plot_path is not None and rows:
        err.print(f"plot: {plot(rows, plot_path)}")
    if as_json:
        click.echo(report.to_json(device, rows, aot_rows, skipped, ddp=ddp_result))
    if failed:
        names = ", ".join(f"{r['case']}/{r['provider']} N={r['tokens']}" for r in failed)
        raise BenchError(f"{len(failed)} benchmark run(s) failed ({names}); their stderr is above")
