"""`tgad benchmark` end to end on a fixture dataset: CSV rows, summary, plots, and the separability guard."""

from __future__ import annotations

import csv
import re

import pytest

from tgad.benchmark.results import COLUMNS
from tgad.cli.main import main
from tgad.generate.artifact import load_manifest


def _run(mvtec_root, results, *extra):
    argv = [
        "benchmark",
        "--dataset",
        "mvtec",
        "--root",
        str(mvtec_root),
        "--categories",
        "widget",
        "--preset",
        "tiny",
        "--n-gen",
        "4",
        "--results-dir",
        str(results),
        "--no-wandb",
        "--no-progress",
        *extra,
    ]
    return main(argv)


def _rows(path):
    with open(path, newline="") as handle:
        reader = csv.DictReader(handle)
        assert tuple(reader.fieldnames) == COLUMNS
        return list(reader)


def test_benchmark_end_to_end(mvtec_root, tmp_path):
    """Two conditions on an obviously separable fixture: every condition must score image AUROC >= 0.99.

    A lower value here means the scoring path broke (e.g. raw scores squashed by a sigmoid give ~0.5).
    """
    assert _run(mvtec_root, tmp_path / "results", "--conditions", "shots", "plain_aug") == 0
    out = tmp_path / "results" / "mvtec" / "tiny"
    rows = _rows(out / "results.csv")
    assert [r["condition"] for r in rows] == ["shots", "plain_aug"]
    for row in rows:
        assert float(row["image_auroc"]) >= 0.99, row
        assert 0.0 <= float(row["pixel_auroc"]) <= 1.0 and 0.0 <= float(row["aupro"]) <= 1.0
        assert row["spro"] == ""  # MVTec AD has no sPRO
        assert (
            row["backbone_weights"].startswith("tf_efficientnet_lite0:")
            and "RANDOM" not in row["backbone_weights"]
        )
        assert int(row["n_real"]) == 1 and int(row["n_test"]) == 6
        assert int(row["memory_bank"]) > 0 and float(row["peak_rss_mb"]) > 0
    assert [int(r["n_extra"]) for r in rows] == [0, 4] and rows[0]["shot_ids"] == rows[1]["shot_ids"]
    manifest = load_manifest(out / rows[1]["extra_set"])
    assert (
        manifest["kind"] == "plain_aug"
        and manifest["n"] == 4
        and manifest["shot_ids"] == [rows[0]["shot_ids"]]
    )

    summary = (out / "summary.md").read_text()
    assert re.search(r"\| widget \| 1\.000 ± 0\.000 \| 1\.000 ± 0\.000 \| \+0\.000 ± 0\.000 \|", summary)
    assert "plain_aug − shots" in summary and "tf_efficientnet_lite0" in summary
    links = re.findall(r"\]\(([^)]+)\)", summary)
    assert "plots/bars_patchcore_k1_image_auroc.png" in links
    assert "plots/extra_plain_aug_widget_k1.png" in links
    assert {
        "plots/maps_patchcore_widget_k1_shots.png",
        "plots/maps_patchcore_widget_k1_plain_aug.png",
    } <= set(links)
    for link in links:
        assert (out / link).is_file() and (out / link).stat().st_size > 1000, link

    # the same arguments again: nothing to run, the CSV unchanged
    before = (out / "results.csv").read_bytes()
    assert _run(mvtec_root, tmp_path / "results", "--conditions", "shots", "plain_aug") == 0
    assert (out / "results.csv").read_bytes() == before


def test_missing_dataset_fails_at_once(tmp_path, capsys):
    code = main(
        [
            "benchmark",
            "--dataset",
            "mvtec",
            "--root",
            str(tmp_path / "nowhere"),
            "--results-dir",
            str(tmp_path),
        ]
    )
    assert code == 2
    assert "no mvtec categories found" in capsys.readouterr().err
    assert not (tmp_path / "mvtec").exists()


def test_unavailable_tgad_condition_is_one_clear_error(mvtec_root, tmp_path, monkeypatch, capsys):
    import tgad.benchmark.runner as runner

    monkeypatch.setattr(runner, "tgad_available", lambda: False)
    assert _run(mvtec_root, tmp_path / "results") == 2
    assert "tgad generate is not available in this build" in capsys.readouterr().err
    assert not (tmp_path / "results" / "mvtec" / "tiny" / "results.csv").exists()


@pytest.mark.slow
def test_benchmark_with_the_tgad_condition(mvtec_root, tmp_path):
    """All three conditions, the generator at its tiny preset with a random tiny CLIP (minutes on a CPU)."""
    code = _run(mvtec_root, tmp_path / "results", "--allow-random-clip", "--keywords", "widget=metal nut")
    assert code == 0
    out = tmp_path / "results" / "mvtec" / "tiny"
    rows = _rows(out / "results.csv")
    assert [r["condition"] for r in rows] == ["shots", "plain_aug", "tgad"]
    tgad_row = rows[2]
    assert 0.0 <= float(tgad_row["image_auroc"]) <= 1.0 and int(tgad_row["n_extra"]) == 4
    assert "RANDOM" in tgad_row["clip_weights"]
    assert load_manifest(out / tgad_row["extra_set"])["kind"] == "tgad"
    summary = (out / "summary.md").read_text()
    assert "tgad − shots" in summary and "tgad − plain_aug" in summary
    assert (out / "plots" / "extra_tgad_widget_k1.png").is_file()


def test_a_model_that_cannot_use_the_backbone_fails_before_any_row(mvtec_root, tmp_path, capsys):
    code = _run(
        mvtec_root,
        tmp_path / "results",
        "--models",
        "reverse_distillation",
        "--backbone",
        "tf_efficientnet_lite0",
    )
    assert code == 2
    assert "supports backbones" in capsys.readouterr().err
