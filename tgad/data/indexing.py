"""Index a dataset category folder into a samples table (one row per image), validating its layout.

The table has anomalib's columns (``image_path``, ``mask_path``, ``split``, ``label_index``) plus ``label``,
``defect_type`` and ``mask_paths`` (a tuple: MVTec LOCO has several masks per image). Every problem is a
``DataError`` naming the path and the fix; stray non-image files are skipped with a warning.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import pandas as pd
from PIL import Image

from tgad.data.errors import DataError
from tgad.data.images import IMAGE_EXTENSIONS, is_image_file

logger = logging.getLogger(__name__)

COLUMNS = ["image_path", "mask_path", "mask_paths", "split", "label", "label_index", "defect_type"]


def _images_in(folder: Path) -> list[Path]:
    """Sorted image files of a folder; anything else (notes, thumbs.db, sub-folders) is skipped with a warning."""
    images = []
    for path in sorted(folder.iterdir()):
        if is_image_file(path):
            images.append(path)
        elif path.name.startswith("."):
            continue
        else:
            logger.warning("ignoring %s: not an image file (%s)", path, "/".join(IMAGE_EXTENSIONS))
    return images


def _require_dir(path: Path, what: str, fix: str) -> Path:
    if not path.is_dir():
        raise DataError(f"{path}: {what} not found; {fix}")
    return path


def _row(image: Path, split: str, defect: str, masks: tuple[Path, ...] = ()) -> dict:
    normal = defect == "good"
    return {
        "image_path": str(image),
        "mask_path": str(masks[0]) if masks else "",
        "mask_paths": tuple(str(m) for m in masks),
        "split": split,
        "label": "normal" if normal else "abnormal",
        "label_index": 0 if normal else 1,
        "defect_type": defect,
    }


def _table(rows: list[dict], category_dir: Path) -> pd.DataFrame:
    samples = pd.DataFrame(rows, columns=COLUMNS)
    if not (samples.split == "train").any():
        raise DataError(
            f"{category_dir}: no training images found; put normal images under train/good (MVTec layout)"
        )
    samples.attrs["category_dir"] = str(category_dir)
    samples.attrs["task"] = "segmentation" if (samples.mask_path != "").any() else "classification"
    return samples


def index_mvtec(category_dir: Path) -> pd.DataFrame:
    """MVTec AD layout: train/good, test/<defect or good>, ground_truth/<defect>/<stem>_mask.png."""
    category_dir = Path(category_dir)
    fix = "expected the MVTec AD layout <category>/{train/good,test/<type>,ground_truth/<type>}"
    train_good = _require_dir(category_dir / "train" / "good", "train/good folder", fix)
    test_dir = _require_dir(category_dir / "test", "test folder", fix)
    rows = [_row(p, "train", "good") for p in _images_in(train_good)]
    if not rows:
        raise DataError(f"{train_good}: no images in train/good; a category needs at least one normal image")
    for defect_dir in sorted(p for p in test_dir.iterdir() if p.is_dir()):
        defect = defect_dir.name
        for image in _images_in(defect_dir):
            masks: tuple[Path, ...] = ()
            if defect != "good":
                mask = _find_mask(category_dir / "ground_truth" / defect, image.stem, ("_mask", ""))
                masks = (mask,) if mask else ()
            rows.append(_row(image, "test", defect, masks))
    return _table(rows, category_dir)


def index_btad(category_dir: Path) -> pd.DataFrame:
    """BTAD layout (raw or as anomalib converts it): train/ok, test/{ok,ko}, ground_truth/ko/<stem>.{png,bmp}."""
    category_dir = Path(category_dir)
    fix = "expected the BTAD layout <category>/{train/ok,test/ok,test/ko,ground_truth/ko}"
    train_ok = _require_dir(category_dir / "train" / "ok", "train/ok folder", fix)
    test_dir = _require_dir(category_dir / "test", "test folder", fix)
    rows = [_row(p, "train", "good") for p in _images_in(train_ok)]
    if not rows:
        raise DataError(f"{train_ok}: no images in train/ok; a category needs at least one normal image")
    for sub, defect in (("ok", "good"), ("ko", "ko")):
        if not (test_dir / sub).is_dir():
            continue
        for image in _images_in(test_dir / sub):
            masks: tuple[Path, ...] = ()
            if defect != "good":
                mask = _find_mask(category_dir / "ground_truth" / "ko", image.stem, ("", "_mask"))
                masks = (mask,) if mask else ()
            rows.append(_row(image, "test", defect, masks))
    return _table(rows, category_dir)


def index_loco(category_dir: Path) -> pd.DataFrame:
    """MVTec LOCO layout: train/good, validation/good, test/<type>, ground_truth/<type>/<stem>/<k>.png."""
    category_dir = Path(category_dir)
    fix = "expected the MVTec LOCO layout <category>/{train/good,validation/good,test/<type>,ground_truth/<type>/<stem>/}"
    train_good = _require_dir(category_dir / "train" / "good", "train/good folder", fix)
    test_dir = _require_dir(category_dir / "test", "test folder", fix)
    rows = [_row(p, "train", "good") for p in _images_in(train_good)]
    if not rows:
        raise DataError(f"{train_good}: no images in train/good; a category needs at least one normal image")
    if (category_dir / "validation" / "good").is_dir():
        rows += [_row(p, "val", "good") for p in _images_in(category_dir / "validation" / "good")]
    for defect_dir in sorted(p for p in test_dir.iterdir() if p.is_dir()):
        for image in _images_in(defect_dir):
            masks: tuple[Path, ...] = ()
            mask_dir = category_dir / "ground_truth" / defect_dir.name / image.stem
            if defect_dir.name != "good" and mask_dir.is_dir():
                masks = tuple(_images_in(mask_dir))
            rows.append(_row(image, "test", defect_dir.name, masks))
    return _table(rows, category_dir)


def _find_mask(folder: Path, stem: str, suffixes: tuple[str, ...]) -> Path | None:
    for suffix in suffixes:
        for ext in IMAGE_EXTENSIONS:
            candidate = folder / f"{stem}{suffix}{ext}"
            if candidate.is_file():
                return candidate
    return None


INDEXERS: dict[str, Callable[[Path], pd.DataFrame]] = {
    "mvtec": index_mvtec,
    "embedded": index_mvtec,
    "btad": index_btad,
    "loco": index_loco,
}


def validate_samples(samples: pd.DataFrame, require_masks: bool = True) -> pd.DataFrame:
    """Open every image and mask header (integrity and size) and check each defect has a matching mask.

    Adds ``width``/``height`` columns. Raises ``DataError`` on the first problem; nothing is written.
    """
    widths, heights = [], []
    for row in samples.itertuples():
        size = _checked_size(Path(row.image_path))
        widths.append(size[0])
        heights.append(size[1])
        if row.label_index == 1 and require_masks and not row.mask_paths:
            raise DataError(
                f"{row.image_path}: defective test image has no mask; add its mask under ground_truth/{row.defect_type}/ "
                "(or check the mask file name)"
            )
        for mask in row.mask_paths:
            mask_size = _checked_size(Path(mask))
            if mask_size != size:
                raise DataError(
                    f"{mask}: mask is {mask_size[0]}x{mask_size[1]} but its image {row.image_path} is "
                    f"{size[0]}x{size[1]}; masks must have the image's size"
                )
    out = samples.copy()
    out["width"], out["height"] = widths, heights
    return out


def _checked_size(path: Path) -> tuple[int, int]:
    try:
        with Image.open(path) as image:
            size = image.size
            image.verify()  # integrity (e.g. PNG chunk CRCs) without a full decode
        return size
    except Exception as err:  # PIL raises many types for broken files
        raise DataError(f"{path}: corrupt or unreadable image ({err}); replace or delete the file") from err
