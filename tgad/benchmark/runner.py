"""Run a benchmark plan row by row: extra sets, fit + test, one CSV line per row, then the report.

The rows themselves are computed by ``row_task`` (the same functions on a Ray worker); the results CSV is the
only state shared between rows, so rows could run anywhere. Extra sets are cached under
``<results>/extra_sets`` by a key of the arguments that make them. The checks, the healing of the results
folder and the plan are ``prepare``'s, done once per run.
"""

from __future__ import annotations

import logging
import platform
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

import tgad
from tgad.benchmark.defect_check import DefectCheck
from tgad.benchmark.extra_sets import ExtraSet
from tgad.benchmark.plan import BenchmarkConfig, Row, plan_scorers
from tgad.benchmark.prepare import PreparedRun, prepare_run
from tgad.benchmark.ray_executor import run_on_ray
from tgad.benchmark.report import write_report
from tgad.benchmark.results import ResultsCSV
from tgad.benchmark.results_repair import is_environment_error, located
from tgad.benchmark.row_task import compute_row, describe, extra_key, git_commit, make_extra, stops_the_grid
from tgad.benchmark.tracking import Tracker
from tgad.generate.heal import complete_extra_sets

log = logging.getLogger(__name__)


@dataclass
class BenchmarkResult:
    out_dir: Path
    csv: Path
    summary: Path
    new_rows: int
    failures: list[str]
    seconds: float


class GridProgress:
    """Receives the grid's progress. The CLI draws it as a rich bar (``tgad.cli.benchmark.RichGrid``); this
    default logs the start and stays silent after, so the library never prints."""

    def start(self, todo: int, total: int, heading: str, work: int | None = None) -> None:
        """``todo`` rows of ``total`` to run; ``work``: their cost in row units (``row_work``), for the ETA."""
        log.info("%s: %d of %d rows to run", heading, todo, total)

    def status(self, text: str) -> None:
        """What the current row is doing (sequential run only)."""

    def advance(self, work: int = 1) -> None:
        """One row finished or failed; ``work``: its cost in row units, its extra set's included."""

    def close(self) -> None:
        """The grid ended (normally or not)."""


# What making an extra set costs, in PatchCore rows at the cpu preset (issue 24's profiles: a generated set
# ~10 rows, a selection ~2-3, augmentation ~1): the progress bar's ETA weighs rows by it, not by count.
EXTRA_SET_WORK = {"plain_aug": 1, "tgad_aug": 1, "aug_select": 2, "tgad_select": 3, "tgad": 10}


def row_work(plan: list[Row]) -> dict[tuple[str, ...], int]:
    """Each row's cost in row units: 1, plus its extra set's (``EXTRA_SET_WORK``) for the first row that makes
    it; ``tgad_aug`` and ``tgad_select`` rows also make the ``tgad`` set when no earlier row did."""
    made: set[tuple] = set()
    work = {}
    for row in plan:
        units = 1
        needs = [row.condition] + (["tgad"] if row.condition in ("tgad_aug", "tgad_select") else [])
        for condition in needs if row.condition != "shots" else []:
            key = (row.category, row.shots, row.seed, condition, row.scorer)
            if key not in made:
                made.add(key)
                units += EXTRA_SET_WORK.get(condition, 1)
        work[row.key()] = units
    return work


def run_benchmark(
    config: BenchmarkConfig,
    progress: GridProgress | None = None,
    executor: str = "sequential",
    ray_address: str | None = None,
    prepared: PreparedRun | None = None,
) -> BenchmarkResult:
    """Run the rows of ``config`` missing from its results CSV, then write the report.

    ``executor``: ``sequential`` (in this process, in plan order) or ``ray`` (a Ray task graph, local or on the
    cluster at ``ray_address``; ``ray_executor.py``). Either way this process alone writes the CSV, the report
    and the W&B run, and the rows are the same. ``prepared``: the checks, healing and plan the caller already
    made (``prepare.prepare_run``; the CLI's preflight); without it they are made here."""
    start = time.perf_counter()
    if config.threads:
        torch.set_num_threads(config.threads)
    out_dir = config.out_dir
    results = ResultsCSV(out_dir / "results.csv")
    prepared = prepared or prepare_run(config)
    plan, total = prepared.todo, len(prepared.planned)
    progress = progress or GridProgress()
    scorers = f" (scorers: {', '.join(plan_scorers(config))})" if plan_scorers(config) else ""
    tracker = Tracker(
        config.output.wandb,
        f"{config.grid.dataset}-{config.output.name or config.grid.preset}",
        _config_dict(config, platform.node()),
        out_dir,
    )
    failures: list[str] = []
    done = 0
    try:
        work = row_work(plan)
        heading = f"tgad benchmark {config.grid.dataset} -> {out_dir}{scorers}"
        progress.start(len(plan), total, heading, work=sum(work.values()))

        def on_row(row: Row, out: dict) -> None:
            nonlocal done
            if results.append(out):  # the key is checked again under the CSV's lock
                done += 1
                tracker.log_row(out, done)
            else:
                log.warning("%s: already in %s (another run finished it first); not added twice",
                            describe(row), results.path)  # fmt: skip
            progress.advance(work[row.key()])

        def on_failure(row: Row, err: BaseException) -> None:
            failures.append(f"{describe(row)}: {type(err).__name__}: {err}")
            progress.advance(work[row.key()])

        if executor == "ray":
            run_on_ray(config, plan, on_row, on_failure, address=ray_address)
        else:
            _run_sequential(config, plan, on_row, on_failure, progress.status)
        progress.close()
        rows = results.rows()
        summary = write_report(config, rows, out_dir, time.perf_counter() - start, prepared.planned)
        extra_dirs = complete_extra_sets(out_dir / "extra_sets")
        tracker.log_results(rows, summary, sorted((out_dir / "plots").glob("*.png")), extra_dirs)
    finally:
        progress.close()
        tracker.finish()
    return BenchmarkResult(out_dir, results.path, summary, done, failures, time.perf_counter() - start)


def _run_sequential(config: BenchmarkConfig, plan: list[Row], on_row, on_failure, status) -> None:
    """The plan's rows in order in this process; each ExtraSet is made once (a failure is not retried)."""
    first_seed, checks = min(config.grid.seeds), DefectCheck(config)
    extras: dict[tuple, ExtraSet | Exception] = {}
    for row in plan:

        def show(text: str, where: str = describe(row)) -> None:
            status(f"{where}: {text}")

        try:
            extra = None
            if row.condition != "shots":
                key = extra_key(row)
                if key not in extras:
                    show("extra set")
                    try:
                        extras[key] = make_extra(config, row, show, plot=row.seed == first_seed)
                    except Exception as err:
                        extras[key] = err
                        raise
                if isinstance(extras[key], Exception):
                    raise RuntimeError(f"its extra set failed earlier ({extras[key]})")
                extra = extras[key]
            out = compute_row(row, config, extra, checks, plot=row.seed == first_seed, show=show)
        except Exception as err:
            if is_environment_error(err):
                raise located(err, config.out_dir) from err
            if stops_the_grid(err):
                raise
            log.exception("row %s failed", describe(row))  # one failing row must not cost the others
            on_failure(row, err)
            continue
        on_row(row, out)


def _config_dict(config: BenchmarkConfig, host: str) -> dict[str, Any]:
    out = config.flat() | {
        "hardware": asdict(config.hardware)
    }  # flat names: W&B runs compare across versions
    out |= {
        "host": host,
        "tgad_version": tgad.__version__,
        "git_commit": git_commit(),
        "torch_threads": torch.get_num_threads(),
        "resolved_scorers": list(plan_scorers(config)),
    }
    return out
