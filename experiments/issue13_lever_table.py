"""The issue-13 lever ablation as one table: for every lever folder beside ``fair_k1`` (seed 0, the ``tgad``
condition with defect_safe and tau calibrated from the shot), per class, the test metrics, the validation
columns and the calibrated tau, next to the reference configuration (``fair_k1``) and ``plain_aug``.

    python experiments/issue13_lever_table.py [--root experiments/results/benchmark/issue13]

Writes ``<root>/levers.md``. The rows come from each folder's results.csv; tau from the ExtraSet manifests.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from statistics import mean

from tgad.assets.cache import atomic_file
from tgad.benchmark.results import ResultsCSV

FOLDERS = {  # results folder name -> the lever as the scripts set it
    "fair_k1": "reference: defect_safe, calibrate_tau (defect limit only)",
    "fair_k1_implausible": "max_implausible=0.02 (calibration also limits invented structure)",
    "fair_k1_selfsim": "self_similar=4, patch_fraction=0.5",
    "fair_k1_block": "target_block=4, patch_fraction=0.25",
    "fair_k1_neighbors": "code_neighbors=4",
}
CLASSES = (("mvtec", "hazelnut_256"), ("embedded", "brick"), ("embedded", "grass"), ("embedded", "gravel"))
COLUMNS = ("image_auroc", "pixel_auroc", "val_spread", "val_normal_cov", "val_defect_cov", "val_auroc")


def _row(root: Path, folder: str, dataset: str, category: str, condition: str) -> dict | None:
    path = root / dataset / folder / "results.csv"
    if not path.is_file():
        return None
    found = [
        r
        for r in ResultsCSV(path).rows()
        if r["category"] == category and r["seed"] == "0" and r["condition"] == condition
    ]
    return found[-1] if found else None


def _tau(root: Path, row: dict, dataset: str, folder: str) -> str:
    manifest = root / dataset / folder / row["extra_set"] / "manifest.json"
    if not manifest.is_file():
        return "?"
    tau = json.loads(manifest.read_text()).get("tau")  # the tau used (calibrated when calibrate_tau)
    return f"{tau:g}" if isinstance(tau, int | float) else "?"


def table(root: Path) -> str:
    head = "| configuration | class | tau | " + " | ".join(COLUMNS) + " |"
    lines = [
        "# Issue 13: generator levers (seed 0, `tgad` condition alone, PatchCore, 1 shot, N = 64)",
        "",
        "Each lever changes one setting of the reference generator configuration (defect_safe selection and update,",
        "tau calibrated from the shot, 300 VarianceVQGAN iterations, the same fitted generator per class). `plain_aug`",
        "is the control. Validation columns: held-out training normals and synthetic defects (analysis only).",
        "",
        head,
        "|" + "---|" * (len(COLUMNS) + 3),
    ]
    means: dict[str, list[dict]] = {}
    for folder, label in {"plain_aug": "plain_aug (control)", **FOLDERS}.items():
        for dataset, category in CLASSES:
            source, condition = ("fair_k1", "plain_aug") if folder == "plain_aug" else (folder, "tgad")
            row = _row(root, source, dataset, category, condition)
            if row is None:
                lines.append(f"| {label} | {category} | | " + " | ".join("not run" for _ in COLUMNS) + " |")
                continue
            means.setdefault(label, []).append(row)
            tau = "-" if folder == "plain_aug" else _tau(root, row, dataset, source)
            cells = [f"{float(row[c]):.3f}" if row[c] else "" for c in COLUMNS]
            lines.append(f"| {label} | {category} | {tau} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Class means (over the classes run):",
        "",
        "| configuration | classes | " + " | ".join(COLUMNS) + " |",
    ]
    lines.append("|" + "---|" * (len(COLUMNS) + 2))
    for label, rows in means.items():
        cells = [f"{mean(float(r[c]) for r in rows if r[c]):.3f}" for c in COLUMNS]
        lines.append(f"| {label} | {len(rows)} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--root", type=Path, default=Path("experiments/results/benchmark/issue13"))
    args = parser.parse_args()
    text = table(args.root)
    with atomic_file(args.root / "levers.md") as handle:
        handle.write(text)
    print(text)


if __name__ == "__main__":
    main()
