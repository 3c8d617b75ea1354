"""One benchmark row start to finish, and one ExtraSet, as functions any worker can run.

The sequential runner and the Ray executor (``ray_executor.py``) call the same two functions, so a row's
numbers do not depend on where it ran: ``make_extra`` makes (or reuses, by its key) the ExtraSet a row needs,
``compute_row`` fits and tests the row's model on it and adds the validation columns. Neither writes the
results CSV: the caller (the driver) is its only writer.
"""

from __future__ import annotations

from pathlib import Path

from tgad.assets.cache import scratch_dir
from tgad.benchmark.extra_sets import ExtraSet, ensure_extra_set
from tgad.benchmark.plan import BenchmarkConfig, Row
from tgad.benchmark.results_repair import shots_text
from tgad.benchmark.validate import Validations


def variant(row: Row) -> str:
    """The condition as file names show it: ``tgad_shot_fidelity``, ``plain_aug``."""
    return f"{row.condition}_{row.scorer}" if row.scorer else row.condition


def describe(row: Row) -> str:
    """The row as progress lines and failure messages name it."""
    shown = f"{row.condition}[{row.scorer}]" if row.scorer else row.condition
    return f"{row.category} k={shots_text(row.shots)} seed={row.seed} {shown} {row.model}"


def extra_key(row: Row) -> tuple:
    """Rows of one (category, shots, seed, condition, scorer) share one ExtraSet."""
    return (row.category, row.shots, row.seed, row.condition, row.scorer)


def make_extra(config: BenchmarkConfig, row: Row, show=lambda text: None, plot: bool = False) -> ExtraSet:
    """The ExtraSet of ``row`` (made, or reused when a complete one with its key exists), and its image grid
    under ``plots/`` when ``plot``."""
    from tgad.benchmark.plots import save_extra_grid
    from tgad.benchmark.runner import make_datamodule

    dm = make_datamodule(config, row.category, row.shots, row.seed, [])
    dm.setup()
    extra = ensure_extra_set(config, row.condition, dm, row.shots, row.seed, show, scorer=row.scorer)
    if plot:
        name = f"extra_{variant(row)}_{row.category}_k{shots_text(row.shots)}.png"
        save_extra_grid(extra.path, dm.shot_paths, config.out_dir / "plots" / name)
    return extra


def compute_row(
    row: Row,
    config: BenchmarkConfig,
    extra: ExtraSet | None,
    validations: Validations,
    plot: bool = False,
    show=lambda text: None,
) -> dict:
    """The CSV row of ``row``: fit + test in a temporary folder of the results folder, the validation columns, and (``plot``) the
    anomaly-map overlays under ``plots/``."""
    from tgad.benchmark.plots import save_overlays
    from tgad.benchmark.runner import run_row

    show(f"{row.model} fit + test")
    with scratch_dir(config.out_dir, "tgad-row") as work:  # healed by the next run if this one is killed
        out, evaluation = run_row(row, config, extra, str(work))
    show("synthetic-defect validation")
    out.update(validations.columns(row, extra.path if extra else None))
    if plot and evaluation.examples:
        name = f"maps_{row.model}_{row.category}_k{shots_text(row.shots)}_{variant(row)}.png"
        save_overlays(evaluation.examples, Path(config.out_dir) / "plots" / name, title=describe(row))
    return out
