"""The embedded dataset builder: layout, determinism, exact masks, graded severities, disjoint crops, idempotence."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tgad.data import embedded_builder as eb
from tgad.data.defects import DEFECT_TYPES, SEVERITIES, make_defect, to_u8
from tgad.data.embedded_builder import (
    EMBEDDED_CATEGORIES,
    EmbeddedSpec,
    build_embedded,
    iter_samples,
    load_severities,
)

TINY = EmbeddedSpec.tiny()


def _digests(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    return build_embedded(tmp_path_factory.mktemp("embedded"), "gravel", TINY)


def test_layout_counts_and_formats(built):
    assert built.name == "gravel"
    assert len(list((built / "train" / "good").glob("*.png"))) == TINY.n_train
    assert len(list((built / "test" / "good").glob("*.png"))) == TINY.n_test_good
    for kind in DEFECT_TYPES:
        images = sorted((built / "test" / kind).glob("*.png"))
        assert [p.name for p in images] == [f"{i:03d}.png" for i in range(TINY.n_test_per_defect)]
        for image_path in images:
            mask_path = built / "ground_truth" / kind / image_path.name.replace(".png", "_mask.png")
            image, mask = Image.open(image_path), Image.open(mask_path)
            assert image.mode == "RGB" and image.size == (TINY.image_size, TINY.image_size)
            assert mask.mode == "L" and mask.size == image.size
            values = set(np.unique(np.asarray(mask)).tolist())
            assert values == {0, 255}, f"{mask_path} is not a non-empty 0/255 mask: {values}"
    meta = json.loads((built / "embedded.json").read_text())
    assert meta["spec"] == {**TINY.__dict__} and meta["version"] == eb.VERSION
    assert meta["counts"]["train/good"] == TINY.n_train
    assert sum(meta["counts"].values()) == len(list(built.glob("t*/*/*.png")))
    defective = {str(p.relative_to(built)) for p in built.glob("test/*/*.png") if p.parent.name != "good"}
    assert set(load_severities(built)) == defective
    readme = (built / "README.txt").read_text()
    assert "skimage.data.gravel" in readme and "CC0" in readme and "synthetic" in readme
    assert not list(built.parent.glob(".*partial"))


def test_same_spec_is_byte_identical_in_another_process(built, tmp_path):
    """A fresh interpreter with another hash seed builds the same bytes (no hash(), no global RNG)."""
    code = (
        "import sys; from pathlib import Path; from tgad.data.embedded_builder import build_embedded, EmbeddedSpec; "
        "build_embedded(Path(sys.argv[1]), 'gravel', EmbeddedSpec.tiny())"
    )
    env = {"PYTHONHASHSEED": "12345", "PATH": "/usr/bin:/bin"}
    subprocess.run(
        [sys.executable, "-c", code, str(tmp_path)], check=True, env=env, cwd=Path(__file__).parents[1]
    )
    assert _digests(tmp_path / "gravel") == _digests(built)


def test_seed_and_category_change_the_images(built):
    first = next(iter_samples("gravel", TINY)).image
    assert not np.array_equal(first, next(iter_samples("gravel", EmbeddedSpec.tiny(seed=1))).image)
    assert not np.array_equal(first, next(iter_samples("brick", TINY)).image)


# Mean 8-bit change inside the mask that each severity must exceed: subtle is faint, never invisible.
MIN_MEAN_CHANGE = {"subtle": 4, "medium": 8, "obvious": 12}


@pytest.mark.parametrize("category", EMBEDDED_CATEGORIES)
def test_written_masks_are_exactly_the_changed_pixels(built, category, tmp_path):
    """Every written defect, at every severity: mask == the pixels whose bytes differ from the pristine crop."""
    folder = built if category == "gravel" else build_embedded(tmp_path, category, TINY)
    seen = set()
    for sample in iter_samples(category, TINY):
        written = np.asarray(Image.open(folder / sample.relpath))
        assert np.array_equal(written, sample.image), sample.relpath
        if sample.mask is None:
            assert sample.severity is None and np.array_equal(sample.image, sample.pristine)
            continue
        assert np.array_equal(np.asarray(Image.open(folder / sample.mask_relpath)), sample.mask)
        inside = sample.mask > 0
        diff = np.abs(sample.image.astype(int) - sample.pristine.astype(int)).max(-1)  # (S, S)
        assert inside.any(), f"{sample.relpath}: empty mask"
        assert np.array_equal(diff > 0, inside), f"{sample.relpath}: mask is not the set of changed pixels"
        assert diff[inside].mean() > MIN_MEAN_CHANGE[sample.severity], (
            f"{sample.relpath} ({sample.severity}): defect barely visible ({diff[inside].mean():.1f})"
        )
        seen.add(sample.severity)
    assert seen == set(SEVERITIES), f"{category}: severities present {sorted(seen)}"


def test_severities_follow_the_mix_per_type_and_the_seed():
    """Per type of 8: half obvious, a quarter each medium and subtle; the seed shuffles which image gets which."""
    spec = EmbeddedSpec(image_size=32, n_train=1, n_test_good=0, n_test_per_defect=8)
    levels = {kind: [] for kind in DEFECT_TYPES}
    for sample in iter_samples("brick", spec):
        if sample.severity is not None:
            levels[sample.relpath.split("/")[1]].append(sample.severity)
    for kind, found in levels.items():
        assert sorted(found) == sorted(["obvious"] * 4 + ["medium"] * 2 + ["subtle"] * 2), f"{kind}: {found}"
    other = EmbeddedSpec(**{**spec.__dict__, "seed": 5})
    reseeded = [s.severity for s in iter_samples("brick", other) if s.severity is not None]
    assert reseeded != [level for kind in DEFECT_TYPES for level in levels[kind]]


def _defects(kind: str, severity: str, size: int, n: int = 5):
    """``n`` (image, defect) pairs on brick crops, with grass as the foreign material."""
    spec = EmbeddedSpec(image_size=size)
    for seed in range(n):
        rng = np.random.default_rng(seed)
        image, _ = eb._crop(eb.load_photo("brick"), "brick", eb.TEST_ROWS, spec, rng)
        foreign, _ = eb._crop(eb.load_photo("grass"), "grass", eb.TEST_ROWS, spec, rng)
        yield image, make_defect(image, kind, rng, foreign=foreign, severity=severity)


# Mask area (fraction of the image) each severity keeps to at 256 px: subtle defects are small, not empty.
AREA = {"subtle": (0.0002, 0.04), "medium": (0.002, 0.10), "obvious": (0.004, 0.20)}


@pytest.mark.parametrize("severity", SEVERITIES)
@pytest.mark.parametrize("kind", DEFECT_TYPES)
def test_make_defect_mask_is_exact_at_8_bits_visible_and_sanely_sized(kind, severity):
    for size in (64, 256):
        for seed, (image, (out, mask)) in enumerate(_defects(kind, severity, size)):
            assert out.shape == image.shape and out.dtype == np.float32 and mask.dtype == bool
            assert np.array_equal(out[~mask], image[~mask]), "pixels outside the mask changed"
            changed = (to_u8(out) != to_u8(image)).any(-1)  # (S, S)
            assert mask.any() and np.array_equal(changed, mask), (
                f"{kind}/{severity} seed {seed}: mask inexact"
            )
            if size == 256:
                lo, hi = AREA[severity]
                assert lo <= mask.mean() <= hi, (
                    f"{kind}/{severity} seed {seed}: mask covers {mask.mean():.3%}"
                )


@pytest.mark.parametrize("kind", DEFECT_TYPES)
def test_severities_grade_size_and_contrast(kind):
    """Subtle < medium < obvious in mean mask area; subtle changes the colour less than obvious."""
    area, change = [], []
    for severity in SEVERITIES:
        pairs = list(_defects(kind, severity, 256, n=6))
        area.append(np.mean([mask.mean() for _, (_, mask) in pairs]))
        change.append(np.mean([np.abs(out - image).max(-1)[mask].mean() for image, (out, mask) in pairs]))
    assert area[0] < area[1] < area[2], f"{kind}: mask areas {area}"
    assert change[0] < change[2], f"{kind}: mean changes {change}"


def test_load_severities_names_an_old_build_and_the_fix(tmp_path):
    (tmp_path / "embedded.json").write_text(json.dumps({"version": 1, "crops": {}}))
    with pytest.raises(
        ValueError, match="embedded.json: builder version 1 records no severities; rebuild it"
    ):
        load_severities(tmp_path)


def test_make_defect_rejects_bad_arguments():
    image = np.zeros((32, 32, 3), np.float32)
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="unknown defect kind 'dent'.*scratch, hole, stain, foreign"):
        make_defect(image, "dent", rng)
    with pytest.raises(ValueError, match="needs foreign="):
        make_defect(image, "foreign", rng)
    with pytest.raises(ValueError, match="unknown severity 'huge'.*subtle, medium, obvious"):
        make_defect(image, "hole", rng, severity="huge")


def test_train_and_test_crops_come_from_disjoint_regions(built):
    assert eb.TRAIN_ROWS[1] <= eb.TEST_ROWS[0]
    crops = json.loads((built / "embedded.json").read_text())["crops"]
    boxes = {"train": [], "test": []}
    for relpath, box in crops.items():
        boxes[relpath.split("/")[0]].append(box)
    for a in boxes["train"]:
        for b in boxes["test"]:
            rows_meet = a["y"] < b["y"] + b["size"] and b["y"] < a["y"] + a["size"]
            cols_meet = a["x"] < b["x"] + b["size"] and b["x"] < a["x"] + a["size"]
            assert not (rows_meet and cols_meet), f"train crop {a} overlaps test crop {b}"


def test_recorded_boxes_are_where_the_pixels_came_from(built):
    """The stored image correlates with the photo cut at its recorded box, and not with a box elsewhere."""
    photo = eb.load_photo("gravel")
    crops = json.loads((built / "embedded.json").read_text())["crops"]

    def cut(box: dict) -> np.ndarray:
        patch = photo[box["y"] : box["y"] + box["size"], box["x"] : box["x"] + box["size"]]
        patch = patch[:, ::-1] if box["hflip"] else patch
        patch = patch[::-1] if box["vflip"] else patch
        size = (TINY.image_size, TINY.image_size)
        return np.asarray(Image.fromarray(np.ascontiguousarray(patch)).resize(size, Image.Resampling.BICUBIC))

    for relpath in [p for p in crops if p.endswith("good/000.png")]:
        box = crops[relpath]
        stored = np.asarray(Image.open(built / relpath))[..., 0].astype(np.float32)
        assert np.corrcoef(stored.ravel(), cut(box).ravel())[0, 1] > 0.98, relpath
        elsewhere = {**box, "y": (box["y"] + 64) % (512 - box["size"])}
        assert np.corrcoef(stored.ravel(), cut(elsewhere).ravel())[0, 1] < 0.5, relpath


def test_second_build_is_a_no_op_and_a_new_spec_rebuilds(tmp_path):
    folder = build_embedded(tmp_path, "brick", TINY)
    marker, image = folder / "embedded.json", folder / "test" / "hole" / "000.png"
    stamps = marker.stat().st_mtime_ns, image.stat().st_mtime_ns
    assert build_embedded(tmp_path, "brick", TINY) == folder
    assert (marker.stat().st_mtime_ns, image.stat().st_mtime_ns) == stamps

    before = image.read_bytes()
    other = EmbeddedSpec.tiny(seed=3)
    build_embedded(tmp_path, "brick", other)
    assert json.loads(marker.read_text())["spec"]["seed"] == 3
    assert image.read_bytes() != before


def test_interrupted_build_leaves_nothing_complete_looking(tmp_path, monkeypatch):
    def explode(*args, **kwargs):
        raise RuntimeError("interrupted")

    monkeypatch.setattr(eb, "make_defect", explode)
    with pytest.raises(RuntimeError, match="interrupted"):
        build_embedded(tmp_path, "grass", TINY)
    assert list(tmp_path.iterdir()) == []


def test_unknown_category_names_the_valid_ones(tmp_path):
    with pytest.raises(ValueError) as info:
        build_embedded(tmp_path, "carpet", TINY)
    message = str(info.value)
    assert "\n" not in message and "'carpet'" in message
    assert all(name in message for name in EMBEDDED_CATEGORIES)


def test_spec_validation():
    with pytest.raises(ValueError, match="crop_px"):
        EmbeddedSpec(crop_px=300)
    with pytest.raises(ValueError, match="n_train"):
        EmbeddedSpec(n_train=0)
