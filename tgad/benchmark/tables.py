"""The benchmark's tables, from result rows to markdown: mean +- std over seeds per category and condition (one
column per scorer of a generated condition), the deltas of each condition over its controls (paired by seed),
the gap closed towards a full-shot row, and the validation columns. ``report`` assembles them into summary.md;
``experiments/combine_benchmarks.py`` uses them across runs, so the two never disagree."""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import NamedTuple

from tgad.benchmark.plan import GENERATED
from tgad.benchmark.results import to_float

METRIC_NAMES = {"image_auroc": "image AUROC", "pixel_auroc": "pixel AUROC", "aupro": "AUPRO", "spro": "sPRO"}
# The controls each condition's delta is reported against (paired by seed); plain_aug - shots always.
CONTROLS = {
    "tgad": ("shots", "plain_aug"),
    "tgad_aug": ("plain_aug",),
    "aug_select": ("plain_aug",),
    "tgad_select": ("plain_aug",),
}
VALIDATION_PARTS = (
    ("val_spread", "spread"),
    ("val_normal_cov", "normal cov"),
    ("val_defect_cov", "defect cov"),
)


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


class Variant(NamedTuple):
    """One column of the tables: a condition, with its scorer for the generated ones."""

    label: str  # ``plain_aug``, or ``tgad (shot_fidelity)``: a generated condition always names its scorer
    condition: str
    scorer: str


def variants(conditions: Sequence[str], scorers: Sequence[str]) -> list[Variant]:
    out = []
    for condition in conditions:
        if condition in GENERATED:
            for scorer in scorers:
                out.append(Variant(f"{condition} ({scorer})", condition, scorer))
        else:
            out.append(Variant(condition, condition, ""))
    return out


def _by_seed(rows, metric) -> dict[tuple[str, str, str], dict[int, float]]:
    """(category, condition, scorer) -> {seed: value}."""
    out: dict[tuple[str, str, str], dict[int, float]] = defaultdict(dict)
    for row in rows:
        value = to_float(row.get(metric))
        if value is not None:
            out[(row["category"], row["condition"], row.get("scorer", ""))][int(row["seed"])] = value
    return out


def _deltas(columns: Sequence[Variant]) -> list[tuple[Variant, Variant]]:
    """(minuend, control) pairs: each tgad variant over shots and plain_aug, each tgad_aug variant over
    plain_aug; without generated conditions, plain_aug over shots."""
    by_condition = {v.condition: v for v in columns if not v.scorer}
    pairs = []
    if {"plain_aug", "shots"} <= set(by_condition):
        pairs.append((by_condition["plain_aug"], by_condition["shots"]))
    for v in columns:
        controls = CONTROLS.get(v.condition, ())
        pairs += [(v, by_condition[c]) for c in controls if c in by_condition]
    return pairs


def metric_table(
    rows,
    metric: str,
    categories: Sequence[str],
    conditions: Sequence[str],
    scorers: Sequence[str] = (),
    full: Mapping[str, float] | None = None,
) -> tuple[str, dict]:
    """A markdown table of one metric per condition, then a table of the deltas (paired by seed), then, where
    ``full`` gives a category's all-training-normals value of the metric, the gap each condition closes, and the
    stats ``{category: {label: (mean, std, n)}}`` for plots."""
    by_seed = _by_seed(rows, metric)
    columns = variants(conditions, scorers)
    pairs = _deltas(columns)
    gaps = gap_closed(by_seed, categories, columns, full) if full else ""
    header = ["category", *[v.label for v in columns]]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    delta_header = ["category", *[f"{a.label} − {b.label}" for a, b in pairs]]
    delta_lines = ["| " + " | ".join(delta_header) + " |", "|" + "---|" * len(delta_header)]
    stats: dict[str, dict[str, tuple[float, float, int]]] = {}
    for category in [*categories, "mean"]:
        if category == "mean":  # per seed, the mean over categories; then mean +- std over seeds
            per_seed = {
                v.label: {
                    s: statistics.fmean(by_seed[(c, v.condition, v.scorer)][s] for c in categories)
                    for s in set.intersection(*[set(by_seed[(c, v.condition, v.scorer)]) for c in categories])
                }
                for v in columns
            }
        else:
            per_seed = {v.label: by_seed.get((category, v.condition, v.scorer), {}) for v in columns}
        cells = {v.label: mean_std(per_seed[v.label].values()) for v in columns}
        deltas = [
            mean_std(
                [
                    per_seed[a.label][s] - per_seed[b.label][s]
                    for s in per_seed[a.label]
                    if s in per_seed[b.label]
                ]
            )
            for a, b in pairs
        ]
        name = "**mean**" if category == "mean" else category
        lines.append("| " + " | ".join([name, *[_fmt(cells[v.label]) for v in columns]]) + " |")
        delta_lines.append("| " + " | ".join([name, *[_fmt(d, True) for d in deltas]]) + " |")
        if any(stat[2] for stat in cells.values()):
            stats[category] = cells
    text = "\n".join(lines)
    if pairs:
        text += "\n\nDeltas (paired by seed):\n\n" + "\n".join(delta_lines)
    if gaps:
        text += "\n\n" + gaps
    return text, stats


MIN_GAP = 0.005  # a full-shot gain smaller than this leaves no gap to close: the cell says "-" (ceiling)


def gap_closed(
    by_seed: Mapping[tuple[str, str, str], Mapping[int, float]],
    categories: Sequence[str],
    columns: Sequence[Variant],
    full: Mapping[str, float],
) -> str:
    """Gap closed = (condition - shots) / (full - shots) per seed (``full``: the category's value with every
    training normal), mean +- std over seeds; the mean row averages the categories per seed. Reads how much of
    what more real normals would give a condition recovers, beside deltas that a ceiling can make small."""
    shots = next((v for v in columns if v.condition == "shots"), None)
    others = [v for v in columns if v.condition != "shots"]
    if shots is None or not others:
        return ""
    gaps: dict[str, dict[str, dict[int, float]]] = {c: {} for c in categories}
    for category in categories:
        base = by_seed.get((category, "shots", ""), {})
        for v in others:
            values = by_seed.get((category, v.condition, v.scorer), {})
            gaps[category][v.label] = {
                s: (values[s] - base[s]) / (full[category] - base[s])
                for s in values
                if s in base and category in full and full[category] - base[s] >= MIN_GAP
            }
    header = ["category", "full", *[v.label for v in others]]
    lines = [
        "Gap closed, (condition − shots) / (full − shots), paired by seed (full: every training normal; 1 = as "
        "good as all of them, 0 = no better than the shots):",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    for category in [*[c for c in categories if c in full], "mean"]:
        if category == "mean":
            present = [c for c in categories if c in full]
            cells = []
            for v in others:
                seeds = set.intersection(*[set(gaps[c][v.label]) for c in present]) if present else set()
                cells.append(
                    _fmt(
                        mean_std([statistics.fmean(gaps[c][v.label][s] for c in present) for s in seeds]),
                        True,
                    )
                )
            lines.append("| " + " | ".join(["**mean**", "-", *cells]) + " |")
        else:
            cells = [_fmt(mean_std(gaps[category][v.label].values()), True) for v in others]
            lines.append("| " + " | ".join([category, f"{full[category]:.3f}", *cells]) + " |")
    return "\n".join(lines)


def validation_table(rows, categories: Sequence[str], columns: Sequence[Variant]) -> str:
    """Spread, normal and defect coverage (means over seeds) per category and condition, then the validation
    AUROC table (held-out normals vs synthetic defects) with its deltas."""
    header = ["category", *[v.label for v in columns]]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for category in [*categories, "mean"]:
        cells = []
        for v in columns:
            chosen = [
                r
                for r in rows
                if r["condition"] == v.condition
                and r.get("scorer", "") == v.scorer
                and (category == "mean" or r["category"] == category)
            ]
            parts = []
            for column, name in VALIDATION_PARTS:
                values = [x for r in chosen if (x := to_float(r.get(column))) is not None and x == x]
                if values:
                    parts.append(f"{name} {statistics.fmean(values):.2f}")
            cells.append(" · ".join(parts) or "-")
        lines.append("| " + " | ".join(["**mean**" if category == "mean" else category, *cells]) + " |")
    return "\n".join(lines)
