"""The results CSV: one line per row, the only state a benchmark shares between runs.

Each append writes the whole file to a temporary sibling and renames it over the old one, so a run killed at
any moment leaves either the old file or the new one, never a truncated one, and loses at most the row in
progress. Appends hold an exclusive lock on ``<csv>.lock`` (POSIX), so several processes may share one results
folder, e.g. one per category. A results folder holds rows of one column layout; a file with other columns is
refused, except the layouts before the ``scorer`` column (its tgad rows were scored by CLIP:
``scorer=clip_text``), before the validation columns (left empty) and before the ``prior`` column (``none``),
which are upgraded on the next append.
"""

from __future__ import annotations

import contextlib
import csv
import io
import math
from collections.abc import Iterator, Mapping
from pathlib import Path

from filelock import FileLock

from tgad.assets.cache import atomic_file
from tgad.benchmark.plan import KEY_COLUMNS, BenchmarkError, row_key

COLUMNS = (
    *KEY_COLUMNS,
    "shot_ids",  # ';'-joined training file names
    "n_real",
    "n_extra",
    "n_test",
    "extra_set",  # ExtraSet folder, relative to the results folder
    "image_auroc",
    "pixel_auroc",
    "aupro",
    "spro",
    # the synthetic-defect validation of the extra set (tgad.evaluation.validation; empty where the train
    # split has too few images beyond the shots): analysis only, never used to choose anything
    "val_spread",
    "val_normal_cov",
    "val_defect_cov",
    "val_auroc",
    "val_auroc_shots",
    "val_images",
    "val_auroc_gaussian",  # the validation AUROC as PaDiM scores (a Gaussian per position; issue 23)
    "backbone_weights",  # ResolvedWeights.describe(), e.g. tf_efficientnet_lite0:package:57934424
    "clip_weights",  # the CLIP weights that made the extra set (tgad condition), else empty
    "extra_weights",  # other weights behind the extra set (the generator's)
    "model_settings",  # JSON of the model's settings (layers, coreset ratio, steps)
    "memory_bank",  # PatchCore memory-bank rows after the coreset
    "extra_seconds",  # making the extra set (0 when reused from the cache)
    "fit_seconds",
    "test_seconds",
    "peak_rss_mb",  # peak resident memory during fit + test
    "torch_threads",
    "tgad_version",
    "anomalib_version",
    "torch_version",
    "git_commit",
    "date",
)
METRICS = ("image_auroc", "pixel_auroc", "aupro", "spro")
VALIDATION_COLUMNS = tuple(c for c in COLUMNS if c.startswith("val_"))
# Earlier layouts, upgraded on read: tgad 0.1 (no scorer column), 0.2 (no validation columns), and each of
# them and the next one before the ``prior`` key column (every earlier row was fitted without a prior); then
# the layout with the prior but before ``val_auroc_gaussian`` (its cells read empty).
_BEFORE_GAUSSIAN = tuple(c for c in COLUMNS if c != "val_auroc_gaussian")
_BEFORE_PRIOR = (
    tuple(c for c in COLUMNS if c != "scorer" and c not in VALIDATION_COLUMNS),
    tuple(c for c in COLUMNS if c not in VALIDATION_COLUMNS),
    _BEFORE_GAUSSIAN,
)
LEGACY_LAYOUTS = (*(tuple(c for c in layout if c != "prior") for layout in _BEFORE_PRIOR), _BEFORE_GAUSSIAN)


def _upgrade(row: dict[str, str]) -> dict[str, str]:
    """An earlier row in the current layout: tgad 0.1's tgad rows were selected by CLIP (the only scorer then);
    rows before the validation have empty validation cells; rows before the prior column had none."""
    defaults = {"scorer": "clip_text" if row["condition"] == "tgad" else "", "prior": "none"}
    return {name: row.get(name, defaults.get(name, "")) for name in COLUMNS}


@contextlib.contextmanager
def csv_lock(path: Path) -> Iterator[None]:
    """An exclusive lock on ``<path>.lock`` (``filelock``: flock on POSIX, msvcrt on Windows) while a row is
    appended or the file repaired, so several processes may share one results folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path.with_name(path.name + ".lock"))):
        yield


def _cell(value: object) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return ";".join(str(v) for v in value)
    return str(value)


def to_float(value: str | None) -> float | None:
    """A metric cell back to a number (None when empty)."""
    return float(value) if value not in (None, "") else None


class ResultsCSV:
    """Read and append rows of ``path``; nothing is cached, every call reads the file on disk."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def rows(self) -> list[dict[str, str]]:
        if not self.path.is_file():
            return []
        with open(self.path, newline="", encoding="utf-8-sig") as handle:  # a BOM (a spreadsheet's save) too
            reader = csv.DictReader(handle)
            fields = tuple(reader.fieldnames or ())
            if fields in LEGACY_LAYOUTS:
                return [_upgrade(row) for row in reader]
            if fields != COLUMNS:
                raise BenchmarkError(
                    f"{self.path}: its columns differ from this tgad version's; move it away or use another "
                    "--name (a results folder holds rows of one layout)"
                )
            return list(reader)

    def done_keys(self) -> set[tuple[str, ...]]:
        return {row_key(row) for row in self.rows()}

    def append(self, row: Mapping[str, object]) -> bool:
        """Add one row (missing columns empty; unknown keys refused), atomically and under the lock.

        Returns False, writing nothing, when a row of the same key is already there: another process sharing
        the folder finished it first (its plan was made before this row was appended), and a key is one row.
        """
        unknown = set(row) - set(COLUMNS)
        if unknown:
            raise ValueError(f"results row has unknown columns {sorted(unknown)}")
        cells = {name: _cell(row.get(name)) for name in COLUMNS}
        with csv_lock(self.path):
            existing = self.rows()  # refuses a file of another layout before adding to it
            if any(row_key(old) == row_key(cells) for old in existing):
                return False
            buffer = io.StringIO()
            writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n")
            writer.writeheader()
            writer.writerows(existing)
            writer.writerow(cells)
            with atomic_file(self.path) as handle:
                handle.write(buffer.getvalue())
        return True
