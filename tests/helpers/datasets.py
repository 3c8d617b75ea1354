"""Writers of small dataset folders in the MVTec AD, BTAD and MVTec LOCO layouts, for tests.

Normal images are smooth gradients with mild noise; a defective image has a bright square exactly where its
mask is set, so an honest detector separates them and a mask-handling bug shows.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def _normal(rng: np.random.Generator, size: int) -> np.ndarray:
    y, x = np.mgrid[0:size, 0:size] / size
    base = 0.35 + 0.2 * x + 0.1 * y
    image = np.stack([base, base * 0.9, base * 0.8], axis=2) + rng.normal(0, 0.02, (size, size, 3))
    return np.clip(image * 255, 0, 255).astype(np.uint8)


def _defect(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    image = _normal(rng, size)
    mask = np.zeros((size, size), dtype=np.uint8)
    s = max(2, size // 5)
    top, left = rng.integers(0, size - s, size=2)
    mask[top : top + s, left : left + s] = 255
    image[mask > 0] = [250, 30, 30]
    return image, mask


def write_mvtec(
    root: Path,
    category: str = "widget",
    size: int = 32,
    n_train: int = 6,
    n_good: int = 2,
    defects: tuple[str, ...] = ("scratch", "hole"),
    n_defect: int = 2,
    seed: int = 0,
) -> Path:
    rng = np.random.default_rng(seed)
    cat = Path(root) / category
    (cat / "train" / "good").mkdir(parents=True)
    for i in range(n_train):
        Image.fromarray(_normal(rng, size)).save(cat / "train" / "good" / f"{i:03d}.png")
    (cat / "test" / "good").mkdir(parents=True)
    for i in range(n_good):
        Image.fromarray(_normal(rng, size)).save(cat / "test" / "good" / f"{i:03d}.png")
    for defect in defects:
        (cat / "test" / defect).mkdir(parents=True)
        (cat / "ground_truth" / defect).mkdir(parents=True)
        for i in range(n_defect):
            image, mask = _defect(rng, size)
            Image.fromarray(image).save(cat / "test" / defect / f"{i:03d}.png")
            Image.fromarray(mask).save(cat / "ground_truth" / defect / f"{i:03d}_mask.png")
    return cat


def write_btad(root: Path, category: str = "01", size: int = 32, n_train: int = 5, seed: int = 1) -> Path:
    """BTAD as released: BMP images, masks named like their image under ground_truth/ko."""
    rng = np.random.default_rng(seed)
    cat = Path(root) / category
    for sub in ("train/ok", "test/ok", "test/ko", "ground_truth/ko"):
        (cat / sub).mkdir(parents=True)
    for i in range(n_train):
        Image.fromarray(_normal(rng, size)).save(cat / "train" / "ok" / f"{i:04d}.bmp")
    for i in range(2):
        Image.fromarray(_normal(rng, size)).save(cat / "test" / "ok" / f"{i:04d}.bmp")
        image, mask = _defect(rng, size)
        Image.fromarray(image).save(cat / "test" / "ko" / f"{i:04d}.bmp")
        Image.fromarray(mask).save(cat / "ground_truth" / "ko" / f"{i:04d}.png")
    return cat


def write_loco(
    root: Path, category: str = "juice_bottle", size: int = 32, n_train: int = 5, seed: int = 2
) -> Path:
    """MVTec LOCO: validation/good, and one folder of (possibly several) masks per defective image."""
    rng = np.random.default_rng(seed)
    cat = Path(root) / category
    for sub in (
        "train/good",
        "validation/good",
        "test/good",
        "test/logical_anomalies",
        "test/structural_anomalies",
    ):
        (cat / sub).mkdir(parents=True)
    for i in range(n_train):
        Image.fromarray(_normal(rng, size)).save(cat / "train" / "good" / f"{i:03d}.png")
    for i in range(2):
        Image.fromarray(_normal(rng, size)).save(cat / "validation" / "good" / f"{i:03d}.png")
        Image.fromarray(_normal(rng, size)).save(cat / "test" / "good" / f"{i:03d}.png")
    for kind in ("logical_anomalies", "structural_anomalies"):
        for i in range(2):
            image, mask = _defect(rng, size)
            Image.fromarray(image).save(cat / "test" / kind / f"{i:03d}.png")
            mask_dir = cat / "ground_truth" / kind / f"{i:03d}"
            mask_dir.mkdir(parents=True)
            cols = np.flatnonzero(mask.any(axis=0))
            half = mask.copy()
            half[:, : cols[len(cols) // 2]] = 0  # split the defect down its middle column
            Image.fromarray(mask - half).save(mask_dir / "000.png")  # two masks whose union is the defect
            Image.fromarray(half).save(mask_dir / "001.png")
    (cat / "defects_config.json").write_text("[]")
    return cat
