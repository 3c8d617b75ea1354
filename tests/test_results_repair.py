"""A damaged results.csv heals: a row cut at any byte is moved aside and recomputed, to the same final rows as an
uninterrupted run; whole rows are never touched. Rows are computed by a stub: the bookkeeping is under test."""

from __future__ import annotations

import logging

import pytest

import tgad.benchmark.row_task as row_task
import tgad.benchmark.runner as runner
from tests.helpers.benchmark_stub import stub_columns, stub_config, stub_run_row
from tests.helpers.datasets import write_mvtec
from tgad.benchmark.plan import make_plan
from tgad.benchmark.results import COLUMNS, ResultsCSV
from tgad.benchmark.results_repair import repair_results, row_problem


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """The CSV of a whole run (4 rows) and its folder's dataset root."""
    base = tmp_path_factory.mktemp("repair")
    write_mvtec(base / "data")
    config = stub_config(base / "data", base / "whole")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(row_task, "run_row", stub_run_row)
        runner.run_benchmark(config)
    csv_bytes = (config.out_dir / "results.csv").read_bytes()
    return base / "data", csv_bytes, ResultsCSV(config.out_dir / "results.csv").rows()


def _last_row_start(data: bytes) -> int:
    return data.rstrip(b"\n").rfind(b"\n") + 1


def test_a_cut_at_every_byte_of_the_last_row_resumes_to_the_same_rows(uninterrupted, tmp_path, caplog):
    root, whole, final = uninterrupted
    config = stub_config(root, tmp_path)
    path = config.out_dir / "results.csv"
    path.parent.mkdir(parents=True)
    start = _last_row_start(whole)
    assert len(whole) - start > 100
    for cut in range(start, len(whole) + 1):
        for old in path.parent.glob("results.csv.damaged-*"):
            old.unlink()
        path.write_bytes(whole[:cut])
        with caplog.at_level(logging.WARNING):
            aside = repair_results(path)
        assert (aside is None) == (cut in (start, len(whole))), cut  # only a cut row is damage
        if aside is not None:
            assert aside.read_bytes() == whole[:cut] and "damaged" in caplog.text
        done = ResultsCSV(path).rows()
        assert done == final[: len(done)] and len(done) >= len(final) - 1, cut  # whole rows kept, unchanged
        csv = ResultsCSV(path)
        for row in make_plan(config, csv.done_keys()):  # what run_benchmark would run now
            csv.append(stub_columns(row))
        assert path.read_bytes() == whole, cut


@pytest.mark.parametrize("where", ["start", "key", "metric", "last_byte"])
def test_a_cut_row_is_recomputed_by_the_benchmark(where, uninterrupted, tmp_path, monkeypatch, caplog):
    root, whole, final = uninterrupted
    config = stub_config(root, tmp_path)
    path = config.out_dir / "results.csv"
    path.parent.mkdir(parents=True)
    start = _last_row_start(whole)
    metric = whole.index(b",0.75", start) + 1  # the last row's image_auroc (seed 1, plain_aug)
    cut = {"start": start + 1, "key": start + 12, "metric": metric + 4, "last_byte": len(whole) - 1}[where]
    path.write_bytes(whole[:cut])
    calls: list = []

    def counting(row, *args):
        calls.append(row.key())
        return stub_run_row(row, *args)

    monkeypatch.setattr(row_task, "run_row", counting)
    with caplog.at_level(logging.WARNING):
        result = runner.run_benchmark(config)
    assert len(calls) == 1 and not result.failures  # only the cut row ran again
    assert ResultsCSV(path).rows() == final and path.read_bytes() == whole
    assert "damaged" in caplog.text and len(list(path.parent.glob("results.csv.damaged-*"))) == 1
    assert "| widget |" in result.summary.read_text()  # the report reads every row as numbers


def test_empty_file_and_cut_header_are_moved_aside(tmp_path):
    path = tmp_path / "results.csv"
    for content in (b"", ",".join(COLUMNS[:5]).encode()):
        path.write_bytes(content)
        aside = repair_results(path)
        assert aside is not None and aside.read_bytes() == content and not path.exists()
        aside.unlink()
    assert repair_results(path) is None  # nothing there: nothing to do


def test_row_checks_are_generic_overstub_columns():
    header = ["dataset", "category", "model", "backbone", "shots", "seed", "condition", "scorer", "n_gen",
              "preset", "image_size", "image_auroc", "val_spread", "note"]  # fmt: skip
    whole = ["mvtec", "widget", "patchcore", "r18", "1", "0", "shots", "", "0", "tiny", "64", "0.5", "", "x"]
    assert row_problem(header, whole) is None
    assert "val_spread" in row_problem(header, [*whole[:12], "abc", "x"])
    assert "image_auroc" in row_problem(header, [*whole[:11], "0.5.1", "", "x"])
    assert "empty key column 'model'" in row_problem(header, [*whole[:2], "", *whole[3:]])
    assert "fields" in row_problem(header, whole[:-1])


def test_a_damaged_middle_row_is_dropped_and_the_others_kept(uninterrupted, tmp_path):
    _, whole, final = uninterrupted
    path = tmp_path / "results.csv"
    lines = whole.decode().splitlines(keepends=True)
    lines[2] = lines[2].replace(",0.65", ",0.65oops", 1)  # row 2 (seed 0, plain_aug): its image_auroc
    path.write_text("".join(lines))
    assert repair_results(path) is not None
    assert ResultsCSV(path).rows() == [final[0], *final[2:]]
