"""Recompute the validation columns of an existing results.csv under another synthetic-defect family (issue 23).

The validation (``tgad.evaluation.validation``) needs only a row's shots, its extra set and held-out *training*
normals, never the test split, so its columns can be recomputed for rows already run, as long as their extra
sets are still on disk (a benchmark keeps them under ``<results folder>/extra_sets``; the row's ``extra_set``
cell is relative to that folder). For each row this rebuilds what the row's validation did: the bank of the
row's shots (its ``shot_ids``, checked against the dataset's choice for its seed) plus its extra set, in the
detector's features; the same held-out normals; their synthetic defects from the chosen family. The
validation does not depend on the row's detector (it always measures in PatchCore's features with PatchCore's
image score), so PatchCore and PaDiM rows are handled alike, and rows sharing an extra set share the numbers.

The output is the input's rows with the ``val_*`` cells replaced and ``val_paired`` and ``validation_family``
set (appended as columns when the input lacks them); the test metrics are copied, not recomputed. It is
rewritten atomically after each row and resumable: rows already in it (same key columns) are skipped.
With ``--family v1`` and the commit that made the rows, the recomputed columns equal the rows' own.
``val_auroc_gaussian`` (PaDiM's Gaussian per position over the same features) is written beside them, and
``val_auroc_own``: that column for PaDiM rows, ``val_auroc`` for the others (``--column val_auroc_own`` in
``validation_correlation.py`` ranks each row by its own detector's kind of bank).

Usage:
  python experiments/revalidate.py RESULTS_CSV --root DATASET_ROOT --family v2 [--out OUT.csv]
      [--extra-root FOLDER] [--n-normals 16] [--defect-seed 0] [--limit N]
Then: python experiments/validation_correlation.py --out DIR OUT.csv
"""

from __future__ import annotations

import argparse
import csv
import io
import math
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

from tgad.assets.cache import atomic_file
from tgad.benchmark.plan import KEY_COLUMNS
from tgad.data import DATAMODULES
from tgad.data.images import read_resized
from tgad.evaluation.validation import (
    EXTENDED_COLUMNS,
    ExtraSetValidator,
    ValidationSettings,
    held_out_names,
)
from tgad.features.patches import detector_features
from tgad.features.synthetic_defects import VALIDATION_FAMILIES
from tgad.generate.artifact import load_manifest

# The validation AUROC as the row's own detector would score it: PaDiM rows by the Gaussian per position
# (``val_auroc_gaussian``), every other model by PatchCore's nearest patch (``val_auroc``).
OWN_COLUMN, OWN_SOURCE = "val_auroc_own", {"padim": "val_auroc_gaussian"}


def row_id(row: dict[str, str]) -> tuple[str, ...]:
    """A row's identity: its key columns (empty where an older layout lacks one)."""
    return tuple(row.get(name) or "" for name in KEY_COLUMNS)


class RowValidations:
    """Validation columns of results rows, one validator per (dataset, category, shots, seed, size) and one
    evaluation per extra set, kept for the whole run."""

    def __init__(self, root: Path, extra_root: Path, settings: ValidationSettings) -> None:
        self.root, self.extra_root, self.settings = root, extra_root, settings
        self.features = detector_features()
        self.validators: dict[tuple, ExtraSetValidator | None] = {}
        self.by_extra: dict[str, dict] = {}

    def _validator(self, row: dict[str, str]) -> ExtraSetValidator | None:
        shots = None if row["shots"] == "full" else int(row["shots"])
        key = (row["dataset"], row["category"], shots, int(row["seed"]), int(row["image_size"]))
        if key not in self.validators:
            self.validators[key] = self._build(*key, row["shot_ids"].split(";"))
        return self.validators[key]

    def _build(
        self, dataset: str, category: str, shots: int | None, seed: int, size: int, shot_ids: list[str]
    ) -> ExtraSetValidator | None:
        """As ``tgad.benchmark.validate.Validations._build`` builds it, from the row's dataset, shots and seed."""
        dm = DATAMODULES[dataset](
            root=self.root,
            category=category,
            shots=shots,
            shot_seed=seed,
            image_size=size,
            extra_normal_dirs=[],
        )
        dm.prepare_data()
        dm.setup()
        if list(dm.shot_ids) != shot_ids:
            raise SystemExit(
                f"{category} k={shots} seed={seed}: the row's shots {shot_ids} are not what {self.root} gives "
                f"now ({list(dm.shot_ids)}); pass the --root the benchmark used"
            )
        train = dm.samples[dm.samples.split == "train"]
        names = [Path(p).name for p in train.image_path]
        held = held_out_names(names, dm.shot_ids, self.settings.n_normals)
        if not held:
            return None
        by_name = dict(zip(names, train.image_path, strict=True))
        shot_images = read_resized(dm.shot_paths, size)
        normals = read_resized([by_name[n] for n in held], size)
        return ExtraSetValidator(self.features, shot_images, normals, self.settings)

    def columns(self, row: dict[str, str]) -> dict[str, float | str]:
        """The ``EXTENDED_COLUMNS`` of ``row`` (empty where the class has too few held-out normals)."""
        validator = self._validator(row)
        if validator is None:
            return {}
        if not row.get("extra_set"):
            return validator.evaluate(None, extended=True)
        key = (
            row["dataset"],
            row["category"],
            row["shots"],
            row["seed"],
            row["image_size"],
            row["extra_set"],
        )
        if key not in self.by_extra:
            folder = self.extra_root / row["extra_set"]
            if not folder.is_dir():
                raise SystemExit(
                    f"{folder}: the extra set of a row is not on disk; pass --extra-root (the results folder "
                    "that holds extra_sets/)"
                )
            files = [folder / record["file"] for record in load_manifest(folder)["images"]]
            extra = read_resized(files, int(row["image_size"]))
            self.by_extra[key] = validator.evaluate(extra, extended=True)
        return self.by_extra[key]


def _cell(value: object) -> str:
    if isinstance(value, float):
        return "" if math.isnan(value) else repr(value)
    return str(value)


def _read(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        return list(reader.fieldnames or ()), list(reader)


def _write(path: Path, fields: list[str], rows: list[dict[str, str]]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    with atomic_file(path) as handle:
        handle.write(buffer.getvalue())


def revalidate(
    source: Path,
    out: Path,
    root: Path,
    settings: ValidationSettings,
    extra_root: Path | None = None,
    limit: int | None = None,
    say: Callable[[str], None] = print,
) -> int:
    """Write ``out``: the rows of ``source`` with their validation columns recomputed under ``settings``;
    rows already in ``out`` are kept and skipped. Returns how many rows were computed."""
    fields, rows = _read(source)
    if "val_auroc" not in fields:
        raise SystemExit(f"{source}: no validation columns; not a results.csv of a benchmark with validation")
    fields += [c for c in (*EXTENDED_COLUMNS, OWN_COLUMN) if c not in fields]
    done: list[dict[str, str]] = []
    if out.is_file():
        old_fields, done = _read(out)
        families = {r.get("validation_family") for r in done} - {"", None}
        if old_fields != fields or families - {settings.family}:
            raise SystemExit(f"{out}: written from another CSV or family ({families}); choose another --out")
    finished = {row_id(r) for r in done}
    todo = [r for r in rows if row_id(r) not in finished][:limit]
    say(
        f"{source}: {len(rows)} rows, {len(finished)} already in {out}, {len(todo)} to compute ({settings.family})"
    )
    validations = RowValidations(root, extra_root or source.parent, settings)
    order = {row_id(r): i for i, r in enumerate(rows)}  # the output keeps the input's row order
    for index, row in enumerate(todo, 1):
        start = time.perf_counter()
        columns = validations.columns(row)
        new = dict(row) | {name: _cell(columns.get(name, "")) for name in EXTENDED_COLUMNS}
        new[OWN_COLUMN] = new[OWN_SOURCE.get(row["model"], "val_auroc")]
        done.append(new)
        done.sort(key=lambda r: order.get(row_id(r), len(rows)))
        _write(out, fields, done)
        say(
            f"[{index}/{len(todo)}] {row['category']} {row['model']} k={row['shots']} seed={row['seed']} "
            f"{row['condition']}{'/' + row['scorer'] if row.get('scorer') else ''}: val_auroc "
            f"{row['val_auroc'] or '-'} -> {new['val_auroc'] or '-'}, val_paired {new['val_paired'] or '-'} "
            f"({time.perf_counter() - start:.1f} s)"
        )
    return len(todo)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("csv", type=Path, help="a benchmark's results.csv (its extra sets beside it)")
    parser.add_argument("--root", type=Path, required=True, help="the dataset root the benchmark used")
    parser.add_argument("--family", default="v2", choices=sorted(VALIDATION_FAMILIES))
    parser.add_argument("--out", type=Path, help="default: <csv folder>/results_val_<family>.csv")
    parser.add_argument("--extra-root", type=Path, help="the folder extra_set cells are relative to")
    parser.add_argument("--n-normals", type=int, default=ValidationSettings.n_normals)
    parser.add_argument("--defect-seed", type=int, default=ValidationSettings.defect_seed)
    parser.add_argument("--limit", type=int, help="compute at most this many rows (a trial)")
    args = parser.parse_args(argv)
    if not args.csv.is_file():
        raise SystemExit(f"{args.csv}: no such results.csv")
    torch.set_num_threads(int(os.environ.get("TGAD_THREADS", "1")))
    settings = ValidationSettings.of_family(
        args.family, n_normals=args.n_normals, defect_seed=args.defect_seed
    )
    out = args.out or args.csv.with_name(f"results_val_{args.family}.csv")
    revalidate(args.csv, out, args.root, settings, args.extra_root, args.limit)
    print(f"written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
