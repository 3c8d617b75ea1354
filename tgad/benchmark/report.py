"""The benchmark's markdown summary: mean +- std over seeds per category and condition (one column per scorer
of a generated condition), the deltas of tgad over each control and of tgad_aug over plain_aug (paired by
seed), the mean over categories, the scorers and weights used, timings, and links to the plots.

It covers exactly the grid the benchmark asked for (rows of other grids in the same CSV are left out).
"""

from __future__ import annotations

import json
import statistics
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

from tgad.assets.cache import atomic_file
from tgad.benchmark.plan import GENERATED, BenchmarkConfig, Row, full_plan, plan_scorers, row_key
from tgad.benchmark.plots import save_bars
from tgad.benchmark.results import METRICS, to_float
from tgad.models.integrator.scorers import scorer_description

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
    rows, metric: str, categories: Sequence[str], conditions: Sequence[str], scorers: Sequence[str] = ()
) -> tuple[str, dict]:
    """A markdown table of one metric per condition, then a table of the deltas (paired by seed), and the
    stats ``{category: {label: (mean, std, n)}}`` for plots."""
    by_seed = _by_seed(rows, metric)
    columns = variants(conditions, scorers)
    pairs = _deltas(columns)
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
    return text, stats


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


def _unique(rows, column: str) -> list[str]:
    return sorted({row[column] for row in rows if row.get(column)})


def _validation_sizes(rows) -> str:
    """How many validation images the rows used, per category where they differ (val_images is a float column)."""
    return ", ".join(
        str(int(float(v))) for v in sorted({r["val_images"] for r in rows if r.get("val_images")}, key=float)
    )


def build_summary(
    config: BenchmarkConfig,
    rows: list[dict[str, str]],
    out_dir: Path,
    seconds: float,
    planned_rows: list[Row] | None = None,
) -> str:
    """``planned_rows``: the run's plan (``prepare.PreparedRun.planned``), else planned again here."""
    planned = {row.key() for row in (full_plan(config) if planned_rows is None else planned_rows)}
    rows = [row for row in rows if row_key(row) in planned]
    scorers = plan_scorers(config)
    seeds = ", ".join(str(s) for s in config.grid.seeds)
    lines = [
        f"# tgad benchmark: {config.grid.dataset} / {config.output.name or config.grid.preset}",
        "",
        f"Models {', '.join(config.grid.models)}; shots {', '.join(str(s or 'full') for s in config.grid.shots)}; "
        f"seeds {seeds}; conditions {', '.join(config.grid.conditions)}"
        + (f" (scorers: {', '.join(scorers)})" if scorers else "")
        + f"; preset `{config.grid.preset}`, "
        f"image size {config.detectors.image_size}, {config.grid.n_gen} extra images per extra set"
        + (
            f"; generator prior `{config.generator.prior}` (not pure k-shot: the generated conditions' fit starts from "
            "it, `prior` column)"
            if config.generator.prior != "none"
            else ""
        )
        + ". "
        f"Rows: {len(rows)} of {len(planned)} planned ([results.csv](results.csv)). "
        "Cells: mean ± std over seeds; deltas are paired by seed; **mean** is the mean over categories "
        "(per seed, then mean ± std over seeds).",
    ]
    for model in config.grid.models:
        for shots in config.grid.shots:
            subset = [r for r in rows if r["model"] == model and r["shots"] == str(shots or "full")]
            if subset:
                lines += _model_section(config, subset, model, shots, scorers, out_dir)
    lines += _weights_section(config, rows, scorers, out_dir)
    lines += _cost_section(rows, seconds)
    figures = sorted((out_dir / "plots").glob("extra_*.png")) + sorted((out_dir / "plots").glob("maps_*.png"))
    if figures:
        lines += ["", "## Extra sets and anomaly maps", ""]
        lines += [f"- [{p.stem}]({p.relative_to(out_dir).as_posix()})" for p in figures]
    return "\n".join(lines) + "\n"


def _model_section(config, subset, model: str, shots, scorers, out_dir: Path) -> list[str]:
    """One (model, k): a table per metric, the image AUROC bar plot, and the validation tables."""
    columns = [v.label for v in variants(config.grid.conditions, scorers)]
    lines = ["", f"## {model}, k={shots or 'full'}"]
    for metric in METRICS:
        if not any(r.get(metric) for r in subset):
            continue
        table, stats = metric_table(subset, metric, config.grid.categories, config.grid.conditions, scorers)
        lines += ["", f"### {METRIC_NAMES[metric]}", "", table]
        if metric == "image_auroc" and stats:
            plot = save_bars(
                dict(stats),
                columns,
                out_dir / "plots" / f"bars_{model}_k{shots or 'full'}_{metric}.png",
                f"{config.grid.dataset} {model} k={shots or 'full'}: {METRIC_NAMES[metric]} (± std over seeds)",
                METRIC_NAMES[metric],
            )
            lines += ["", f"![{METRIC_NAMES[metric]}]({plot.relative_to(out_dir).as_posix()})"]
    if any(r.get("val_auroc") for r in subset):
        lines += _validation_section(config, subset, scorers)
    return lines


def _validation_section(config, subset, scorers) -> list[str]:
    table, _ = metric_table(subset, "val_auroc", config.grid.categories, config.grid.conditions, scorers)
    return [
        "",
        "### Synthetic-defect validation (analysis only; never used to choose anything)",
        "",
        f"Held-out *training* normals ({_validation_sizes(subset)} validation images: normals plus a "
        "synthetic defect of each; "
        "never the shots or the test split, so more normals than a 1-shot user "
        "has). spread: the extra images' mean nearest-patch distance to the shots over that of the "
        "held-out normals (1 = as varied as real normals); normal / defect cov: the relative drop "
        "of the held-out normals' / synthetic defects' PatchCore image score when the set joins the "
        "bank. A useful set has normal cov well above defect cov.",
        "",
        validation_table(subset, config.grid.categories, variants(config.grid.conditions, scorers)),
        "",
        "Validation AUROC (held-out normals vs synthetic defects):",
        "",
        table,
    ]


def _weights_section(config, rows, scorers, out_dir: Path) -> list[str]:
    """Every weight the rows used; random ones said loudly."""
    lines = ["", "## Weights", ""]
    for model in config.grid.models:
        weights = _unique([r for r in rows if r["model"] == model], "backbone_weights")
        loud = " (**RANDOM detector weights: these rows do not measure the real model**)"
        lines.append(
            f"- {model} backbone: {', '.join(weights) or '-'}"
            + (loud if any("RANDOM" in w for w in weights) else "")
        )
    clip = _unique(rows, "clip_weights")
    lines.append(
        f"- CLIP: {', '.join(clip) if clip else 'none (the shots and plain_aug conditions use no CLIP)'}"
        + (
            " (**RANDOM weights: its text score carries no guidance**)"
            if any("RANDOM" in c for c in clip)
            else ""
        )
        + (
            " (not_built: the scorers used read no CLIP, so none was loaded)"
            if any("not_built" in c for c in clip)
            else ""
        )
    )
    for scorer in scorers:
        lines.append(f"- scorer `{scorer}`: {_scorer_formula(config, rows, scorer, out_dir)}")
    if extra := _unique(rows, "extra_weights"):
        lines.append(f"- generator: {', '.join(extra)}")
    return lines


def _cost_section(rows, seconds: float) -> list[str]:
    """Time, memory, threads, commits, and the PatchCore bank sizes (the same bank rule for every condition)."""
    total = {
        k: sum(to_float(r[k]) or 0.0 for r in rows) for k in ("extra_seconds", "fit_seconds", "test_seconds")
    }
    lines = [
        "",
        "## Cost",
        "",
        f"This run: {seconds:.0f} s. Over all rows: extra sets {total['extra_seconds']:.0f} s, fit "
        f"{total['fit_seconds']:.0f} s, test {total['test_seconds']:.0f} s; peak RSS up to "
        f"{max((to_float(r['peak_rss_mb']) or 0 for r in rows), default=0):.0f} MB; torch threads "
        f"{', '.join(_unique(rows, 'torch_threads'))}; commit {', '.join(_unique(rows, 'git_commit'))}.",
    ]
    banks = defaultdict(list)
    for r in rows:
        if r.get("memory_bank"):
            banks[r["condition"]].append(int(r["memory_bank"]))
    if banks:
        budgets = {
            json.loads(r["model_settings"]).get("bank_budget") for r in rows if r["model"] == "patchcore"
        }
        lines.append(
            "PatchCore memory bank (rows): "
            + "; ".join(f"{c} {min(v)}-{max(v)}" for c, v in sorted(banks.items()))
            + f" (bank rule: every patch kept up to {sorted(budgets, key=str)} rows, the same for every condition)."
        )
    return lines


def _scorer_formula(config: BenchmarkConfig, rows: list[dict[str, str]], scorer: str, out_dir: Path) -> str:
    """What the scorer computed: the formula its extra sets' manifests recorded, else the preset's."""
    for row in rows:
        if row.get("condition") == "tgad" and row.get("scorer") == scorer and row.get("extra_set"):
            manifest = Path(out_dir) / row["extra_set"] / "manifest.json"
            if manifest.is_file():
                recorded = (json.loads(manifest.read_text()).get("scorer") or {}).get("formula")
                if recorded:
                    return recorded
    weights = config.recipe.integrator.scoring
    return scorer_description(
        scorer, weights.combined_clip_weight, weights.fidelity_tail, weights.fidelity_views
    )


def write_report(
    config: BenchmarkConfig,
    rows: list[dict[str, str]],
    out_dir: Path,
    seconds: float,
    planned_rows: list[Row] | None = None,
) -> Path:
    """Write ``<out_dir>/summary.md`` (and the bar plots it links) and ``recipe.yaml`` (the run's preset and
    overrides: ``Recipe.from_yaml`` rebuilds it) atomically; returns the summary's path."""
    text = build_summary(config, rows, out_dir, seconds, planned_rows)
    path = out_dir / "summary.md"
    with atomic_file(path) as handle:
        handle.write(text)
    with atomic_file(out_dir / "recipe.yaml") as handle:
        handle.write(config.recipe.to_yaml())
    return path
