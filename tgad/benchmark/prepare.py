"""Before a benchmark's first row, once: the checks that would fail every row alike, the healing of what a
killed run left in the results folder, and the plan of the rows left to run.

Whoever starts the run does it once: ``tgad benchmark`` (its preflight adds the command line's own checks
around it and hands the ``PreparedRun`` to ``run_benchmark``), or ``run_benchmark`` itself for a Python
caller that passes none.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from tgad.baselines.registry import check_backbone, check_image_size, check_weights
from tgad.benchmark.plan import GENERATED, BenchmarkConfig, BenchmarkError, Row, full_plan
from tgad.benchmark.results import ResultsCSV
from tgad.benchmark.results_repair import heal_results_folder
from tgad.benchmark.row_task import make_datamodule
from tgad.data.deep_check import decode_all
from tgad.generate.memory import final_draw_problem
from tgad.text.keywords import resolve_keyword


@dataclass(frozen=True)
class PreparedRun:
    """A checked benchmark with its results folder healed: every planned row, and those still to run."""

    planned: list[Row]
    todo: list[Row]


def check_models(config: BenchmarkConfig) -> None:
    """Every model can use the backbone, and its weights are found (or random ones are allowed)."""
    for model in config.grid.models:
        try:
            check_backbone(model, config.detectors.backbone)
        except ValueError as err:
            raise BenchmarkError(f"--models/--backbone: {err}") from err
        try:
            check_image_size(model, config.detectors.image_size)
        except ValueError as err:
            raise BenchmarkError(
                f"--image-size {config.detectors.image_size}: {err}; pass a larger --image-size or leave {model} out of "
                "--models"
            ) from err
        check_weights(
            model,
            config.detectors.backbone,
            config.detectors.backbone_weights,
            config.detectors.allow_random_backbone,
        )


def check_final_memory(config: BenchmarkConfig) -> None:
    """The generated conditions' final draw of ``n_gen`` images fits in memory (``tgad.generate.memory``)."""
    if set(config.grid.conditions) & set(GENERATED):
        problem = final_draw_problem(config.recipe, config.grid.n_gen)
        if problem:
            raise BenchmarkError(f"--n-gen {config.grid.n_gen}: {problem}")


def check_benchmark(config: BenchmarkConfig, datamodules: Mapping[str, object] | None = None) -> None:
    """Fail at once, before any row, on a model that cannot run, a category without a keyword (generated
    conditions), a missing dataset/category, an image or mask that does not decode, or extra sets too large
    for this machine's memory. ``datamodules``: a datamodule per category the caller already built (any
    shots: only the category's index is read), else one is built here."""
    check_models(config)
    if set(config.grid.conditions) & set(GENERATED):
        for category in config.grid.categories:
            resolve_keyword(category, config.generator.keywords.get(category))  # KeywordError: set --keywords
    for category in config.grid.categories:
        dm = (datamodules or {}).get(category)
        if dm is None:
            dm = make_datamodule(config, category, config.grid.shots[0], config.grid.seeds[0], [])
        dm.prepare_data()
        # every image and mask decoded in full (cached by size and mtime): a truncated test JPEG otherwise
        # failed after the generator, the Integrator and the detector's fit
        decode_all(dm.index())
    check_final_memory(config)


def plan_run(config: BenchmarkConfig) -> PreparedRun:
    """Heal the results folder (a damaged CSV or ExtraSet is moved aside), then plan: every row of the grid,
    and those not yet in its results CSV. Call it once every check has passed."""
    heal_results_folder(config.out_dir)
    done = set(ResultsCSV(config.out_dir / "results.csv").done_keys())
    planned = full_plan(config)
    return PreparedRun(planned, [row for row in planned if row.key() not in done])


def prepare_run(config: BenchmarkConfig) -> PreparedRun:
    """The checks, then the healing and the plan: what ``run_benchmark`` does first when given no plan."""
    check_benchmark(config)
    return plan_run(config)
