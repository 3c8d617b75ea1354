"""The benchmark's markdown summary: mean +- std over seeds per category and condition, the delta of tgad over
each control (paired by seed), the mean over categories, the weights used, timings, and links to the plots.

It covers exactly the grid the benchmark asked for (rows of other grids in the same CSV are left out).
"""

from __future__ import annotations

import json
import statistics
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

from tgad.assets.cache import atomic_file
from tgad.benchmark.plan import BenchmarkConfig, full_plan, row_key
from tgad.benchmark.results import METRICS, to_float

METRIC_NAMES = {"image_auroc": "image AUROC", "pixel_auroc": "pixel AUROC", "aupro": "AUPRO", "spro": "sPRO"}


def mean_std(values: Sequence[float]) -> tuple[float, float, int]:
    """(mean, sample std (0 for one value), count)."""
    values = list(values)
    if not values:
        return float("nan"), 0.0, 0
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0, len(values)


def _fmt(stat: tuple[float, float, int], signed: bool = False) -> str:
    mean, std, n = stat
    if n == 0:
        return "-"
    return f"{mean:+.3f} ± {std:.3f}" if signed else f"{mean:.3f} ± {std:.3f}"


def _by_seed(rows, metric) -> dict[tuple[str, str], dict[int, float]]:
    """(category, condition) -> {seed: value}."""
    out: dict[tuple[str, str], dict[int, float]] = defaultdict(dict)
    for row in rows:
        value = to_float(row.get(metric))
        if value is not None:
            out[(row["category"], row["condition"])][int(row["seed"])] = value
    return out


def _deltas(conditions: Sequence[str]) -> list[tuple[str, str]]:
    """(minuend, control) pairs: tgad over each control, else plain_aug over shots."""
    if "tgad" in conditions:
        return [("tgad", c) for c in ("shots", "plain_aug") if c in conditions]
    return [("plain_aug", "shots")] if {"plain_aug", "shots"} <= set(conditions) else []


def metric_table(rows, metric: str, categories: Sequence[str], conditions: Sequence[str]) -> tuple[str, dict]:
    """A markdown table of one metric, and its stats ``{category: {condition: (mean, std, n)}}`` for plots."""
    by_seed = _by_seed(rows, metric)
    pairs = _deltas(conditions)
    header = ["category", *conditions, *[f"{a} − {b}" for a, b in pairs]]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    stats: dict[str, dict[str, tuple[float, float, int]]] = {}
    for category in [*categories, "mean"]:
        if category == "mean":  # per seed, the mean over categories; then mean +- std over seeds
            per_seed = {
                cond: {
                    s: statistics.fmean(by_seed[(c, cond)][s] for c in categories)
                    for s in set.intersection(*[set(by_seed[(c, cond)]) for c in categories])
                }
                for cond in conditions
            }
        else:
            per_seed = {cond: by_seed.get((category, cond), {}) for cond in conditions}
        cells = {cond: mean_std(per_seed[cond].values()) for cond in conditions}
        deltas = [
            mean_std([per_seed[a][s] - per_seed[b][s] for s in per_seed[a] if s in per_seed[b]])
            for a, b in pairs
        ]
        name = "**mean**" if category == "mean" else category
        lines.append(
            "| "
            + " | ".join([name, *[_fmt(cells[c]) for c in conditions], *[_fmt(d, True) for d in deltas]])
            + " |"
        )
        if any(stat[2] for stat in cells.values()):
            stats[category] = cells
    return "\n".join(lines), stats


def _unique(rows, column: str) -> list[str]:
    return sorted({row[column] for row in rows if row.get(column)})


def build_summary(config: BenchmarkConfig, rows: list[dict[str, str]], out_dir: Path, seconds: float) -> str:
    from tgad.benchmark.plots import save_bars

    planned = {row.key() for row in full_plan(config)}
    rows = [row for row in rows if row_key(row) in planned]
    seeds = ", ".join(str(s) for s in config.seeds)
    lines = [
        f"# tgad benchmark: {config.dataset} / {config.name or config.preset}",
        "",
        f"Models {', '.join(config.models)}; shots {', '.join(str(s or 'full') for s in config.shots)}; "
        f"seeds {seeds}; conditions {', '.join(config.conditions)}; preset `{config.preset}`, "
        f"image size {config.size}, {config.n_gen} extra images per extra set. "
        f"Rows: {len(rows)} of {len(planned)} planned ([results.csv](results.csv)). "
        "Cells: mean ± std over seeds; deltas are paired by seed; **mean** is the mean over categories "
        "(per seed, then mean ± std over seeds).",
    ]
    for model in config.models:
        for shots in config.shots:
            subset = [r for r in rows if r["model"] == model and r["shots"] == str(shots or "full")]
            if not subset:
                continue
            lines += ["", f"## {model}, k={shots or 'full'}"]
            for metric in METRICS:
                if not any(r.get(metric) for r in subset):
                    continue
                table, stats = metric_table(subset, metric, config.categories, config.conditions)
                lines += ["", f"### {METRIC_NAMES[metric]}", "", table]
                if metric == "image_auroc" and stats:
                    plot = save_bars(
                        {c: s for c, s in stats.items()},
                        config.conditions,
                        out_dir / "plots" / f"bars_{model}_k{shots or 'full'}_{metric}.png",
                        f"{config.dataset} {model} k={shots or 'full'}: {METRIC_NAMES[metric]} (± std over seeds)",
                        METRIC_NAMES[metric],
                    )
                    lines += ["", f"![{METRIC_NAMES[metric]}]({plot.relative_to(out_dir).as_posix()})"]
    lines += ["", "## Weights", ""]
    for model in config.models:
        lines.append(
            f"- {model} backbone: {', '.join(_unique([r for r in rows if r['model'] == model], 'backbone_weights')) or '-'}"
        )
    clip = _unique(rows, "clip_weights")
    lines.append(
        f"- CLIP: {', '.join(clip) if clip else 'none (the shots and plain_aug conditions use no CLIP)'}"
    )
    if extra := _unique(rows, "extra_weights"):
        lines.append(f"- generator: {', '.join(extra)}")
    lines += ["", "## Cost", ""]
    total = {
        k: sum(to_float(r[k]) or 0.0 for r in rows) for k in ("extra_seconds", "fit_seconds", "test_seconds")
    }
    lines.append(
        f"This run: {seconds:.0f} s. Over all rows: extra sets {total['extra_seconds']:.0f} s, fit "
        f"{total['fit_seconds']:.0f} s, test {total['test_seconds']:.0f} s; peak RSS up to "
        f"{max((to_float(r['peak_rss_mb']) or 0 for r in rows), default=0):.0f} MB; torch threads "
        f"{', '.join(_unique(rows, 'torch_threads'))}; commit {', '.join(_unique(rows, 'git_commit'))}."
    )
    banks = defaultdict(list)
    for r in rows:
        if r.get("memory_bank"):
            banks[r["condition"]].append(int(r["memory_bank"]))
    if banks:
        lines.append(
            "PatchCore memory bank (rows): "
            + "; ".join(f"{c} {min(v)}-{max(v)}" for c, v in sorted(banks.items()))
            + f" (coreset settings: {sorted({json.loads(r['model_settings']).get('coreset_sampling_ratio') for r in rows if r['model'] == 'patchcore'})})."
        )
    figures = sorted((out_dir / "plots").glob("extra_*.png")) + sorted((out_dir / "plots").glob("maps_*.png"))
    if figures:
        lines += ["", "## Extra sets and anomaly maps", ""]
        lines += [f"- [{p.stem}]({p.relative_to(out_dir).as_posix()})" for p in figures]
    return "\n".join(lines) + "\n"


def write_report(config: BenchmarkConfig, rows: list[dict[str, str]], out_dir: Path, seconds: float) -> Path:
    """Write ``<out_dir>/summary.md`` (and the bar plots it links) atomically; returns its path."""
    text = build_summary(config, rows, out_dir, seconds)
    path = out_dir / "summary.md"
    with atomic_file(path) as handle:
        handle.write(text)
    return path
