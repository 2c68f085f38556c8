"""Run summaries for `grpo report`: the key metrics of a metrics.jsonl, with bootstrap intervals.

For each key metric (KEY_METRICS, plus `reward/<fn>_mean` of online runs) present in a run, over the
records that carry a finite value of it (sorted by step; a repeated step keeps its last record):
- `mean`: the mean over the last N of those values (`last`, default max(1, 20% of them)),
- `lo`, `hi`: a percentile bootstrap 95% interval of that mean: `resamples` (1000) resamples of the
  N values with replacement, drawn by a `torch.Generator` seeded with `seed` (0), in float64; the
  interval is the 2.5% and 97.5% quantiles (linear interpolation) of the resampled means. Steps are
  resampled as if independent; consecutive steps of a run are correlated, so read the interval as a
  lower bound on the real uncertainty. With one value the interval is that value.
- `first`: the mean over the first N values, `change` = `mean - first` (first-vs-last),
- `n`: N, `values`: how many values the metric has in the run.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch

from policy.metrics import read_metrics

KEY_METRICS = (
    "reward_mean", "loss", "kl", "val_pairwise_acc", "entropy", "clip_frac_low", "clip_frac_high",
    "completion_len_mean",
)  # fmt: skip
RESAMPLES, SEED, CI = 1000, 0, 0.95


def metric_names(records: list[dict[str, Any]]) -> list[str]:
    """KEY_METRICS present in `records`, then the `reward/<fn>_mean` keys, sorted."""
    present = {k for r in records for k, v in r.items() if _finite(v)}
    fns = sorted(k for k in present if k.startswith("reward/") and k.endswith("_mean"))
    return [k for k in KEY_METRICS if k in present] + fns


def window(count: int, last: int | None) -> int:
    """N: `last` (capped at `count`), else 20% of `count`, at least 1."""
    if count <= 0:
        return 0
    return max(1, min(count, last if last is not None else count // 5))


def bootstrap_ci(values: list[float], *, resamples: int = RESAMPLES, seed: int = SEED, ci: float = CI) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of `values` (float64, seeded).

    The resampled means are taken of the deviations from the sample mean and shifted back, so equal
    values give exactly that value as both ends (no rounding drift of a K-term sum).
    """
    center = math.fsum(values) / len(values)
    dev = torch.tensor(values, dtype=torch.float64) - center  # (N,)
    gen = torch.Generator().manual_seed(seed)
    idx = torch.randint(len(values), (resamples, len(values)), generator=gen)  # (R, N)
    means = center + dev[idx].mean(dim=1)  # (R,)
    q = torch.tensor([(1 - ci) / 2, 1 - (1 - ci) / 2], dtype=torch.float64)
    lo, hi = torch.quantile(means, q).tolist()
    return lo, hi


def summarise_metric(values: list[float], last: int | None = None, *, resamples: int = RESAMPLES, seed: int = SEED) -> dict[str, Any]:
    """mean, lo, hi, first, change, n, values of one metric's series (in step order)."""
    n = window(len(values), last)
    tail, head = values[-n:], values[:n]
    mean = math.fsum(tail) / n
    first = math.fsum(head) / n
    lo, hi = bootstrap_ci(tail, resamples=resamples, seed=seed)
    return {"mean": mean, "lo": lo, "hi": hi, "first": first, "change": mean - first, "n": n, "values": len(values)}


def summarise_records(records: list[dict[str, Any]], last: int | None = None, *, resamples: int = RESAMPLES, seed: int = SEED) -> dict[str, Any]:
    """The summary of one run's metrics records: steps, last_step, window, metrics {name: summary}."""
    by_step = {r["step"]: r for r in records if isinstance(r.get("step"), int)}
    ordered = [by_step[s] for s in sorted(by_step)]
    metrics = {}
    for name in metric_names(ordered):
        series = [float(r[name]) for r in ordered if _finite(r.get(name))]
        metrics[name] = summarise_metric(series, last, resamples=resamples, seed=seed)
    return {
        "steps": len(ordered), "last_step": ordered[-1]["step"] if ordered else None,
        "window": window(len(ordered), last), "metrics": metrics,
    }  # fmt: skip


def metrics_path(run: Path) -> Path:
    """A run dir's metrics.jsonl (or the file itself)."""
    run = Path(run)
    return run if run.is_file() else run / "metrics.jsonl"


def summarise_run(run: Path, last: int | None = None, *, resamples: int = RESAMPLES, seed: int = SEED) -> dict[str, Any]:
    """`summarise_records` of `<run>/metrics.jsonl`, with `run` and `metrics_file`."""
    path = metrics_path(run)
    return {"run": str(run), "metrics_file": str(path), **summarise_records(read_metrics(path), last, resamples=resamples, seed=seed)}


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
