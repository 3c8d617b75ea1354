"""A benchmark whose rows are computed by a stub, for tests of the bookkeeping around rows (resume, repair,
healing): each row's CSV values are a pure function of its key (no date, no timings)."""

from __future__ import annotations

import json

from tgad.benchmark.plan import BenchmarkConfig, Row
from tgad.benchmark.row_task import make_datamodule
from tgad.evaluation.scoring import Evaluation, Scores


def stub_config(root, results, **kwargs) -> BenchmarkConfig:
    settings = dict(seeds=(0, 1), conditions=("shots", "plain_aug"), preset="tiny", n_gen=3, wandb=False)
    return BenchmarkConfig.of(
        dataset="mvtec",
        categories=("widget",),
        root=str(root),
        results_dir=str(results),
        **(settings | kwargs),
    )


def stub_columns(row: Row) -> dict:
    """The stub's CSV row: a pure function of the row's key (no date, no timings)."""
    auroc = 0.6 + 0.1 * row.seed + (0.05 if row.condition == "plain_aug" else 0.0) + 0.001234567
    return row.as_columns() | {
        "image_auroc": auroc,
        "pixel_auroc": auroc - 0.1,
        "n_extra": row.n_gen,
        "backbone_weights": "stub:package:1",
        "model_settings": json.dumps({"layers": ["a", "b"]}),
        "shot_ids": ["000.png"],
    }


def row_datamodule(row: Row, config):
    """The row's datamodule, set up, as ``run_row`` returns it (the synthetic-defect check reads it)."""
    dm = make_datamodule(config, row.category, row.shots, row.seed, [])
    dm.prepare_data()
    dm.setup()
    return dm


def stub_run_row(row: Row, config, extra, work_dir):
    scores = Scores(0.6, None, 0.0, 0.0, 1.0, 1, 6)
    return stub_columns(row), Evaluation(scores), row_datamodule(row, config)
