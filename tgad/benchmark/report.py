"""The benchmark's markdown summary: mean +- std over seeds per category and condition (one column per scorer
of a generated condition), the deltas of tgad over each control and of tgad_aug over plain_aug (paired by
seed), the mean over categories, the scorers and weights used, timings, and links to the plots.

It covers exactly the grid the benchmark asked for (rows of other grids in the same CSV are left out).
"""

from __future__ import annotations

import json
import statistics
from collections import defaultdict
from pathlib import Path

from tgad.assets.cache import atomic_file
from tgad.benchmark.plan import BenchmarkConfig, Row, full_plan, plan_scorers, row_key
from tgad.benchmark.plots import save_bars
from tgad.benchmark.results import METRICS, to_float
from tgad.benchmark.tables import METRIC_NAMES, metric_table, validation_table, variants
from tgad.models.integrator.scorers import scorer_description


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
    full = _full_shot_values(rows, config)
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
                lines += _model_section(config, subset, model, shots, scorers, out_dir, full.get(model, {}))
    lines += _weights_section(config, rows, scorers, out_dir)
    lines += _cost_section(rows, seconds)
    figures = sorted((out_dir / "plots").glob("extra_*.png")) + sorted((out_dir / "plots").glob("maps_*.png"))
    if figures:
        lines += ["", "## Extra sets and anomaly maps", ""]
        lines += [f"- [{p.stem}]({p.relative_to(out_dir).as_posix()})" for p in figures]
    return "\n".join(lines) + "\n"


def _full_shot_values(rows, config: BenchmarkConfig) -> dict[str, dict[str, dict[str, float]]]:
    """{model: {metric: {category: mean over seeds}}} of the ``shots`` rows fitted on every training normal
    (shots ``full``) at this run's preset and image size, from any run in the CSV: the gap-closed reference."""
    values: dict[tuple[str, str, str], list[float]] = defaultdict(list)
    for r in rows:
        if (
            r["shots"] == "full"
            and r["condition"] == "shots"
            and r.get("preset") == config.grid.preset
            and r.get("image_size") == str(config.detectors.image_size)
        ):
            for metric in METRICS:
                if (x := to_float(r.get(metric))) is not None:
                    values[(r["model"], metric, r["category"])].append(x)
    out: dict[str, dict[str, dict[str, float]]] = defaultdict(lambda: defaultdict(dict))
    for (model, metric, category), xs in values.items():
        out[model][metric][category] = statistics.fmean(xs)
    return out


def _model_section(config, subset, model: str, shots, scorers, out_dir: Path, full=None) -> list[str]:
    """One (model, k): a table per metric (with the gap closed where a full-shot row exists), the image AUROC
    bar plot, and the validation tables."""
    columns = [v.label for v in variants(config.grid.conditions, scorers)]
    lines = ["", f"## {model}, k={shots or 'full'}"]
    for metric in METRICS:
        if not any(r.get(metric) for r in subset):
            continue
        reference = (full or {}).get(metric) if shots else None
        table, stats = metric_table(
            subset, metric, config.grid.categories, config.grid.conditions, scorers, reference
        )
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
