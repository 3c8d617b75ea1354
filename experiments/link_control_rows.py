"""Seed a new benchmark folder with another folder's rows of the given conditions and the caches they share.

A second configuration of the generator does not change the rows without it (``shots``, ``plain_aug``,
``aug_select``) nor the VarianceVQGAN fits: hard-linking them keeps one computation per row, with its original
provenance (``git_commit``, timings), instead of recomputing them. Idempotent: rows already in the target and
files already linked are left alone.

Usage: python experiments/link_control_rows.py SOURCE_FOLDER TARGET_FOLDER CONDITION...
"""

from __future__ import annotations

import csv
import os
import sys
from pathlib import Path

SHARED_CACHES = ("plain_aug", "aug_select", "generator", "validation")


def link_tree(source: Path, target: Path) -> int:
    linked = 0
    for path in source.rglob("*"):
        if path.is_file() and ".partial" not in str(path):
            dest = target / path.relative_to(source)
            if not dest.exists():
                dest.parent.mkdir(parents=True, exist_ok=True)
                os.link(path, dest)
                linked += 1
    return linked


def copy_rows(source: Path, target: Path, conditions: set[str]) -> int:
    with source.open(newline="") as handle:
        reader = csv.DictReader(handle)
        header, rows = reader.fieldnames, [r for r in reader if r["condition"] in conditions]
    have = set()
    if target.exists():
        with target.open(newline="") as handle:
            have = {tuple(r.values()) for r in csv.DictReader(handle)}
    new = [r for r in rows if tuple(r.values()) not in have]
    if not new:
        return 0
    target.parent.mkdir(parents=True, exist_ok=True)
    fresh = not target.exists()
    with target.open("a", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=header, lineterminator="\n")
        if fresh:
            writer.writeheader()
        writer.writerows(new)
    return len(new)


def main(argv: list[str]) -> None:
    if len(argv) < 3:
        sys.exit(__doc__.strip().splitlines()[-1])
    source, target, conditions = Path(argv[0]), Path(argv[1]), set(argv[2:])
    if not (source / "results.csv").is_file():
        sys.exit(f"error: {source / 'results.csv'}: no such file; run the source benchmark first")
    rows = copy_rows(source / "results.csv", target / "results.csv", conditions)
    files = sum(
        link_tree(source / "extra_sets" / name, target / "extra_sets" / name) for name in SHARED_CACHES
    )
    print(f"{target}: {rows} rows copied, {files} files linked from {source}")


if __name__ == "__main__":
    main(sys.argv[1:])
