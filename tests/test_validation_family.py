"""Issue 23 part 3: the v2 validation family (defects at the scale and kind of real ones), the paired score,
and experiments/revalidate.py recomputing a benchmark's validation columns without its test split."""

from __future__ import annotations

import csv
import importlib.util
import math
import shutil
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from tests.test_scorers import _photo  # (3, H, W) from scikit-image's bundled photographs
from tgad.evaluation.validation import (
    COLUMNS,
    EXTENDED_COLUMNS,
    GAUSSIAN_REGULARISER,
    ExtraSetValidator,
    ValidationSettings,
    gaussian_image_scores,
    paired_score,
)
from tgad.features.patches import detector_features
from tgad.features.synthetic_defects import (
    CHANGE_THRESHOLD,
    V2_KINDS,
    VALIDATION_FAMILIES,
    VALIDATION_KINDS,
    make_defect,
    make_defects,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")
SIDE = 256


def _object_image(seed: int = 0) -> torch.Tensor:
    """(3, 256, 256): a flat background with a textured object (a scikit-image photograph) in the middle, like
    an MVTec object class: v2 defects must land on the object."""
    image = torch.tensor([0.55, 0.4, 0.35]).view(3, 1, 1).expand(3, SIDE, SIDE).clone()
    photo = F.interpolate(_photo("astronaut")[None], size=160, mode="bilinear", antialias=True)[0]
    image[:, 48:208, 48:208] = photo.roll(seed * 17, dims=2)
    return image


@pytest.fixture(scope="module")
def features():
    return detector_features()


# stated ranges (fractions of the area; the scratch: of the side) and what an exact mask may add or lose:
# a blurred 1-2 px stroke is up to ~4 px wide; a misplaced part changes its feathered or bent surroundings too
# (up to 1.3^2 x its area); a colour spot's faint rim and a diffusion fill equal to the old pixels are not change.
AREA = {"missing_part": (0.003, 0.015), "colour_spot": (0.002, 0.01), "misplaced_part": (0.01, 0.03)}


@pytest.mark.parametrize("kind", V2_KINDS)
def test_a_v2_defect_changes_exactly_its_mask_at_the_stated_size(kind):
    image = _object_image()
    generator = torch.Generator().manual_seed(11)
    for _ in range(6):
        out, mask = make_defect(image, kind, generator)
        changed = (out != image).any(0)
        assert torch.equal(changed, mask)  # nothing outside the mask moved, everything inside did
        assert mask.any() and ((out - image).abs().amax(0)[mask] > CHANGE_THRESHOLD).all()
        area = float(mask.float().mean())
        ys, xs = mask.nonzero().float().T
        if kind == "thin_scratch":
            extent = math.hypot(float(ys.max() - ys.min()), float(xs.max() - xs.min()))  # ~ the chord
            assert 0.10 * SIDE - 4 <= extent <= 0.30 * SIDE * 1.25 + 4, extent
            assert area * SIDE * SIDE <= extent * 1.25 * 5  # a thin stroke, not a patch
            assert 0.05 < float((out - image).abs().max()) <= 0.35 * 1.1 + 1e-6
        else:
            low, high = AREA[kind]
            grow = 1.3**2 if kind == "misplaced_part" else 1.0
            assert 0.5 * low <= area <= high * grow + 1 / SIDE**2, (kind, area)
        if kind == "colour_spot":
            assert float((out - image).abs().max()) <= 0.15 + 1e-6  # a 5-15 % shift at most
        if kind in ("thin_scratch", "missing_part", "colour_spot", "misplaced_part"):
            cy, cx = float(ys.mean()), float(xs.mean())
            assert 40 <= cy <= 216 and 40 <= cx <= 216  # on the object, not on the flat background


def test_the_families_are_named_and_a_seed_gives_the_same_bytes():
    assert VALIDATION_FAMILIES["v1"] == VALIDATION_KINDS  # v1 is the family every committed row used
    assert set(VALIDATION_FAMILIES["v2"]) == set(V2_KINDS) and not set(V2_KINDS) & set(VALIDATION_KINDS)
    images = torch.stack([_object_image(0), _object_image(1)])
    one, two = make_defects(images, 2, V2_KINDS, seed=5), make_defects(images, 2, V2_KINDS, seed=5)
    assert one.kinds == list(V2_KINDS)
    assert one.images.numpy().tobytes() == two.images.numpy().tobytes()
    assert torch.equal(one.masks, two.masks)
    assert not torch.equal(make_defects(images, 2, V2_KINDS, seed=6).masks, one.masks)
    assert ValidationSettings() == ValidationSettings.of_family("v1")  # the default, and its cache keys, kept
    assert ValidationSettings().family == "v1" and ValidationSettings.of_family("v2").family == "v2"
    with pytest.raises(ValueError, match="choose from"):
        ValidationSettings.of_family("v3")


def test_paired_score_is_one_for_obvious_defects_and_a_half_for_no_op_ones(features):
    photo = _photo("brick")
    crops = [photo[:, t : t + 192, left : left + 192] for t in (0, 60, 200, 300) for left in (40, 250)]
    images = F.interpolate(torch.stack(crops), size=96, mode="bilinear", antialias=True)  # (8, 3, 96, 96)
    shots, normals = images[:2], images[2:]
    obvious = ExtraSetValidator(features, shots, normals, ValidationSettings.of_family("v1"))
    columns = obvious.evaluate(None, extended=True)
    assert set(columns) == set(EXTENDED_COLUMNS) and columns["validation_family"] == "v1"
    assert columns["val_paired"] == 1.0  # pasted patches and foreign textures: every defect above its image
    assert set(obvious.evaluate(images[:1])) == set(COLUMNS)  # rows keep their layout unless asked
    # a "defect" that changes nothing: the defect images are the normals themselves
    state = obvious.state() | {"defect_features": obvious.normal_features, "defect_d0": obvious.normal_d0}
    no_op = ExtraSetValidator.from_state(features, state, ValidationSettings())
    assert no_op.evaluate(None, extended=True)["val_paired"] == 0.5
    assert no_op.evaluate(images[:1], extended=True)["val_paired"] == 0.5
    assert paired_score(torch.tensor([1.0, 2.0, 3.0, 4.0]), torch.tensor([2.0, 1.0, 3.0, 5.0])) == 0.625


def test_gaussian_scores_are_padims_mahalanobis_distance_and_judge_the_extra_set(features):
    """``val_auroc_gaussian`` scores as anomalib's PaDiM does (its Gaussian fit and distance, compared exactly on
    random features), stays finite for one image, and on real crops ranks the pasted defects above the normals."""
    from anomalib.models.components import MultiVariateGaussian
    from anomalib.models.image.padim.anomaly_map import AnomalyMapGenerator

    g = torch.Generator().manual_seed(0)
    train, query = torch.randn(5, 16, 6, generator=g), torch.randn(3, 16, 6, generator=g)  # (N, P, C)
    as_maps = lambda x: x.transpose(1, 2).reshape(len(x), 6, 4, 4)  # noqa: E731 (N, P, C) -> (N, C, 4, 4)
    stats = MultiVariateGaussian().fit(as_maps(train))
    theirs = AnomalyMapGenerator.compute_distance(as_maps(query), stats).flatten(1).amax(1)
    assert torch.allclose(gaussian_image_scores(train, query, chunk=5), theirs, rtol=1e-5)
    one = gaussian_image_scores(train[:1], query)  # one image: the regulariser alone, a scaled distance
    assert torch.allclose(one, (query - train[:1]).norm(dim=-1).amax(1) / GAUSSIAN_REGULARISER**0.5)

    photo = _photo("brick")
    crops = [photo[:, t : t + 192, left : left + 192] for t in (0, 60, 200, 300) for left in (40, 250)]
    images = F.interpolate(torch.stack(crops), size=96, mode="bilinear", antialias=True)  # (8, 3, 96, 96)
    validator = ExtraSetValidator(features, images[:2], images[2:], ValidationSettings.of_family("v1"))
    alone, extra = validator.evaluate(None, extended=True), validator.evaluate(images[1:2], extended=True)
    assert alone["val_auroc_gaussian"] >= 0.9 and 0 <= extra["val_auroc_gaussian"] <= 1


def _revalidate_module():
    return _experiment_module("revalidate")


def _experiment_module(name: str):
    path = Path(__file__).parents[1] / "experiments" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _read(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_revalidate_reproduces_a_benchmarks_own_columns_and_resumes(tmp_path):
    """A tiny benchmark (shots, plain_aug; PatchCore and PaDiM) with its validation; revalidating under v1
    gives back every row's own val_* cells, v2 others plus val_paired; a second run computes nothing."""
    from tests.helpers.datasets import write_mvtec
    from tgad.cli.main import main

    root = tmp_path / "data"
    write_mvtec(root, n_train=12, size=64)
    argv = ["benchmark", "--dataset", "mvtec", "--root", str(root), "--categories", "widget"]
    argv += ["--preset", "tiny", "--n-gen", "2", "--conditions", "shots", "plain_aug"]
    argv += ["--models", "patchcore", "padim", "--results-dir", str(tmp_path / "results")]
    assert main([*argv, "--no-wandb", "--no-progress"]) == 0
    source = tmp_path / "results" / "mvtec" / "tiny" / "results.csv"
    rows = _read(source)
    assert len(rows) == 4 and all(r["val_auroc"] for r in rows)
    revalidate = _revalidate_module()
    lines: list[str] = []
    v1 = tmp_path / "v1.csv"
    settings = ValidationSettings.of_family("v1")
    assert revalidate.revalidate(source, v1, root, settings, limit=3, say=lines.append) == 3
    assert revalidate.revalidate(source, v1, root, settings, say=lines.append) == 1  # resumed: the last row
    assert revalidate.revalidate(source, v1, root, settings, say=lines.append) == 0
    again = _read(v1)
    assert [revalidate.row_id(r) for r in again] == [revalidate.row_id(r) for r in rows]
    for old, new in zip(rows, again, strict=True):
        assert {c: new[c] for c in COLUMNS} == {c: old[c] for c in COLUMNS}  # v1: the row's own numbers
        assert new["validation_family"] == "v1" and 0 <= float(new["val_paired"]) <= 1
        assert new["image_auroc"] == old["image_auroc"]  # the test metrics are copied, never recomputed
    v2 = tmp_path / "v2.csv"
    assert revalidate.revalidate(source, v2, root, ValidationSettings.of_family("v2"), say=lines.append) == 4
    other = _read(v2)
    assert {r["validation_family"] for r in other} == {"v2"}
    assert [r["val_auroc_shots"] for r in other] != [r["val_auroc_shots"] for r in rows]
    assert any("[1/3]" in line for line in lines)  # progress, one line per row
    with pytest.raises(SystemExit, match="another"):  # a v1 output is not resumed as v2
        revalidate.revalidate(source, v1, root, ValidationSettings.of_family("v2"), say=lines.append)
    for row in again:  # each row judged by its own detector's kind of bank
        own = row["val_auroc_gaussian"] if row["model"] == "padim" else row["val_auroc"]
        assert row["val_auroc_own"] == own and 0 <= float(own) <= 1

    # A row's plain_aug set, deleted, is rebuilt on the row's own key with the same bytes.
    folder = source.parent / next(r["extra_set"] for r in rows if r["condition"] == "plain_aug")
    before = {p.name: p.read_bytes() for p in folder.rglob("*.png")}
    shutil.rmtree(folder)
    rebuild = _experiment_module("rebuild_extra_sets")
    assert rebuild.main([str(source), "--", *argv[1:], "--no-wandb", "--no-progress"]) == 0
    assert {p.name: p.read_bytes() for p in folder.rglob("*.png")} == before and len(before) == 2


def test_the_correlation_report_ranks_val_paired_and_names_the_family(tmp_path):
    """validation_correlation.py on a revalidated-style CSV: --column val_paired ranks that column's deltas,
    the predictors table lists val_auroc and val_paired, and --label names the family."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiments"))
    import validation_correlation as vc

    from tgad.benchmark.results import COLUMNS as ROW_COLUMNS

    rows = []
    for seed in range(5):  # val_paired deltas rank the test deltas exactly; val_auroc deltas backwards
        base = {"val_auroc": 0.9, "val_paired": 0.5, "image_auroc": 0.8}
        tgad = {
            "val_auroc": 0.9 - 0.01 * seed,
            "val_paired": 0.5 + 0.05 * seed,
            "image_auroc": 0.8 + 0.01 * seed,
        }
        for condition, values in (("plain_aug", base), ("tgad", tgad)):
            row = dict.fromkeys(ROW_COLUMNS, "") | dict.fromkeys(("validation_family",), "v2")
            row |= {
                "dataset": "mvtec",
                "category": "widget",
                "model": "patchcore",
                "backbone": "b",
                "shots": 2,
            }
            row |= {"seed": seed, "condition": condition, "n_gen": 64, "preset": "cpu", "image_size": 64}
            rows.append(
                row
                | values
                | {"val_normal_cov": 0.1, "val_defect_cov": 0.0, "date": f"d{seed}", "git_commit": "abc"}
            )
    path = tmp_path / "results_val_v2.csv"
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    out = tmp_path / "out"
    assert vc.main(["--column", "val_paired", "--label", "family v2", "--out", str(out), str(path)]) == 0
    readme = (out / "README.md").read_text()
    assert readme.startswith(
        "# Does the synthetic-defect validation predict the test? (issue 23 part 3): family v2"
    )
    assert "Spearman's rho of (val_paired - val_paired of plain_aug)" in readme
    assert "| all | 5 | 1.000 |" in readme  # the per-category table, of val_paired's deltas
    assert "| patchcore k=2 | 5 | 1.000 |" in readme  # per detector and k
    assert "| val_auroc | 5 | -1.000 |" in readme and "| val_paired | 5 | 1.000 |" in readme
