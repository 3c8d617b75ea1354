"""Resume, the atomic results CSV, the plan, the summary's arithmetic and W&B's failure handling.

Rows are computed by a stub here (the real fit is covered by test_benchmark.py): what is under test is the
bookkeeping around them.
"""

from __future__ import annotations

import csv
import json
from contextlib import contextmanager

import pytest

import tgad.benchmark.results as results_module
import tgad.benchmark.row_task as row_task
import tgad.benchmark.runner as runner
from tests.helpers.benchmark_stub import row_datamodule
from tgad.benchmark.plan import BenchmarkConfig, BenchmarkError, Row, make_plan
from tgad.benchmark.results import COLUMNS, ResultsCSV
from tgad.benchmark.tables import metric_table
from tgad.benchmark.tracking import Tracker
from tgad.evaluation.scoring import Evaluation, Scores


def _config(root, results, **kwargs):
    return BenchmarkConfig.of(
        dataset="mvtec",
        categories=("widget",),
        root=str(root),
        seeds=(0, 1),
        conditions=("shots", "plain_aug"),
        preset="tiny",
        n_gen=3,
        results_dir=str(results),
        **({"wandb": False} | kwargs),
    )


def _stub(calls, interrupt_at=None):
    def run_row(row: Row, config, extra, work_dir):
        calls.append(row.key())
        if len(calls) == interrupt_at:
            raise KeyboardInterrupt  # Ctrl-C in the middle of a row
        auroc = 0.6 + 0.1 * row.seed + (0.05 if row.condition == "plain_aug" else 0.0)
        out = row.as_columns() | {
            "image_auroc": auroc,
            "n_extra": 0 if extra is None else extra.manifest["n"],
        }
        out |= {"backbone_weights": "stub:package:1", "model_settings": json.dumps({}), "peak_rss_mb": 1.0}
        return out, Evaluation(Scores(auroc, None, 0.0, 0.0, 1.0, 1, 6)), row_datamodule(row, config)

    return run_row


def test_resume_runs_only_the_missing_rows(mvtec_root, tmp_path, monkeypatch):
    config = _config(mvtec_root, tmp_path / "results")
    calls: list = []
    monkeypatch.setattr(row_task, "run_row", _stub(calls, interrupt_at=3))
    with pytest.raises(KeyboardInterrupt):
        runner.run_benchmark(config)
    csv_path = config.out_dir / "results.csv"
    done = ResultsCSV(csv_path).rows()  # the CSV is intact: header and two whole rows
    assert [(r["seed"], r["condition"]) for r in done] == [("0", "shots"), ("0", "plain_aug")]
    interrupted = calls[2]

    calls.clear()
    monkeypatch.setattr(row_task, "run_row", _stub(calls))
    result = runner.run_benchmark(config)
    assert calls == [interrupted, calls[1]] and len(calls) == 2  # only the missing rows, the lost one first
    rows = ResultsCSV(csv_path).rows()
    assert [(r["seed"], r["condition"]) for r in rows] == [
        ("0", "shots"),
        ("0", "plain_aug"),
        ("1", "shots"),
        ("1", "plain_aug"),
    ]
    assert [r["n_extra"] for r in rows] == ["0", "3", "0", "3"]
    assert result.new_rows == 2 and not result.failures
    summary = result.summary.read_text()
    assert "| widget | 0.650 ± 0.071 | 0.700 ± 0.071 |" in summary  # shots, plain_aug
    assert "| category | plain_aug − shots |" in summary and "| widget | +0.050 ± 0.000 |" in summary

    calls.clear()
    runner.run_benchmark(config)
    assert calls == []  # everything done: nothing runs, the extra sets are reused from their cache
    assert len(list((config.out_dir / "extra_sets" / "plain_aug" / "widget").iterdir())) == 2  # one per seed


def test_a_failing_row_is_reported_and_retried(mvtec_root, tmp_path, monkeypatch):
    config = _config(mvtec_root, tmp_path / "results", models=("patchcore",))
    calls: list = []
    stub = _stub(calls)

    def flaky(row, *args):
        if row.seed == 1 and row.condition == "shots":
            raise FloatingPointError("loss is nan")
        return stub(row, *args)

    monkeypatch.setattr(row_task, "run_row", flaky)
    result = runner.run_benchmark(config)
    assert len(result.failures) == 1 and "loss is nan" in result.failures[0]
    assert len(ResultsCSV(config.out_dir / "results.csv").rows()) == 3
    assert len(make_plan(config, ResultsCSV(config.out_dir / "results.csv").done_keys())) == 1


def test_csv_append_is_atomic(tmp_path, monkeypatch):
    table = ResultsCSV(tmp_path / "results.csv")
    table.append({"dataset": "d", "category": "a", "image_auroc": 0.5, "shot_ids": ["x.png", "y.png"]})
    before = table.path.read_bytes()
    real = results_module.atomic_file

    @contextmanager
    def dies_half_way(path, mode="w"):
        with real(path, mode) as handle:

            class Half:
                def write(self, text):
                    handle.write(text[: len(text) // 2])
                    raise OSError("disk full")

            yield Half()

    monkeypatch.setattr(results_module, "atomic_file", dies_half_way)
    with pytest.raises(OSError, match="disk full"):
        table.append({"dataset": "d", "category": "b"})
    assert table.path.read_bytes() == before  # never truncated
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.csv", "results.csv.lock"]  # no temporary
    monkeypatch.setattr(results_module, "atomic_file", real)
    table.append({"dataset": "d", "category": "b"})
    rows = table.rows()
    assert [r["category"] for r in rows] == ["a", "b"] and rows[0]["shot_ids"] == "x.png;y.png"
    with pytest.raises(ValueError, match="unknown columns"):
        table.append({"nonsense": 1})
    other = tmp_path / "other.csv"
    other.write_text("a,b\n1,2\n")
    with pytest.raises(BenchmarkError, match="columns differ"):
        ResultsCSV(other).append({"dataset": "d"})


def test_plan_skips_rows_in_the_csv(tmp_path):
    config = BenchmarkConfig.of(categories=("brick", "grass"), shots=(1, None), seeds=(0,), n_gen=8)
    rows = make_plan(config)
    # categories x shots x conditions (one model, one seed, one scorer: the cpu recipe's defect_safe)
    assert len(rows) == 2 * 2 * 6
    assert {r.scorer for r in rows if r.condition in ("tgad", "tgad_aug", "tgad_select")} == {"defect_safe"}
    assert {r.scorer for r in rows if r.condition in ("shots", "plain_aug", "aug_select")} == {""}
    assert {r.n_gen for r in rows if r.condition == "shots"} == {0} and rows[
        0
    ].backbone == "tf_efficientnet_lite0"
    table = ResultsCSV(tmp_path / "results.csv")
    for row in rows[:5]:
        table.append(row.as_columns())  # read back as strings ("full", "256", ...)
    assert make_plan(config, table.done_keys()) == rows[5:]
    with pytest.raises(BenchmarkError, match="--conditions"):
        BenchmarkConfig.of(categories=("brick",), conditions=("gan",))


def test_summary_means_stds_and_paired_deltas():
    values = {  # (category, seed) -> (shots, tgad)
        ("a", 0): (0.6, 0.7),
        ("a", 1): (0.8, 0.8),
        ("b", 0): (0.5, 0.9),
        ("b", 1): (0.7, 0.9),
    }
    rows = [
        {"category": c, "seed": str(s), "condition": cond, "image_auroc": str(v[i])}
        for (c, s), v in values.items()
        for i, cond in enumerate(("shots", "tgad"))
    ]
    for row in rows:
        row["scorer"] = "shot_fidelity" if row["condition"] == "tgad" else ""
    table, stats = metric_table(rows, "image_auroc", ["a", "b"], ["shots", "tgad"], ["shot_fidelity"])
    lines = table.splitlines()
    assert lines[0] == "| category | shots | tgad (shot_fidelity) |"
    assert lines[2] == "| a | 0.700 ± 0.141 | 0.750 ± 0.071 |"
    assert lines[3] == "| b | 0.600 ± 0.141 | 0.900 ± 0.000 |"
    # mean over categories per seed: shots (0.55, 0.75), tgad (0.8, 0.85), delta (0.25, 0.1)
    assert lines[4] == "| **mean** | 0.650 ± 0.141 | 0.825 ± 0.035 |"
    deltas = lines[lines.index("Deltas (paired by seed):") + 2 :]
    assert deltas[0] == "| category | tgad (shot_fidelity) − shots |"
    assert deltas[2:] == ["| a | +0.050 ± 0.071 |", "| b | +0.300 ± 0.141 |", "| **mean** | +0.175 ± 0.106 |"]
    assert stats["a"]["shots"] == pytest.approx((0.7, 0.1414, 2), abs=1e-4)

    # two scorers: one column per scorer of each generated condition, tgad_aug measured against plain_aug
    rows = [
        {"category": "a", "seed": "0", "condition": c, "scorer": sc, "image_auroc": str(v)}
        for c, sc, v in [
            ("shots", "", 0.5),
            ("plain_aug", "", 0.6),
            ("tgad", "shot_fidelity", 0.7),
            ("tgad", "none", 0.65),
            ("tgad_aug", "shot_fidelity", 0.8),
            ("tgad_aug", "none", 0.55),
        ]
    ]
    conditions, scorers = ["shots", "plain_aug", "tgad", "tgad_aug"], ["shot_fidelity", "none"]
    table, _ = metric_table(rows, "image_auroc", ["a"], conditions, scorers)
    lines = table.splitlines()
    assert lines[0] == (
        "| category | shots | plain_aug | tgad (shot_fidelity) | tgad (none) | tgad_aug (shot_fidelity) "
        "| tgad_aug (none) |"
    )
    deltas = lines[lines.index("Deltas (paired by seed):") + 2 :]
    assert deltas[0] == (
        "| category | plain_aug − shots | tgad (shot_fidelity) − shots | tgad (shot_fidelity) − plain_aug "
        "| tgad (none) − shots | tgad (none) − plain_aug | tgad_aug (shot_fidelity) − plain_aug "
        "| tgad_aug (none) − plain_aug |"
    )
    assert deltas[2] == (
        "| a | +0.100 ± 0.000 | +0.200 ± 0.000 | +0.100 ± 0.000 | +0.150 ± 0.000 | +0.050 ± 0.000 "
        "| +0.200 ± 0.000 | -0.050 ± 0.000 |"
    )


def test_wandb_failures_never_stop_a_benchmark(tmp_path, monkeypatch):
    import wandb

    monkeypatch.setenv("WANDB_MODE", "offline")

    def broken_init(**kwargs):
        raise RuntimeError("no network, no luck")

    monkeypatch.setattr(wandb, "init", broken_init)
    tracker = Tracker(True, "x", {"a": 1}, tmp_path)
    assert tracker.run is None
    tracker.log_row({"category": "c", "model": "m", "shots": 1, "condition": "shots", "image_auroc": 0.5}, 1)
    tracker.finish()

    class FailingRun:
        def log(self, *args, **kwargs):
            raise ConnectionError("lost")

    tracker.run = FailingRun()
    tracker.log_row({"category": "c", "model": "m", "shots": 1, "condition": "shots", "image_auroc": 0.5}, 1)
    assert tracker.run is None  # turned off after the failure, without raising


def test_wandb_offline_run_is_written(mvtec_root, tmp_path, monkeypatch):
    for name in ("WANDB_DIR", "WANDB_CACHE_DIR", "WANDB_CONFIG_DIR", "WANDB_DATA_DIR"):
        monkeypatch.setenv(name, str(tmp_path / name))
    monkeypatch.setenv("WANDB_MODE", "offline")
    config = _config(mvtec_root, tmp_path / "results", wandb=True)
    calls: list = []
    monkeypatch.setattr(row_task, "run_row", _stub(calls))
    runner.run_benchmark(config)
    runs = list((config.out_dir / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and any(runs[0].rglob("*.wandb"))
    with open(config.out_dir / "results.csv", newline="") as handle:
        assert tuple(csv.DictReader(handle).fieldnames) == COLUMNS


@pytest.mark.parametrize("layout", [0, 1], ids=["before_scorer", "before_validation"])
def test_a_csv_of_an_earlier_layout_is_upgraded(tmp_path, layout):
    from tgad.benchmark.results import LEGACY_LAYOUTS

    path = tmp_path / "results.csv"
    fields = LEGACY_LAYOUTS[layout]
    assert "val_auroc" not in fields
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields, lineterminator="\n")
        writer.writeheader()
        for condition in ("shots", "tgad"):
            row = {"dataset": "d", "category": "a", "condition": condition, "image_auroc": "0.5"}
            if "scorer" in fields:
                row["scorer"] = "clip_text" if condition == "tgad" else ""
            writer.writerow(row)
    table = ResultsCSV(path)
    assert [(r["condition"], r["scorer"]) for r in table.rows()] == [("shots", ""), ("tgad", "clip_text")]
    assert all(r["val_auroc"] == "" for r in table.rows())
    table.append({"dataset": "d", "category": "a", "condition": "tgad", "scorer": "shot_fidelity"})
    with open(path, newline="") as handle:
        assert tuple(csv.DictReader(handle).fieldnames) == COLUMNS  # rewritten in the current layout
    assert [r["scorer"] for r in table.rows()] == ["", "clip_text", "shot_fidelity"]


def _append_many(path, worker, count):
    table = ResultsCSV(path)
    for i in range(count):
        table.append({"dataset": "d", "category": f"w{worker}", "seed": i, "image_auroc": 0.5})


def test_processes_sharing_a_results_csv_lose_no_row(tmp_path):
    """Two processes append at once (e.g. one benchmark per category): the lock keeps every row."""
    import multiprocessing

    path = tmp_path / "results.csv"
    context = multiprocessing.get_context("fork")
    workers = [context.Process(target=_append_many, args=(path, w, 25)) for w in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
        assert worker.exitcode == 0
    rows = ResultsCSV(path).rows()
    assert len(rows) == 50
    assert {(r["category"], r["seed"]) for r in rows} == {
        (f"w{w}", str(i)) for w in range(2) for i in range(25)
    }


def test_gap_closed_reads_each_condition_against_the_full_shot_row():
    """(condition - shots) / (full - shots) per seed; a category whose full row barely beats the shots (a
    ceiling) has no gap to close and says "-" instead of dividing by ~0."""
    values = {  # (category, seed) -> (shots, plain_aug)
        ("a", 0): (0.6, 0.7),
        ("a", 1): (0.8, 0.85),
        ("b", 0): (0.99, 0.99),
    }
    rows = [
        {"category": c, "seed": str(s), "condition": cond, "scorer": "", "image_auroc": str(v[i])}
        for (c, s), v in values.items()
        for i, cond in enumerate(("shots", "plain_aug"))
    ]
    table, _ = metric_table(
        rows, "image_auroc", ["a", "b"], ["shots", "plain_aug"], full={"a": 1.0, "b": 0.992}
    )
    gaps = table.splitlines()[table.splitlines().index("| category | full | plain_aug |") :]
    # a: seed 0 (0.7 - 0.6) / 0.4 = 0.25, seed 1 (0.85 - 0.8) / 0.2 = 0.25
    assert gaps[2] == "| a | 1.000 | +0.250 ± 0.000 |"
    assert gaps[3] == "| b | 0.992 | - |"  # full - shots = 0.002 < MIN_GAP
    no_full, _ = metric_table(rows, "image_auroc", ["a", "b"], ["shots", "plain_aug"])
    assert "Gap closed" not in no_full
