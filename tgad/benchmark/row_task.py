"""One benchmark row start to finish, and one ExtraSet, as functions any worker can run.

The sequential runner and the Ray executor (``ray_executor.py``) call the same two functions, so a row's
numbers do not depend on where it ran: ``make_extra`` makes (or reuses, by its key) the ExtraSet a row needs,
``compute_row`` fits and tests the row's model on it (``run_row``) and adds the synthetic-defect check
columns. Neither writes the results CSV: the caller (the driver) is its only writer. ``run_row`` is a pure
function of its arguments (a row, the config, the extra-set folder) apart from the time it takes.
"""

from __future__ import annotations

import functools
import json
import logging
import subprocess
import time
from pathlib import Path
from typing import Any

import anomalib
import torch
from lightning.pytorch import seed_everything

import tgad
from tgad.assets import AssetError
from tgad.assets.cache import scratch_dir
from tgad.baselines.registry import build_model, memory_bank_size
from tgad.benchmark.defect_check import DefectCheck
from tgad.benchmark.extra_sets import ExtraSet, ensure_extra_set
from tgad.benchmark.plan import BenchmarkConfig, BenchmarkError, Row
from tgad.benchmark.plots import save_extra_grid, save_overlays
from tgad.benchmark.results_repair import is_environment_error, shots_text
from tgad.data import DATAMODULES, DataError
from tgad.evaluation.scoring import evaluate
from tgad.text.keywords import KeywordError

log = logging.getLogger(__name__)


def variant(row: Row) -> str:
    """The condition as file names show it: ``tgad_shot_fidelity``, ``plain_aug``, and with a generator prior
    ``tgad_defect_safe_prior_other_categories`` (so a prior run's plots never overwrite the pure k-shot ones)."""
    name = f"{row.condition}_{row.scorer}" if row.scorer else row.condition
    return name if row.prior in ("", "none") else f"{name}_prior_{row.prior.split(':')[0]}"


def describe(row: Row) -> str:
    """The row as progress lines and failure messages name it."""
    shown = f"{row.condition}[{row.scorer}]" if row.scorer else row.condition
    return f"{row.category} k={shots_text(row.shots)} seed={row.seed} {shown} {row.model}"


def extra_key(row: Row) -> tuple:
    """Rows of one (category, shots, seed, condition, scorer) share one ExtraSet."""
    return (row.category, row.shots, row.seed, row.condition, row.scorer)


def stops_the_grid(err: BaseException) -> bool:
    """A wrong setting or missing data/weights fails every row alike: stop and say so, do not go on."""
    return isinstance(err, (BenchmarkError, DataError, AssetError, KeywordError)) or is_environment_error(err)


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
    """The datamodule of (category, shots, seed) at the run's image size, with ``extra`` normal folders."""
    run = config.recipe.run
    return DATAMODULES[config.grid.dataset](
        root=config.grid.root,
        category=category,
        shots=shots,
        shot_seed=seed,
        image_size=config.detectors.image_size,
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
    """Fit and test one model on one condition. Returns (the CSV row as a dict, the Evaluation, the row's
    datamodule, set up: the synthetic-defect check reads its shots and train split from it)."""
    seed_everything(row.seed, verbose=False)
    overrides = dict(config.detectors.model_overrides.get(row.model, {}))
    built = build_model(
        row.model,
        backbone=row.backbone,
        image_size=row.image_size,
        preset=row.preset,
        seed=row.seed,
        allow_random_backbone=config.detectors.allow_random_backbone,
        backbone_file=config.detectors.backbone_weights,
        **overrides,
    )
    extra_dirs = [str(extra.path)] if extra else []
    dm = make_datamodule(config, row.category, row.shots, row.seed, extra_dirs, built.train_batch_size)
    dm.prepare_data()
    dm.setup()
    hardware = config.hardware.resolved()
    evaluation = evaluate(
        built.model,
        dm,
        work_dir,
        built.trainer_kwargs,
        n_examples=config.output.n_examples,
        hardware=hardware,
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
    return out, evaluation, dm


def make_extra(config: BenchmarkConfig, row: Row, show=lambda text: None, plot: bool = False) -> ExtraSet:
    """The ExtraSet of ``row`` (made, or reused when a complete one with its key exists), and its image grid
    under ``plots/`` when ``plot``. Its datamodule (the shots alone) is built once per ExtraSet; the rows
    that use the set build their own, with the set's folder in their training data."""
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
    checks: DefectCheck,
    plot: bool = False,
    show=lambda text: None,
) -> dict:
    """The CSV row of ``row``: fit + test in a temporary folder of the results folder, the synthetic-defect
    check columns (from the row's own datamodule), and (``plot``) the anomaly-map overlays under ``plots/``."""
    show(f"{row.model} fit + test")
    with scratch_dir(config.out_dir, "tgad-row") as work:  # healed by the next run if this one is killed
        out, evaluation, dm = run_row(row, config, extra, str(work))
    show("synthetic-defect validation")
    out.update(checks.columns(row, dm, extra.path if extra else None))
    if plot and evaluation.examples:
        name = f"maps_{row.model}_{row.category}_k{shots_text(row.shots)}_{variant(row)}.png"
        save_overlays(evaluation.examples, Path(config.out_dir) / "plots" / name, title=describe(row))
    return out
