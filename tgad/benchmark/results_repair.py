"""A results CSV read defensively: damaged rows are found, the file is moved aside, and they are recomputed.

tgad's own appends are atomic, so damage comes from outside (a copy cut short, a full disk under another
tool, a hand edit). ``repair_results`` runs once before a benchmark plans its rows:

* a row with the wrong number of fields, an empty key column, or a metric cell that is not a number (every
  column of ``METRICS`` and every ``val_*`` column), or a last line without its newline (a cut row), is
  damaged: the whole file is copied to ``results.csv.damaged-<time>``, the whole rows are written back, and
  the damaged ones are planned again, with a one-line warning;
* an empty file or a cut header is moved aside the same way (the benchmark starts a fresh file);
* binary data, or a CSV without tgad's key columns, is a ``BenchmarkError`` naming the file and the fix.

A header of another tgad layout is left to ``ResultsCSV``, which upgrades or refuses it.
"""

from __future__ import annotations

import csv
import errno
import io
import logging
import math
import shutil
from pathlib import Path

from tgad.assets.cache import atomic_file, file_kind
from tgad.benchmark.plan import KEY_COLUMNS, BenchmarkError
from tgad.benchmark.results import COLUMNS, LEGACY_LAYOUTS, METRICS, csv_lock
from tgad.generate.heal import damaged_path, heal_extra_sets, remove_stale_partials

logger = logging.getLogger(__name__)

# key columns an earlier layout may lack or leave empty (shots and plain_aug rows have no scorer; CSVs before
# the prior column have none)
OPTIONAL_KEYS = ("scorer", "prior")
FIX = "move it away or choose another --name / --results-dir"


ENVIRONMENT_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS)


def is_environment_error(err: BaseException) -> bool:
    """A full or read-only disk: every later row would fail the same way, so the run stops (one line)."""
    return isinstance(err, OSError) and err.errno in ENVIRONMENT_ERRNOS


def located(err: OSError, where: Path) -> OSError:
    """``err`` naming a file: its own, else the folder that was being written (``write()`` names none)."""
    return err if err.filename else OSError(err.errno, err.strerror, str(where))


def shots_text(shots: int | None) -> str:
    """Shots as the CSV and file names write them: ``1``, ``full``."""
    return "full" if shots is None else str(shots)


def is_metric(column: str) -> bool:
    return column in METRICS or column.startswith("val_")


def _number(cell: str) -> bool:
    if cell == "":
        return True
    try:
        return not math.isinf(float(cell))
    except ValueError:
        return False


def row_problem(header: list[str], record: list[str]) -> str | None:
    """Why ``record`` is not a whole row of a CSV with ``header`` (None when it is)."""
    if len(record) != len(header):
        return f"{len(record)} fields instead of {len(header)}"
    for name, cell in zip(header, record, strict=True):
        if name in KEY_COLUMNS and name not in OPTIONAL_KEYS and cell == "":
            return f"empty key column {name!r}"
        if is_metric(name) and not _number(cell):
            return f"{name}={cell[:20]!r} is not a number"
    return None


def _decode(path: Path, data: bytes) -> str:
    nul = data.find(b"\x00")
    if nul >= 0:
        raise BenchmarkError(
            f"{path}: binary data (a NUL byte at offset {nul}); not a tgad results CSV: {FIX}"
        )
    try:
        return data.decode("utf-8-sig")  # a UTF-8 byte-order mark (a spreadsheet's save) is not a column
    except UnicodeDecodeError as err:
        raise BenchmarkError(
            f"{path}: not UTF-8 text (byte {err.start}); not a tgad results CSV: {FIX}"
        ) from err


def _header(path: Path, text: str) -> list[str] | None:
    """The header's fields; None for a cut header (damage); a foreign header is an error."""
    line, newline, _ = text.partition("\n")
    if not newline:
        known = (",".join(COLUMNS), *(",".join(layout) for layout in LEGACY_LAYOUTS))
        if any(full.startswith(line) for full in known):
            return None
    header = next(csv.reader([line]), [])
    missing = [c for c in KEY_COLUMNS if c not in header and c not in OPTIONAL_KEYS]
    if missing:
        raise BenchmarkError(f"{path}: not a tgad results CSV (its header lacks {', '.join(missing)}): {FIX}")
    return header


def _split(text: str, header: list[str]) -> tuple[list[list[str]], list[str]]:
    """(whole records, reasons for the damaged ones) of the body after the header line."""
    body = text.partition("\n")[2]
    reader = csv.reader(io.StringIO(body, newline=""), strict=True)
    records, bad = [], []
    while True:
        try:
            records.append(next(reader))
        except StopIteration:
            break
        except csv.Error as err:  # e.g. a quoted field cut at the end of the file: the rest is damaged
            bad.append(f"row {len(records) + 1}: {err}")
            break
    cut = bool(body) and not body.endswith("\n")
    good = []
    for index, record in enumerate(records):
        if not record:
            continue  # a blank line: csv.DictReader skips it too
        problem = row_problem(header, record)
        if problem is None and cut and index == len(records) - 1 and not bad:
            problem = "the last line has no line end (cut)"
        if problem is None:
            good.append(record)
        else:
            bad.append(f"row {index + 1}: {problem}")
    return good, bad


def _inspect(path: Path) -> tuple[str, list[str] | None, list[list[str]], list[str]]:
    """(text, header or None when cut, whole records, reasons for the damaged ones) of a results CSV."""
    text = _decode(path, path.read_bytes())
    header = _header(path, text) if text else None
    if header is None:
        return text, None, [], ["the file is empty" if not text else "its header line is cut"]
    good, bad = _split(text, header)
    return text, header, good, bad


def repair_results(path: str | Path) -> Path | None:
    """Check a results CSV; on damage keep a copy beside it and rewrite it with its whole rows.

    Returns:
        The ``<name>.damaged-<time>`` copy, or None when the file is absent or whole.
    Raises:
        BenchmarkError: the path is a folder, binary data, or a CSV that is not tgad's.
    """
    path = Path(path)
    if file_kind(path) not in ("nothing", "a file"):
        raise BenchmarkError(f"{path}: {file_kind(path)} where the results CSV belongs; {FIX}")
    if not path.is_file() or not _inspect(path)[3]:  # the common case reads the file once, takes no lock
        return None
    with csv_lock(path):  # another process may be repairing or appending: look again under the lock
        text, header, good, bad = _inspect(path)
        if not bad:
            return None
        aside = damaged_path(path)
        shutil.copy2(path, aside)
        if header is None:
            path.unlink()
        else:
            with atomic_file(path) as handle:
                handle.write(text.partition("\n")[0] + "\n")
                csv.writer(handle, lineterminator="\n").writerows(good)
    logger.warning(
        "%s: damaged (%s); copied to %s, kept %d whole row(s); the damaged ones will be recomputed",
        path,
        "; ".join(bad[:3]) + (f"; +{len(bad) - 3} more" if len(bad) > 3 else ""),
        aside.name,
        len(good),
    )
    return aside


# What a benchmark writes in its results folder, and what each must be: anything else in the way (a folder
# named results.csv.lock, a file named plots) failed only after the first row was computed, and lost it.
LAYOUT = {
    "results.csv": "a file",
    "results.csv.lock": "a file",
    "summary.md": "a file",
    "recipe.yaml": "a file",
    "plots": "a folder",
    "extra_sets": "a folder",
}


def check_results_folder(out_dir: str | Path) -> None:
    """Every name a benchmark writes in ``out_dir`` is absent or of the kind it writes (``BenchmarkError``)."""
    for name, kind in LAYOUT.items():
        found = file_kind(Path(out_dir) / name)
        if found not in ("nothing", kind):
            raise BenchmarkError(
                f"{Path(out_dir) / name}: {found} where the benchmark keeps {kind} of that name; move it away "
                "or choose another --name / --results-dir"
            )


def heal_results_folder(out_dir: str | Path) -> None:
    """Before a benchmark plans its rows: repair its CSV, remove temporaries of killed runs, and move aside
    ExtraSets that do not load (they are made again when a row needs them)."""
    out_dir = Path(out_dir)
    check_results_folder(out_dir)
    repair_results(out_dir / "results.csv")
    remove_stale_partials(out_dir)
    heal_extra_sets(out_dir / "extra_sets")
