"""What the Integrator's selection does, read from the ExtraSets of a benchmark: per category and scorer, the
shot-fidelity scores of the samples each round kept vs dropped (pooled over seeds), and of the written images.

    python experiments/selection_histograms.py results/embedded/issue8 --out experiments/results/selection

Writes ``selection_<category>.png`` (rows: scorers; columns: rounds, then the written images) and
``selection.json`` / ``selection.md`` (mean +- std of kept and dropped per round), atomically. A scorer that
selects on fidelity keeps the right-hand side (closer to the shots); random selection (``none``) keeps a
sample of the same distribution as it drops.
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from tgad.assets.cache import atomic_file  # noqa: E402
from tgad.generate.artifact import load_manifest  # noqa: E402
from tgad.generate.heal import complete_extra_sets  # noqa: E402


def collect(results: Path) -> dict:
    """{category: {scorer: {"rounds": {r: {"kept": [...], "dropped": [...]}}, "written": [...], "seeds": []}}}"""
    out: dict = defaultdict(lambda: defaultdict(lambda: {"rounds": defaultdict(lambda: defaultdict(list))}))
    for folder in complete_extra_sets(results / "extra_sets", "tgad_*/*/*"):  # no temporaries, no damaged
        manifest = load_manifest(folder)
        if manifest["kind"] != "tgad":
            continue
        scorer = (manifest.get("scorer") or {}).get("resolved", "clip_text")
        entry = out[manifest["category"]][scorer]
        entry.setdefault("seeds", []).append(manifest["seed"])
        for record in manifest["rounds"]:
            values = record.get("parts", {}).get("shot_fidelity")
            if not values:
                continue
            kept = set(record["kept"])
            excluded = record.get("excluded", [False] * len(values))
            for i, value in enumerate(values):
                if i in kept:
                    entry["rounds"][record["round"]]["kept"].append(value)
                elif not excluded[i]:
                    entry["rounds"][record["round"]]["dropped"].append(value)
        entry.setdefault("written", []).extend(
            r["shot_fidelity"] for r in manifest["images"] if "shot_fidelity" in r
        )
    return out


def _stat(values: list[float]) -> dict:
    if not values:
        return {"n": 0}
    return {
        "n": len(values),
        "mean": statistics.fmean(values),
        "std": statistics.stdev(values) if len(values) > 1 else 0.0,
    }


def summarise(data: dict) -> dict:
    return {
        category: {
            scorer: {
                "seeds": sorted(entry.get("seeds", [])),
                "rounds": {
                    str(r): {"kept": _stat(v["kept"]), "dropped": _stat(v["dropped"])}
                    for r, v in sorted(entry["rounds"].items())
                },
                "written": _stat(entry.get("written", [])),
            }
            for scorer, entry in sorted(scorers.items())
        }
        for category, scorers in sorted(data.items())
    }


def plot(category: str, scorers: dict, path: Path) -> None:
    names = sorted(scorers)
    n_rounds = max((len(e["rounds"]) for e in scorers.values()), default=0)
    columns = n_rounds + 1
    fig, axes = plt.subplots(len(names), columns, figsize=(3.0 * columns, 2.4 * len(names)), squeeze=False)
    values = [v for e in scorers.values() for r in e["rounds"].values() for v in r["kept"] + r["dropped"]]
    lo, hi = (min(values), max(values)) if values else (0.0, 1.0)
    bins = [lo + (hi - lo) * i / 24 for i in range(25)]
    for row, scorer in enumerate(names):
        entry = scorers[scorer]
        for r in range(n_rounds):
            ax, part = axes[row, r], entry["rounds"].get(r, {"kept": [], "dropped": []})
            ax.hist(
                part["dropped"], bins=bins, histtype="step", linewidth=1.5, color="tab:gray", label="dropped"
            )
            ax.hist(part["kept"], bins=bins, alpha=0.6, color="tab:green", label="kept")
            ax.set_title(f"{scorer}: round {r}", fontsize=8)
        ax = axes[row, -1]
        ax.hist(entry.get("written", []), bins=bins, alpha=0.6, color="tab:red", label="written")
        ax.set_title(f"{scorer}: written ({len(entry.get('seeds', []))} seeds)", fontsize=8)
        axes[row, 0].set_ylabel("samples", fontsize=7)
        for ax in axes[row]:
            ax.tick_params(labelsize=6)
            ax.legend(fontsize=6)
    fig.suptitle(
        f"{category}: shot fidelity (- tail patch distance to the shot) of kept vs dropped", fontsize=9
    )
    fig.tight_layout()
    with atomic_file(path, "wb") as handle:
        fig.savefig(handle, format="png", dpi=100)
    plt.close(fig)


def markdown(summary: dict) -> str:
    lines = [
        "| category | scorer | round | kept mean ± std (n) | dropped mean ± std (n) |",
        "|---|---|---|---|---|",
    ]
    for category, scorers in summary.items():
        for scorer, entry in scorers.items():
            for r, part in entry["rounds"].items():
                cells = [
                    f"{s['mean']:.2f} ± {s['std']:.2f} ({s['n']})" if s["n"] else "-"
                    for s in (part["kept"], part["dropped"])
                ]
                lines.append(f"| {category} | {scorer} | {r} | {cells[0]} | {cells[1]} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "results", nargs="+", type=Path, help="benchmark results folders (results/<dataset>/<name>)"
    )
    parser.add_argument("--out", type=Path, default=Path("experiments/results/selection"))
    args = parser.parse_args()
    merged: dict = {}
    for folder in args.results:
        if not (folder / "extra_sets").is_dir():
            raise SystemExit(f"{folder}: no extra_sets folder; pass a benchmark results folder")
        merged.update(collect(folder))
    if not merged:
        raise SystemExit(f"{args.results}: no tgad ExtraSets with recorded shot-fidelity scores")
    summary = summarise(merged)
    for category, scorers in merged.items():
        plot(category, scorers, args.out / f"selection_{category}.png")
    with atomic_file(args.out / "selection.json") as handle:
        json.dump(summary, handle, indent=2)
    with atomic_file(args.out / "selection.md") as handle:
        handle.write(markdown(summary))
    print(markdown(summary))


if __name__ == "__main__":
    main()
