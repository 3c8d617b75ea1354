"""Run a benchmark plan row by row: extra sets, fit + test, one CSV line per row, then the report.

``run_row`` is a pure function of its arguments (a row, the config, the extra-set folder) apart from the
time it takes; the results CSV is the only state shared between rows, so rows could run anywhere. Extra sets
are cached under ``<results>/extra_sets`` by a key of the arguments that make them.
"""

from __future__ import annotations

import functools
import json
import logging
import platform
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import anomalib
import torch
from lightning.pytorch import seed_everything

import tgad
from tgad.assets import AssetError
from tgad.benchmark.extra_sets import ExtraSet
from tgad.benchmark.plan import (
    GENERATED,
    BenchmarkConfig,
    BenchmarkError,
    Row,
    full_plan,
    make_plan,
    plan_scorers,
)
from tgad.benchmark.results import ResultsCSV
from tgad.benchmark.results_repair import heal_results_folder, is_environment_error, located
from tgad.benchmark.row_task import compute_row, describe, extra_key, make_extra
from tgad.benchmark.validate import Validations
from tgad.data import DATAMODULES, DataError
from tgad.data.deep_check import decode_all
from tgad.generate.heal import complete_extra_sets
from tgad.text.keywords import KeywordError

log = logging.getLogger(__name__)


@dataclass
class BenchmarkResult:
    out_dir: Path
    csv: Path
    summary: Path
    new_rows: int
    failures: list[str]
    seconds: float


@functools.cache
def git_commit(where: Path | None = None) -> str:
    """Short commit of the tgad checkout (``-dirty`` with local changes), or ``unknown``; read once per process.

    ``--no-optional-locks``: a plain ``git status`` refreshes the index and takes ``.git/index.lock`` in the
    installed tree, which a git command of the user's running there at the same moment would trip over.
    """
    where = where or Path(tgad.__file__).parent
    git = ["git", "--no-optional-locks"]
    try:
        commit = subprocess.run(
            [*git, "rev-parse", "--short", "HEAD"], cwd=where, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            [*git, "status", "--porcelain", "--untracked-files=no"],
            cwd=where,
            capture_output=True,
            text=True,
        ).stdout.strip()
        return commit + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def make_datamodule(
    config: BenchmarkConfig,
    category: str,
    shots: int | None,
    seed: int,
    extra: list[str],
    batch: int | None = None,
):
    run = config.recipe.run
    return DATAMODULES[config.dataset](
        root=config.root,
        category=category,
        shots=shots,
        shot_seed=seed,
        image_size=config.size,
        extra_normal_dirs=extra,
        train_batch_size=batch or run.train_batch_size,
        eval_batch_size=run.eval_batch_size,
    )


def _weights_text(manifest: dict[str, Any], clip: bool) -> str:
    parts = []
    for name, value in sorted(manifest.get("weights", {}).items()):
        if ("clip" in name.lower()) != clip:
            continue
        if value is None:  # no scorer read it, so it was never built
            parts.append(f"{name}:not_built")
        elif isinstance(value, dict) and value.get("describe"):
            parts.append(str(value["describe"]))
        elif isinstance(value, dict) and "source" in value:
            ident = (
                value.get("tag")
                or (value.get("sha256") or "")[:8]
                or ("RANDOM" if value["source"] == "random" else "")
            )
            parts.append(f"{value.get('name', name)}:{value['source']}:{ident}")
        else:
            parts.append(f"{name}:{value}")
    return ";".join(parts)


def run_row(row: Row, config: BenchmarkConfig, extra: ExtraSet | None, work_dir: str):
    """Fit and test one model on one condition. Returns (the CSV row as a dict, the Evaluation)."""
    from tgad.baselines.registry import build_model, memory_bank_size
    from tgad.evaluation.scoring import evaluate

    seed_everything(row.seed, verbose=False)
    overrides = dict(config.model_overrides.get(row.model, {}))
    built = build_model(
        row.model,
        backbone=row.backbone,
        image_size=row.image_size,
        preset=row.preset,
        seed=row.seed,
        allow_random_backbone=config.allow_random_backbone,
        backbone_file=config.backbone_weights,
        **overrides,
    )
    extra_dirs = [str(extra.path)] if extra else []
    dm = make_datamodule(config, row.category, row.shots, row.seed, extra_dirs, built.train_batch_size)
    dm.prepare_data()
    dm.setup()
    hardware = config.hardware.resolved()
    evaluation = evaluate(
        built.model, dm, work_dir, built.trainer_kwargs, n_examples=config.n_examples, hardware=hardware
    )
    scores = evaluation.scores
    manifest = extra.manifest if extra else {}
    out = {
        **row.as_columns(),
        "shot_ids": list(dm.shot_ids),
        "n_real": len(dm.shot_ids),
        "n_extra": scores.n_train - len(dm.shot_ids),
        "n_test": scores.n_test,
        "extra_set": str(extra.path.relative_to(config.out_dir))
        if extra and extra.path.is_relative_to(config.out_dir)
        else (str(extra.path) if extra else ""),
        "image_auroc": scores.image_auroc,
        "pixel_auroc": scores.pixel_auroc,
        "aupro": scores.aupro,
        "spro": scores.spro,
        "backbone_weights": built.weights.describe(),
        "clip_weights": _weights_text(manifest, clip=True),
        "extra_weights": _weights_text(manifest, clip=False),
        "model_settings": json.dumps({**built.settings, "accelerator": hardware.accelerator}, sort_keys=True),
        "memory_bank": memory_bank_size(built.model),
        "extra_seconds": extra.seconds if extra else 0.0,
        "fit_seconds": scores.fit_seconds,
        "test_seconds": scores.test_seconds,
        "peak_rss_mb": scores.peak_rss_mb,
        "torch_threads": torch.get_num_threads(),
        "tgad_version": tgad.__version__,
        "anomalib_version": anomalib.__version__,
        "torch_version": torch.__version__,
        "git_commit": git_commit(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    if out["memory_bank"] is not None:
        log.info(
            "%s/%s %s: PatchCore memory bank %d rows, peak RSS %.0f MB",
            row.category,
            row.condition,
            row.model,
            out["memory_bank"],
            scores.peak_rss_mb,
        )
    return out, evaluation


def check_models(config: BenchmarkConfig) -> None:
    """Every model can use the backbone, and its weights are found (or random ones are allowed)."""
    from tgad.baselines.registry import check_backbone, check_image_size, check_weights

    for model in config.models:
        try:
            check_backbone(model, config.backbone)
        except ValueError as err:
            raise BenchmarkError(f"--models/--backbone: {err}") from err
        try:
            check_image_size(model, config.size)
        except ValueError as err:
            raise BenchmarkError(
                f"--image-size {config.size}: {err}; pass a larger --image-size or leave {model} out of --models"
            ) from err
        check_weights(model, config.backbone, config.backbone_weights, config.allow_random_backbone)


def check_final_memory(config: BenchmarkConfig) -> None:
    """The generated conditions' final draw of ``n_gen`` images fits in memory (``tgad.generate.memory``)."""
    from tgad.generate.memory import final_draw_problem

    if set(config.conditions) & set(GENERATED):
        problem = final_draw_problem(config.recipe, config.n_gen)
        if problem:
            raise BenchmarkError(f"--n-gen {config.n_gen}: {problem}")


def preflight(config: BenchmarkConfig) -> None:
    """Fail at once, before any row, on a model that cannot run, a category without a keyword (generated
    conditions), a missing dataset/category, an image or mask that does not decode, or extra sets too large
    for this machine's memory. The CLI's preflight runs it too, with its own checks."""
    check_models(config)
    if set(config.conditions) & set(GENERATED):
        from tgad.text.keywords import resolve_keyword

        for category in config.categories:
            resolve_keyword(category, config.keywords.get(category))  # KeywordError: set --keywords
    for category in config.categories:
        dm = make_datamodule(config, category, config.shots[0], config.seeds[0], [])
        dm.prepare_data()
        # every image and mask decoded in full (cached by size and mtime): a truncated test JPEG otherwise
        # failed after the generator, the Integrator and the detector's fit
        decode_all(dm.index())
    check_final_memory(config)


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
) -> BenchmarkResult:
    """Run the rows of ``config`` missing from its results CSV, then write the report.

    ``executor``: ``sequential`` (in this process, in plan order) or ``ray`` (a Ray task graph, local or on the
    cluster at ``ray_address``; ``ray_executor.py``). Either way this process alone writes the CSV, the report
    and the W&B run, and the rows are the same."""
    from tgad.benchmark.report import write_report
    from tgad.benchmark.tracking import Tracker

    start = time.perf_counter()
    if config.threads:
        torch.set_num_threads(config.threads)
    out_dir = config.out_dir
    results = ResultsCSV(out_dir / "results.csv")
    heal_results_folder(out_dir)
    preflight(config)
    plan = make_plan(config, results.done_keys())
    total = len(full_plan(config))
    progress = progress or GridProgress()
    scorers = f" (scorers: {', '.join(plan_scorers(config))})" if plan_scorers(config) else ""
    tracker = Tracker(
        config.wandb,
        f"{config.dataset}-{config.name or config.preset}",
        _config_dict(config, platform.node()),
        out_dir,
    )
    failures: list[str] = []
    done = 0
    try:
        work = row_work(plan)
        heading = f"tgad benchmark {config.dataset} -> {out_dir}{scorers}"
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
            from tgad.benchmark.ray_executor import run_on_ray

            run_on_ray(config, plan, on_row, on_failure, address=ray_address)
        else:
            _run_sequential(config, plan, on_row, on_failure, progress.status)
        progress.close()
        rows = results.rows()
        summary = write_report(config, rows, out_dir, time.perf_counter() - start)
        extra_dirs = complete_extra_sets(out_dir / "extra_sets")
        tracker.log_results(rows, summary, sorted((out_dir / "plots").glob("*.png")), extra_dirs)
    finally:
        progress.close()
        tracker.finish()
    return BenchmarkResult(out_dir, results.path, summary, done, failures, time.perf_counter() - start)


def stops_the_grid(err: BaseException) -> bool:
    """A wrong setting or missing data/weights fails every row alike: stop and say so, do not go on."""
    return isinstance(err, (BenchmarkError, DataError, AssetError, KeywordError)) or is_environment_error(err)


def _run_sequential(config: BenchmarkConfig, plan: list[Row], on_row, on_failure, status) -> None:
    """The plan's rows in order in this process; each ExtraSet is made once (a failure is not retried)."""
    first_seed, validations = min(config.seeds), Validations(config)
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
            out = compute_row(row, config, extra, validations, plot=row.seed == first_seed, show=show)
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
    out = asdict(config)
    out |= {
        "host": host,
        "tgad_version": tgad.__version__,
        "git_commit": git_commit(),
        "torch_threads": torch.get_num_threads(),
        "resolved_scorers": list(plan_scorers(config)),
    }
    return out
