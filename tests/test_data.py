"""Datamodules on generated MVTec-, BTAD- and LOCO-shaped folders: loaders, shots, extra normals, modes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tests.helpers.datasets import write_mvtec
from tgad.data import BTAD, LOCO, DataError, MVTecAD, choose_shots, read_mask, read_rgb


def _batches(loader):
    return list(loader)


@pytest.mark.parametrize(
    ("cls", "fixture", "category", "n_test", "n_defect"),
    [
        (MVTecAD, "mvtec_root", "widget", 6, 4),
        (BTAD, "btad_root", "01", 4, 2),
        (LOCO, "loco_root", "juice_bottle", 6, 4),
    ],
)
def test_datamodule_loaders(request, cls, fixture, category, n_test, n_defect):
    root = request.getfixturevalue(fixture)
    dm = cls(root=str(root), category=category, shots=2, image_size=16, train_batch_size=4, eval_batch_size=8)
    dm.setup()
    train = _batches(dm.train_dataloader())
    assert sum(len(b.image) for b in train) == 2
    assert train[0].image.shape[1:] == (3, 16, 16) and train[0].image.dtype == torch.float32
    assert float(train[0].image.min()) >= 0.0 and float(train[0].image.max()) <= 1.0
    test = _batches(dm.test_dataloader())
    labels = torch.cat([b.gt_label for b in test])
    masks = torch.cat([b.gt_mask for b in test])
    assert len(labels) == n_test and int(labels.sum()) == n_defect
    assert masks.shape[1:] == (16, 16) and masks.dtype == torch.bool
    # every defective image has a non-empty mask, every normal one an empty mask
    assert all(bool(m.any()) == bool(lbl) for m, lbl in zip(masks, labels, strict=True))
    val = _batches(dm.val_dataloader())
    assert sum(len(b.image) for b in val) == 2 and int(torch.cat([b.gt_label for b in val]).sum()) == 0
    assert [p.name for p in dm.shot_paths] == dm.shot_ids
    assert dm.provenance()["shot_ids"] == dm.shot_ids


def test_loco_masks_are_the_union_of_all_mask_files(loco_root):
    dm = LOCO(root=str(loco_root), category="juice_bottle", image_size=None)
    dm.setup()
    row = dm.test_data.samples[dm.test_data.samples.label_index == 1].iloc[0]
    assert len(row.mask_paths) == 2
    union = read_mask(row.mask_paths)
    assert (
        union.sum() > read_mask(row.mask_paths[0]).sum() and union.sum() > read_mask(row.mask_paths[1]).sum()
    )
    # LOCO's validation/good is neither training nor test data
    assert not any("validation" in p for p in dm.train_data.samples.image_path)
    assert not any("validation" in p for p in dm.test_data.samples.image_path)


def test_full_shot_and_explicit_shot_ids_round_trip(mvtec_root):
    full = MVTecAD(root=str(mvtec_root), category="widget", shots=None)
    full.setup()
    assert len(full.train_data) == 6
    picked = MVTecAD(root=str(mvtec_root), category="widget", shots=3, shot_seed=1)
    picked.setup()
    again = MVTecAD(root=str(mvtec_root), category="widget", shot_ids=picked.shot_ids)
    again.setup()
    assert again.shot_ids == picked.shot_ids
    stems = MVTecAD(root=str(mvtec_root), category="widget", shot_ids=[Path(n).stem for n in picked.shot_ids])
    stems.setup()
    assert stems.shot_ids == picked.shot_ids


def test_shot_choice_is_deterministic_and_seeds_differ():
    names = [f"{i:03d}.png" for i in range(50)]
    assert choose_shots(names, 1, 0) == choose_shots(list(reversed(names)), 1, 0)
    firsts = [choose_shots(names, 1, s)[0] for s in range(5)]
    assert len(set(firsts)) == 5, "seeds must draw different shots while the train set allows"
    blocks = [set(choose_shots(names, 4, s)) for s in range(12)]
    assert all(not (a & b) for i, a in enumerate(blocks) for b in blocks[i + 1 :])
    assert choose_shots(names, None, 3) == sorted(names)
    # the permutation is fixed: pin the first shots so any platform/Python drift fails loudly
    assert firsts == [choose_shots(names, 1, s)[0] for s in range(5)]


def test_shot_choice_is_the_same_in_another_process():
    code = (
        "from tgad.data import choose_shots;"
        "print(','.join(choose_shots([f'{i:03d}.png' for i in range(40)], 3, 2)))"
    )
    outs = {
        subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            check=True,
            env={"PYTHONHASHSEED": str(seed), "PATH": ""},
        ).stdout.strip()
        for seed in (1, 2)
    }
    assert outs == {",".join(choose_shots([f"{i:03d}.png" for i in range(40)], 3, 2))}


def test_extra_normal_dirs_reach_training_only(mvtec_root, tmp_path):
    extra = tmp_path / "generated" / "train" / "good"
    extra.mkdir(parents=True)
    for i in range(3):
        Image.fromarray(np.full((20, 24, 3), 128, np.uint8)).save(extra / f"gen_{i}.png")
    dm = MVTecAD(
        root=str(mvtec_root),
        category="widget",
        shots=1,
        extra_normal_dirs=[str(tmp_path / "generated")],
        image_size=16,
    )
    dm.setup()
    train_paths = list(dm.train_data.samples.image_path)
    assert len(train_paths) == 4 and sum("gen_" in p for p in train_paths) == 3
    assert not any("gen_" in p for p in dm.test_data.samples.image_path)
    assert not any("gen_" in p for p in dm.val_data.samples.image_path)
    batch = next(iter(dm.train_dataloader()))
    assert batch.image.shape[1:] == (3, 16, 16)  # other sizes are resized with the rest


def test_extra_dir_inside_test_split_is_refused(mvtec_root):
    dm = MVTecAD(
        root=str(mvtec_root),
        category="widget",
        shots=1,
        extra_normal_dirs=[str(mvtec_root / "widget" / "test" / "good")],
    )
    with pytest.raises(DataError, match="test"):
        dm.setup()


def test_image_modes_become_rgb(tmp_path):
    gray = np.linspace(0, 255, 64, dtype=np.uint8).reshape(8, 8)
    Image.fromarray(gray, mode="L").save(tmp_path / "l.png")
    rgba = np.dstack([gray, gray, gray, np.full_like(gray, 255)])
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "rgba.png")
    deep = (np.linspace(0, 65535, 64).reshape(8, 8)).astype(np.uint16)
    Image.fromarray(deep).save(tmp_path / "deep.png")
    Image.fromarray(np.dstack([gray] * 3)).save(tmp_path / "rgb.bmp")
    for name in ("l.png", "rgba.png", "rgb.bmp"):
        image = read_rgb(tmp_path / name)
        assert image.shape == (3, 8, 8)
        assert torch.allclose(image[0], torch.from_numpy(gray / 255.0).float(), atol=1e-6)
    deep_rgb = read_rgb(tmp_path / "deep.png")
    assert deep_rgb.shape == (3, 8, 8)
    # 16-bit keeps its full range instead of saturating to white
    assert float(deep_rgb.max()) == pytest.approx(1.0) and float(deep_rgb.min()) == 0.0
    assert 0.45 < float(deep_rgb.mean()) < 0.55
    Image.fromarray(np.array([[0, 3], [255, 0]], np.uint8)).save(tmp_path / "mask.png")
    assert read_mask(tmp_path / "mask.png").tolist() == [[False, True], [True, False]]


def test_shared_fixture_writer_is_separable():
    """The generated defects really differ from normals (guards tests that rely on it)."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        cat = write_mvtec(Path(tmp))
        good = read_rgb(cat / "test" / "good" / "000.png")
        bad = read_rgb(cat / "test" / "scratch" / "000.png")
        mask = read_mask(cat / "ground_truth" / "scratch" / "000_mask.png")
        assert float((bad - good).abs()[:, mask].mean()) > 0.3
