"""Rebuild the ``plain_aug`` / ``aug_select`` extra sets that a benchmark's rows name but that are no longer on disk.

A benchmark keeps its extra sets under ``<results folder>/extra_sets`` (not committed); the validation can be
recomputed for old rows (``experiments/revalidate.py``) only where a row's set still exists. The sets without
the generator are cheap and made from seeds alone, so they are rebuilt here with the benchmark's own code
(``tgad.benchmark.extra_sets.ensure_extra_set``) from the command line that made the rows; every rebuilt
folder must land on the row's own ``extra_set`` path (the key hashes every input: shots and their file
hashes, seed, N, size, augmentation, tgad version), else the script stops, since another key means other
images. Generated sets (``tgad*``) are not rebuilt here: their fits take minutes each.

Usage: python experiments/rebuild_extra_sets.py RESULTS_CSV -- <the tgad benchmark arguments of the rows>
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

from tgad.benchmark.extra_sets import ensure_extra_set
from tgad.benchmark.row_task import make_datamodule
from tgad.cli.benchmark import add_benchmark_parser, config_from_args

CHEAP = ("plain_aug", "aug_select")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if "--" not in argv:
        raise SystemExit("usage: rebuild_extra_sets.py RESULTS_CSV -- <tgad benchmark arguments>")
    split = argv.index("--")
    results = Path(argv[:split][0])
    parser = argparse.ArgumentParser()
    add_benchmark_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["benchmark", *argv[split + 1 :]])
    config = config_from_args(args)
    with open(results, newline="") as handle:
        rows = [r for r in csv.DictReader(handle) if r["condition"] in CHEAP and r.get("extra_set")]
    wanted = {}
    for row in rows:  # one set per (category, shots, seed, condition): the detectors share it
        if int(row["image_size"]) == config.detectors.image_size and row["shots"] in map(str, args.shots):
            wanted.setdefault(
                (row["category"], row["shots"], int(row["seed"]), row["condition"]), row["extra_set"]
            )
    built = 0
    for (category, shots, seed, condition), relative in sorted(wanted.items()):
        target = results.parent / relative
        if (target / "manifest.json").is_file():
            continue
        k = None if shots == "full" else int(shots)
        dm = make_datamodule(config, category, k, seed, [])
        dm.prepare_data()
        dm.setup()
        made = ensure_extra_set(config, condition, dm, k, seed)
        if made.path.resolve() != target.resolve():
            raise SystemExit(
                f"{category} k={shots} seed={seed} {condition}: rebuilt {made.path}, the row names {target}"
            )
        built += 1
        print(f"{category} k={shots} seed={seed} {condition}: {made.path} ({made.seconds:.0f} s)", flush=True)
    print(f"{built} extra sets rebuilt, {len(wanted) - built} already on disk")
    return 0


if __name__ == "__main__":
    sys.exit(main())
