"""`tgad benchmark` end to end on a fixture dataset: all six conditions and two scorers, CSV rows with their
validation columns, summary, plots, and the separability guard."""

from __future__ import annotations

import csv
import re

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


GENERATED_ARGS = ("--allow-random-clip", "--keywords", "widget=metal nut", "--scorers", "auto", "none")


def test_benchmark_end_to_end(tmp_path):
    """All six conditions, two scorers, on an obviously separable fixture: every row must score image AUROC
    >= 0.99. A lower value here means the scoring path broke (e.g. raw scores squashed by a sigmoid give ~0.5).
    12 training images leave 11 beyond the shot, enough for the validation columns.
    """
    from tests.helpers.datasets import write_mvtec

    mvtec_root = tmp_path / "data"
    write_mvtec(mvtec_root, n_train=12)
    assert _run(mvtec_root, tmp_path / "results", *GENERATED_ARGS) == 0
    out = tmp_path / "results" / "mvtec" / "tiny"
    rows = _rows(out / "results.csv")
    variants = [(r["condition"], r["scorer"]) for r in rows]
    assert variants == [
        ("shots", ""),
        ("plain_aug", ""),
        ("tgad", "shot_fidelity"),  # auto with a random CLIP
        ("tgad", "none"),
        ("tgad_aug", "shot_fidelity"),
        ("tgad_aug", "none"),
        ("aug_select", ""),
        ("tgad_select", "shot_fidelity"),
        ("tgad_select", "none"),
    ]
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
        assert row["shot_ids"] == rows[0]["shot_ids"]
        assert int(row["n_extra"]) == (0 if row["condition"] == "shots" else 4)
        # the scorers (shot_fidelity: auto with random CLIP; none) read no CLIP, so none was built (issue 24)
        generated = row["condition"] in ("tgad", "tgad_aug", "tgad_select")
        assert row["clip_weights"] == ("clip:not_built" if generated else "")
        assert int(row["memory_bank"]) == (1 if row["condition"] == "shots" else 5) * 64  # every patch kept
        assert row["val_auroc_shots"] == rows[0]["val_auroc_shots"] != ""  # one validation set per seed
        assert float(row["val_images"]) == 2 * 11  # 11 held-out normals and a synthetic defect of each
        assert 0 <= float(row["val_auroc_gaussian"]) <= 1  # the same validation as PaDiM scores it
        if row["condition"] == "shots":
            assert float(row["val_normal_cov"]) == 0 and row["val_auroc"] == row["val_auroc_shots"]
        else:
            assert float(row["val_spread"]) > 0 and -1 <= float(row["val_defect_cov"]) <= 1

    manifests = {(r["condition"], r["scorer"]): load_manifest(out / r["extra_set"]) for r in rows[1:]}
    plain = manifests[("plain_aug", "")]
    assert plain["kind"] == "plain_aug" and plain["n"] == 4 and plain["shot_ids"] == [rows[0]["shot_ids"]]
    for scorer in ("shot_fidelity", "none"):
        generated, augmented = manifests[("tgad", scorer)], manifests[("tgad_aug", scorer)]
        assert generated["scorer"]["resolved"] == scorer and augmented["kind"] == "tgad_aug"
        assert augmented["config"]["source"]["cache_key"] == generated["cache_key"]
        assert augmented["config"]["augment"] == plain["config"]["augment"]
        assert [r["source_image"] for r in augmented["images"]] == [r["file"] for r in generated["images"]]
    for scorer in ("shot_fidelity", "none"):  # candidates from augmentation and from that scorer's tgad set
        selected = manifests[("tgad_select", scorer)]
        assert selected["kind"] == "tgad_select" and len(selected["images"]) == 4
        assert selected["config"]["source"]["cache_key"] == manifests[("tgad", scorer)]["cache_key"]
        pool = selected["config"]["selection"]["pool_by_source"]
        assert pool == {"augment": 12, "generated": 4, "generated_aug": 4}
        assert all("defect_cover" in r["parts"] for r in selected["images"])
    assert set(manifests[("aug_select", "")]["config"]["selection"]["pool_by_source"]) == {"augment"}
    # the two scorers share one fitted generator
    notes = [manifests[("tgad", s)]["generator"] for s in ("shot_fidelity", "none")]
    assert "saved to" in notes[0] and "reused from" in notes[1]
    assert len(list((out / "extra_sets" / "generator" / "widget").glob("*.pt"))) == 1

    # one recipe for the whole run: written beside the CSV, and every generated set records it
    from tgad.recipe import Recipe

    assert Recipe.from_yaml((out / "recipe.yaml").read_text()) == Recipe.build("tiny")
    assert manifests[("tgad", "none")]["config"]["recipe"] == {
        "preset": "tiny",
        "integrator": {"scorer": "none"},
    }

    summary = (out / "summary.md").read_text()
    header = (
        "| category | shots | plain_aug | tgad (shot_fidelity) | tgad (none) | tgad_aug (shot_fidelity) |"
    )
    assert header in summary and re.search(r"\| widget \| 1\.000 ± 0\.000 \| 1\.000 ± 0\.000 \|", summary)
    assert "tgad_aug (shot_fidelity) − plain_aug" in summary and "tgad (none) − shots" in summary
    assert "aug_select − plain_aug" in summary and "tgad_select (none) − plain_aug" in summary
    assert "Synthetic-defect validation" in summary and "normal cov" in summary
    assert "scorer `shot_fidelity`: -mean of the top 1% patch distances" in summary
    assert "CLIP: clip:not_built (not_built" in summary and "tf_efficientnet_lite0" in summary
    links = re.findall(r"\]\(([^)]+)\)", summary)
    assert "plots/bars_patchcore_k1_image_auroc.png" in links
    assert {"plots/extra_plain_aug_widget_k1.png", "plots/extra_tgad_aug_none_widget_k1.png"} <= set(links)
    assert {
        "plots/maps_patchcore_widget_k1_shots.png",
        "plots/maps_patchcore_widget_k1_tgad_shot_fidelity.png",
    } <= set(links)
    for link in links:
        assert (out / link).is_file() and (out / link).stat().st_size > 1000, link

    # the same arguments again: nothing to run, the CSV unchanged
    before = (out / "results.csv").read_bytes()
    assert _run(mvtec_root, tmp_path / "results", *GENERATED_ARGS) == 0
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
