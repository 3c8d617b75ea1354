"""One set of tables over several benchmark results (e.g. the shared MVTec class and the embedded categories):
per category and the mean over all of them, mean +- std over seeds, deltas paired by seed.

    python experiments/combine_benchmarks.py results/mvtec/issue8/results.csv results/embedded/issue8/results.csv \
        --out experiments/results/benchmark/issue8_combined.md

Only the rows every file shares the layout of are read (``tgad.benchmark.results``); the tables are those of
``tgad benchmark``'s summary (``tgad.benchmark.tables.metric_table``), so the two never disagree. A generated
condition fitted from a generator prior (``prior`` column) is its own column, ``tgad (defect_safe, prior
other_categories)``; where the CSVs hold full-shot ``shots`` rows (``--shots full``), every k < full table adds
the gap each condition closes towards them.
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

from tgad.assets.cache import atomic_file
from tgad.benchmark.plan import CONDITIONS, GENERATED
from tgad.benchmark.results import METRICS, ResultsCSV
from tgad.benchmark.tables import METRIC_NAMES, metric_table, validation_table, variants


def _ordered(values, order) -> list[str]:
    present = set(values)
    return [v for v in order if v in present] + sorted(present - set(order))


def combine(paths: list[Path], seeds: list[str] | None = None) -> str:
    rows = [row for path in paths for row in ResultsCSV(path).rows() if not seeds or row["seed"] in seeds]
    if not rows:
        raise SystemExit(f"{[str(p) for p in paths]}: no rows")
    for row in rows:  # a generated condition fitted from a generator prior is its own column
        if row["condition"] in GENERATED and row.get("prior", "none") not in ("", "none"):
            row["scorer"] = f"{row['scorer']}, prior {row['prior'].split(':')[0]}"
    categories = list(dict.fromkeys(row["category"] for row in rows))
    conditions = _ordered({r["condition"] for r in rows}, CONDITIONS)
    scorers = _ordered(
        {r["scorer"] for r in rows if r["condition"] in GENERATED}, ("shot_fidelity", "defect_safe", "none")
    )
    lines = [
        "# Combined benchmark tables",
        "",
        "Sources: " + ", ".join(f"`{p}`" for p in paths) + ".",
        f"Categories: {', '.join(categories)}; seeds: {', '.join(sorted({r['seed'] for r in rows}, key=int))}. "
        "Cells: mean ± std over seeds; **mean**: per seed the mean over categories, then mean ± std over seeds.",
        "",
        "Weights: "
        + "; ".join(sorted({r["backbone_weights"] for r in rows}))
        + "; CLIP: "
        + "; ".join(sorted({r["clip_weights"] for r in rows if r["clip_weights"]}) or ["none"]),
    ]

    def full(model: str, metric: str, shots: str) -> dict[str, float] | None:
        """The category's mean over its full-shot ``shots`` rows: the gap-closed reference (none at k = full)."""
        values = [
            r
            for r in rows
            if r["model"] == model and r["shots"] == "full" and r["condition"] == "shots" and r.get(metric)
        ]
        if shots == "full" or not values:
            return None
        return {
            c: statistics.fmean(float(r[metric]) for r in values if r["category"] == c)
            for c in {r["category"] for r in values}
        }

    for model in sorted({r["model"] for r in rows}):
        for shots in sorted({r["shots"] for r in rows}):
            subset = [r for r in rows if r["model"] == model and r["shots"] == shots]
            lines += ["", f"## {model}, k={shots}"]
            for metric in METRICS:
                if not any(r.get(metric) for r in subset):
                    continue
                table, _ = metric_table(
                    subset, metric, categories, conditions, scorers, full(model, metric, shots)
                )
                lines += ["", f"### {METRIC_NAMES[metric]}", "", table]
            if any(r.get("val_auroc") for r in subset):
                table, _ = metric_table(subset, "val_auroc", categories, conditions, scorers)
                lines += [
                    "",
                    "### Synthetic-defect validation (held-out train normals; analysis only)",
                    "",
                    validation_table(subset, categories, variants(conditions, scorers)),
                    "",
                    "Validation AUROC (held-out normals vs synthetic defects):",
                    "",
                    table,
                ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("csv", nargs="+", type=Path, help="results.csv files of tgad benchmark runs")
    parser.add_argument("--out", type=Path, required=True, help="markdown file to write")
    parser.add_argument("--seeds", nargs="+", default=None, help="only these seeds (default: all)")
    args = parser.parse_args()
    text = combine(args.csv, args.seeds)
    with atomic_file(args.out) as handle:
        handle.write(text)
    print(text)


if __name__ == "__main__":
    main()
