"""Do re-run rows give the committed numbers? Pairs rows by their key and prints each metric of both, to 3 decimals.

Usage: python experiments/row_speed_compare.py COMMITTED.csv RERUN.csv [more RERUN.csv ...]
Prints a Markdown table (committed -> re-run) and the largest absolute difference per metric.
"""

from __future__ import annotations

import csv
import math
import sys

from tgad.benchmark.plan import KEY_COLUMNS

METRICS = (
    "image_auroc",
    "pixel_auroc",
    "aupro",
    "val_auroc",
    "val_auroc_shots",
    "val_normal_cov",
    "val_defect_cov",
    "val_spread",
)


def _rows(path: str) -> dict[tuple, dict]:
    with open(path, newline="") as handle:
        return {tuple(r[c] for c in KEY_COLUMNS): r for r in csv.DictReader(handle)}


def _number(text: str) -> float:
    return float(text) if text not in ("", "nan") else math.nan


def main() -> None:
    committed = _rows(sys.argv[1])
    rerun = {k: v for path in sys.argv[2:] for k, v in _rows(path).items()}
    print("| category | condition | seed | " + " | ".join(METRICS) + " | same to 3 decimals |")
    print("|---|---|---|" + "---|" * (len(METRICS) + 1))
    worst = dict.fromkeys(METRICS, 0.0)
    for key, new in rerun.items():
        if key not in committed:
            continue
        old, cells, same = committed[key], [], True
        for metric in METRICS:
            a, b = _number(old[metric]), _number(new[metric])
            if math.isnan(a) and math.isnan(b):
                cells.append("nan")
                continue
            worst[metric] = max(worst[metric], abs(a - b))
            same &= f"{a:.3f}" == f"{b:.3f}"
            cells.append(f"{a:.3f}" if f"{a:.3f}" == f"{b:.3f}" else f"{a:.3f} -> {b:.3f}")
        print(
            f"| {new['category']} | {new['condition']} | {new['seed']} | "
            + " | ".join(cells)
            + f" | {same} |"
        )
    print("\nlargest absolute difference: " + ", ".join(f"{m} {d:.1e}" for m, d in worst.items()))


if __name__ == "__main__":
    main()
