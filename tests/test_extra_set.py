"""The ExtraSet artifact (schema, atomic write, cache key) and plain augmentation (seeded, no borders)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from tgad.generate.artifact import (
    ExtraSetError,
    cache_key,
    is_complete,
    load_manifest,
    validate_manifest,
    write_extra_set,
)
from tgad.generate.augment import (
    PlainAugConfig,
    augment_image,
    augment_shots,
    make_plain_aug_set,
    make_tgad_aug_set,
)

META = dict(
    kind="plain_aug",
    dataset="mvtec",
    category="widget",
    shot_ids=["000.png", "001.png"],
    shot_paths=["/d/000.png", "/d/001.png"],
    seed=3,
    config={"x": 1},
)


def _images(n: int, fail_at: int | None = None):
    for i in range(n):
        if i == fail_at:
            raise RuntimeError("generator died")
        yield torch.full((3, 8, 8), i / max(n, 1))


def test_write_and_load_round_trip(tmp_path):
    records = [{"source_shot": "000.png", "score": 0.5, "round": 1}, {"source_shot": "001.png"}]
    out = write_extra_set(
        tmp_path / "set", _images(2), records, key="abc", weights={"clip": {"x": 1}}, **META
    )
    manifest = load_manifest(out)
    assert manifest["n"] == 2 and manifest["image_size"] == [8, 8] and manifest["kind"] == "plain_aug"
    assert manifest["images"][0] == {
        "file": "train/good/0000.png",
        "source_shot": "000.png",
        "score": 0.5,
        "round": 1,
    }
    saved = np.asarray(Image.open(out / "train/good/0001.png"))
    assert saved.shape == (8, 8, 3) and int(saved[0, 0, 0]) == 128  # 0.5 * 255 rounded
    assert is_complete(out) and is_complete(out, "abc") and not is_complete(out, "other")


def test_interrupted_write_leaves_no_complete_looking_folder(tmp_path):
    records = [{"source_shot": "000.png"}] * 4
    with pytest.raises(RuntimeError, match="generator died"):
        write_extra_set(tmp_path / "set", _images(4, fail_at=2), records, **META)
    assert not (tmp_path / "set").exists()
    assert list(tmp_path.iterdir()) == []  # the temporary folder is gone too
    # a complete set of the same name survives a failed rewrite
    write_extra_set(tmp_path / "set", _images(1), records[:1], **META)
    with pytest.raises(RuntimeError):
        write_extra_set(tmp_path / "set", _images(4, fail_at=3), records, **META)
    assert load_manifest(tmp_path / "set")["n"] == 1


def test_validate_manifest_rejects_broken_ones(tmp_path):
    out = write_extra_set(tmp_path / "set", _images(2), [{"source_shot": "000.png"}] * 2, **META)
    good = json.loads((out / "manifest.json").read_text())
    validate_manifest(good, out)
    broken = [
        ({k: v for k, v in good.items() if k != "seed"}, "missing field 'seed'"),
        (good | {"kind": "gan"}, "kind"),
        (good | {"n": 3}, "n=3"),
        (good | {"seed": "3"}, "'seed' has type str"),
        (good | {"images": [{"file": "train/good/0000.png", "source_shot": "zzz.png"}] * 2}, "no shot"),
        (good | {"images": [{"file": "train/good/9.png", "source_shot": "000.png"}] * 2}, "missing"),
    ]
    for manifest, message in broken:
        with pytest.raises(ExtraSetError, match=message):
            validate_manifest(manifest, out)
    (out / "manifest.json").write_text("{not json")
    assert not is_complete(out)
    with pytest.raises(ExtraSetError, match="not valid JSON"):
        load_manifest(out)


def test_cache_key_is_canonical():
    assert cache_key({"a": 1, "b": [1, 2]}) == cache_key({"b": [1, 2], "a": 1})
    assert cache_key({"a": 1}) != cache_key({"a": 2})
    assert len(cache_key({})) == 16


def test_augmentation_is_seeded_varied_and_borderless():
    generator = torch.Generator().manual_seed(0)
    shot = 0.6 + 0.3 * torch.rand(3, 48, 48, generator=generator)  # bright: a black corner would show
    first = augment_shots([shot], 6, seed=1)
    again = augment_shots([shot], 6, seed=1)
    other = augment_shots([shot], 6, seed=2)
    assert all(torch.equal(a, b) for (a, _), (b, _) in zip(first, again, strict=True))
    assert not all(torch.equal(a, b) for (a, _), (b, _) in zip(first, other, strict=True))
    for image, source in first:
        assert source == 0 and image.shape == shot.shape
        assert float(image.min()) >= 0.0 and float(image.max()) <= 1.0
        assert float((image - shot).abs().mean()) > 1e-3  # a copy that differs
        assert float(image.amin(dim=0).min()) > 0.3  # no constant-filled (black) border
    plain = augment_shots([shot], 1, 0, PlainAugConfig(0, 0, False, 0, 0, (1, 1), 0, 0, 0, 0))
    assert torch.allclose(plain[0][0], shot, atol=1e-5)  # everything off = the shot itself


def test_plain_aug_set_on_disk(tmp_path):
    paths = []
    for i, value in enumerate((60, 200)):
        paths.append(tmp_path / f"{i:03d}.png")
        Image.fromarray(np.full((20, 30, 3), value, np.uint8)).save(paths[-1])
    out = make_plain_aug_set(
        tmp_path / "aug", paths, ["000.png", "001.png"], n=5, seed=0, dataset="d", category="c", image_size=16
    )
    manifest = load_manifest(out)
    assert manifest["kind"] == "plain_aug" and manifest["n"] == 5 and manifest["image_size"] == [16, 16]
    assert [r["source_shot"] for r in manifest["images"]] == ["000.png", "001.png"] * 2 + ["000.png"]
    again = make_plain_aug_set(
        tmp_path / "aug2",
        paths,
        ["000.png", "001.png"],
        n=5,
        seed=0,
        dataset="d",
        category="c",
        image_size=16,
    )
    for record in manifest["images"]:  # byte-identical images for the same request
        assert (out / record["file"]).read_bytes() == (again / record["file"]).read_bytes()


def test_tgad_aug_applies_plain_augs_transform_of_the_same_index(tmp_path):
    """A generated set whose images are exact copies of the shot, augmented as ``tgad_aug``, is plain_aug's set
    pixel for pixel: the two conditions differ only in what is augmented. Other generated images get the
    same transforms (image i flipped/rotated as plain_aug's image i)."""
    rng = np.random.default_rng(0)
    shot_path = tmp_path / "000.png"
    shot = rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)
    Image.fromarray(shot).save(shot_path)
    plain = make_plain_aug_set(
        tmp_path / "plain", [shot_path], ["000.png"], n=6, seed=4, dataset="d", category="c", image_size=24
    )
    copies = write_extra_set(
        tmp_path / "copies",
        [shot] * 6,
        [{"source_shot": "000.png"}] * 6,
        **(META | {"kind": "tgad", "shot_ids": ["000.png"], "shot_paths": [str(shot_path)]}),
    )
    augmented = make_tgad_aug_set(tmp_path / "tgad_aug", copies, seed=4, image_size=24, key="k")
    manifest = load_manifest(augmented)
    assert manifest["kind"] == "tgad_aug" and manifest["n"] == 6 and manifest["cache_key"] == "k"
    assert manifest["config"]["augment"] == load_manifest(plain)["config"]["augment"]
    assert manifest["config"]["source"]["path"] == str(copies)
    for a, b in zip(load_manifest(plain)["images"], manifest["images"], strict=True):
        assert (plain / a["file"]).read_bytes() == (augmented / b["file"]).read_bytes()
        assert b["source_image"] == b["file"]  # image i comes from generated image i

    # other images: image i gets exactly the transform plain augmentation draws for index i
    marked = shot.copy()
    marked[:4, :4] = [255, 0, 0]
    source = write_extra_set(
        tmp_path / "marked",
        [marked] * 6,
        [{"source_shot": "000.png"}] * 6,
        **(META | {"kind": "tgad", "shot_ids": ["000.png"], "shot_paths": [str(shot_path)]}),
    )
    out = make_tgad_aug_set(tmp_path / "marked_aug", source, seed=4, image_size=24)
    marked_tensor = torch.from_numpy(marked).permute(2, 0, 1).float() / 255
    for i, record in enumerate(load_manifest(out)["images"]):
        expected = augment_image(
            marked_tensor, PlainAugConfig(), torch.Generator().manual_seed(4 * 1_000_003 + i)
        )
        expected = (expected.permute(1, 2, 0).numpy() * 255).round().astype(int)
        got = np.asarray(Image.open(out / record["file"])).astype(int)
        assert np.abs(got - expected).max() <= 1, i  # the resize at image_size=24 is the identity
