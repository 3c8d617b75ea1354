"""Index a dataset category folder into a samples table (one row per image), validating its layout.

The table has anomalib's columns (``image_path``, ``mask_path``, ``split``, ``label_index``) plus ``label``,
``defect_type`` and ``mask_paths`` (a tuple: MVTec LOCO has several masks per image). Every problem is a
``DataError`` naming the path and the fix; stray non-image files are skipped with a warning.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from PIL import Image

from tgad.data.errors import DataError
from tgad.data.images import IMAGE_EXTENSIONS, TRANSPOSED, is_image_file, orientation

logger = logging.getLogger(__name__)

COLUMNS = ["image_path", "mask_path", "mask_paths", "split", "label", "label_index", "defect_type"]


def _images_in(folder: Path) -> list[Path]:
    """Sorted image files of a folder; anything else (notes, thumbs.db, sub-folders) is skipped with a warning."""
    images = []
    for path in sorted(folder.iterdir()):
        if is_image_file(path):
            _require_utf8(path)
            images.append(path)
        elif path.name.startswith("."):
            continue
        else:
            logger.warning("ignoring %s: not an image file (%s)", _shown(path), "/".join(IMAGE_EXTENSIONS))
    return images


def _shown(path: Path) -> str:
    """``path`` printable whatever its bytes: a byte that is not UTF-8 as ``\\xNN``."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def _require_utf8(path: Path) -> None:
    """A file name must be UTF-8: the results CSV, manifests and W&B record it as text. Linux hands Python
    other bytes as surrogates, which failed only at the first write, with no file named."""
    try:
        path.name.encode("utf-8")
    except UnicodeEncodeError as err:
        byte = ord(err.object[err.start]) & 0xFF  # a surrogate U+DCxx stands for the byte 0xxx
        raise DataError(
            f"{_shown(path)}: the file name is not UTF-8 (byte 0x{byte:02x}); rename it with UTF-8 characters only"
        ) from err


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


@dataclass(frozen=True)
class Layout:
    """Where one dataset keeps its images and masks; ``index_layout`` walks any of them the same way."""

    fix: str  # the expected layout, said in every error
    train: str  # folder of the normal training images
    masks: Callable[[Path, str, Path], tuple[Path, ...]]  # (category dir, test folder, image) -> its masks
    test_labels: dict[str, str] | None = None  # test folder -> defect label; None: every folder, own name
    validation: str | None = None  # folder of normal validation images, where the dataset has one


def _mvtec_masks(category_dir: Path, folder: str, image: Path) -> tuple[Path, ...]:
    mask = _find_mask(category_dir / "ground_truth" / folder, image.stem, ("_mask", ""))
    return (mask,) if mask else ()


def _btad_masks(category_dir: Path, folder: str, image: Path) -> tuple[Path, ...]:
    mask = _find_mask(category_dir / "ground_truth" / "ko", image.stem, ("", "_mask"))
    return (mask,) if mask else ()


def _loco_masks(category_dir: Path, folder: str, image: Path) -> tuple[Path, ...]:
    mask_dir = category_dir / "ground_truth" / folder / image.stem  # one mask per defect region
    return tuple(_images_in(mask_dir)) if mask_dir.is_dir() else ()


MVTEC = Layout(
    "expected the MVTec AD layout <category>/{train/good,test/<type>,ground_truth/<type>}",
    "train/good",
    _mvtec_masks,
)
BTAD = Layout(  # raw, or as anomalib converts it
    "expected the BTAD layout <category>/{train/ok,test/ok,test/ko,ground_truth/ko}",
    "train/ok",
    _btad_masks,
    test_labels={"ok": "good", "ko": "ko"},
)
LOCO = Layout(
    "expected the MVTec LOCO layout <category>/{train/good,validation/good,test/<type>,ground_truth/<type>/<stem>/}",
    "train/good",
    _loco_masks,
    validation="validation/good",
)


def index_layout(category_dir: Path, layout: Layout) -> pd.DataFrame:
    """One row per image: the training normals, the validation normals, every test image with its masks."""
    category_dir = Path(category_dir)
    train = _require_dir(category_dir / layout.train, f"{layout.train} folder", layout.fix)
    test_dir = _require_dir(category_dir / "test", "test folder", layout.fix)
    rows = [_row(p, "train", "good") for p in _images_in(train)]
    if not rows:
        raise DataError(f"{train}: no images in {layout.train}; a category needs at least one normal image")
    if layout.validation and (category_dir / layout.validation).is_dir():
        rows += [_row(p, "val", "good") for p in _images_in(category_dir / layout.validation)]
    labels = layout.test_labels or {p.name: p.name for p in sorted(test_dir.iterdir()) if p.is_dir()}
    for folder, defect in labels.items():
        if not (test_dir / folder).is_dir():
            continue
        for image in _images_in(test_dir / folder):
            masks = layout.masks(category_dir, folder, image) if defect != "good" else ()
            rows.append(_row(image, "test", defect, masks))
    return _table(rows, category_dir)


def index_mvtec(category_dir: Path) -> pd.DataFrame:
    """MVTec AD layout: train/good, test/<defect or good>, ground_truth/<defect>/<stem>_mask.png."""
    return index_layout(category_dir, MVTEC)


def index_btad(category_dir: Path) -> pd.DataFrame:
    """BTAD layout (raw or as anomalib converts it): train/ok, test/{ok,ko}, ground_truth/ko/<stem>.{png,bmp}."""
    return index_layout(category_dir, BTAD)


def index_loco(category_dir: Path) -> pd.DataFrame:
    """MVTec LOCO layout: train/good, validation/good, test/<type>, ground_truth/<type>/<stem>/<k>.png."""
    return index_layout(category_dir, LOCO)


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
        with Image.open(path) as image:  # verify() leaves the image unusable: its EXIF from a fresh header
            # (a PNG's EXIF after its pixels would cost a full decode to find: only one before them is read)
            header_exif = image.format != "PNG" or "exif" in image.info
            if header_exif and orientation(image) in TRANSPOSED:  # the size ``read_rgb`` returns, upright
                size = size[::-1]
        return size
    except Exception as err:  # PIL raises many types for broken files
        raise DataError(f"{path}: corrupt or unreadable image ({err}); replace or delete the file") from err
