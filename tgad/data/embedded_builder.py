"""Builds the embedded dataset: MVTec-AD-shaped folders from scikit-image's bundled texture photographs.

It is the dataset that needs no download: real photographs (brick, grass, gravel), train and test crops taken
from disjoint regions of each photo, and synthetic defects (``tgad.data.defects``) with exact masks. A build
is a pure function of (category, spec): the same spec gives byte-identical PNGs in any process. Each defective
image has a severity (subtle, medium, obvious) in a fixed mix per defect type (``SEVERITY_CYCLE``), recorded
in ``embedded.json`` so that results can be broken down by it (``load_severities``).
"""

from __future__ import annotations

import json
import logging
import time
import zlib
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import NamedTuple

import numpy as np
import skimage.data
from PIL import Image

from tgad.assets.cache import atomic_dir
from tgad.data.defects import DEFECT_TYPES, SEVERITIES, make_defect, to_u8

logger = logging.getLogger(__name__)

__all__ = [
    "DEFECT_TYPES",
    "EMBEDDED_CATEGORIES",
    "SEVERITIES",
    "EmbeddedSpec",
    "Sample",
    "build_embedded",
    "iter_samples",
    "load_photo",
    "load_severities",
]

# Bump when anything that changes the pixels changes, so cached builds are rebuilt.
# 2: graded defects (subtle / medium / obvious) and masks exact at 8 bits.
VERSION = 2
EMBEDDED_CATEGORIES: tuple[str, ...] = ("brick", "grass", "gravel")
# scikit-image's moon, coins, camera etc. were considered and left out: none is a stationary texture.

PHOTO_SIZE = 512
# The severity mix of each defect type, cycled: half obvious, a quarter each medium and subtle. At 1 shot the
# normal variation of grass already hides many medium defects, so an even mix would push it towards chance,
# while brick, a regular texture, misses only subtle ones; this mix keeps every category off both ends.
SEVERITY_CYCLE = ("obvious", "subtle", "obvious", "medium")

# Rows of the 512 x 512 photo that train and test crops come from; the 16-row gap keeps them apart even
# after the bicubic resize looks at neighbouring pixels.
TRAIN_ROWS = (0, 248)
TEST_ROWS = (264, 512)

# A mild fixed tint per category (the photos are grayscale), so that categories differ in colour too.
_TINTS = {"brick": (1.0, 0.82, 0.72), "grass": (0.84, 1.0, 0.78), "gravel": (1.0, 0.96, 0.90)}

# Provenance as scikit-image documents it (docstrings of skimage.data.brick / grass / gravel).
_PROVENANCE = {
    "brick": "CC0Textures 'Bricks25' (https://cc0textures.com/view.php?tex=Bricks25), licensed CC0; "
    "perspective-transformed, rotated by 90 degrees, cropped and scaled by scikit-image.",
    "grass": "DeviantArt 'Grass-01' by linolafett (https://www.deviantart.com/linolafett/art/Grass-01-434853879), "
    "licensed CC0; cropped to 512 x 512 and converted to grayscale by scikit-image.",
    "gravel": "CC0Textures 'Gravel04' (https://cc0textures.com/view.php?tex=Gravel04), licensed CC0; "
    "rescaled, cropped to 512 x 512 and converted to grayscale by scikit-image.",
}


@dataclass(frozen=True)
class EmbeddedSpec:
    """What to build. Changing any field rebuilds the category folder."""

    image_size: int = 256  # side of the written PNGs
    n_train: int = 40
    n_test_good: int = 20
    n_test_per_defect: int = 8  # per type in DEFECT_TYPES
    crop_px: int = 176  # side of the square crop taken from the 512-px photo before resizing
    seed: int = 0

    def __post_init__(self) -> None:
        region = min(TRAIN_ROWS[1] - TRAIN_ROWS[0], TEST_ROWS[1] - TEST_ROWS[0])
        if not 32 <= self.crop_px <= region:
            raise ValueError(f"EmbeddedSpec.crop_px={self.crop_px} must lie in [32, {region}]")
        if self.image_size < 16:
            raise ValueError(f"EmbeddedSpec.image_size={self.image_size} must be at least 16")
        if self.n_train < 1 or self.n_test_good < 0 or self.n_test_per_defect < 0 or self.seed < 0:
            raise ValueError(
                f"EmbeddedSpec: counts and seed must be non-negative and n_train >= 1, got {self}"
            )

    @classmethod
    def tiny(cls, seed: int = 0) -> EmbeddedSpec:
        """A few small images for tests."""
        return cls(image_size=64, n_train=4, n_test_good=2, n_test_per_defect=2, seed=seed)

    @classmethod
    def default(cls, seed: int = 0) -> EmbeddedSpec:
        """The benchmark's size: enough test images for a stable AUROC, a few seconds to build."""
        return cls(seed=seed)


def _check_category(category: str) -> None:
    if category not in EMBEDDED_CATEGORIES:
        raise ValueError(
            f"unknown embedded category {category!r}; valid categories: {', '.join(EMBEDDED_CATEGORIES)}"
        )


@lru_cache(maxsize=len(EMBEDDED_CATEGORIES))
def load_photo(category: str) -> np.ndarray:
    """The category's scikit-image photograph as (512, 512) float32 in [0, 1], read-only (it is cached)."""
    _check_category(category)
    photo = getattr(skimage.data, category)()
    if photo.shape != (PHOTO_SIZE, PHOTO_SIZE):
        raise ValueError(f"skimage.data.{category}() has shape {photo.shape}, expected (512, 512)")
    photo = photo.astype(np.float32) / 255.0
    photo.setflags(write=False)
    return photo


def _rng(spec: EmbeddedSpec, category: str, stream: str) -> np.random.Generator:
    """An independent generator per (seed, category, stream): stable across processes (crc32, not hash())."""
    entropy = [spec.seed, zlib.crc32(category.encode()), zlib.crc32(stream.encode())]
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(entropy)))


def _crop(
    photo: np.ndarray, category: str, rows: tuple[int, int], spec: EmbeddedSpec, rng: np.random.Generator
) -> tuple[np.ndarray, dict]:
    """A random square crop inside ``rows``, flipped, photometrically jittered, resized and tinted.

    Returns:
        (image_size, image_size, 3) float32 in [0, 1], and where it came from.
    """
    y = int(rng.integers(rows[0], rows[1] - spec.crop_px + 1))
    x = int(rng.integers(0, PHOTO_SIZE - spec.crop_px + 1))
    hflip, vflip = bool(rng.random() < 0.5), bool(rng.random() < 0.5)
    gain, bias = rng.uniform(0.94, 1.06), rng.uniform(-0.03, 0.03)
    patch = photo[y : y + spec.crop_px, x : x + spec.crop_px]
    patch = patch[:, ::-1] if hflip else patch
    patch = patch[::-1] if vflip else patch
    resized = Image.fromarray(np.ascontiguousarray(patch, dtype=np.float32)).resize(
        (spec.image_size, spec.image_size), Image.Resampling.BICUBIC
    )
    gray = np.clip(np.asarray(resized, dtype=np.float32) * gain + bias, 0.0, 1.0)
    rgb = gray[..., None] * np.array(_TINTS[category], dtype=np.float32)  # (S, S, 3)
    box = {"y": y, "x": x, "size": spec.crop_px, "hflip": hflip, "vflip": vflip}
    return rgb.astype(np.float32), box


def _save(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # Level 1: these noisy textures barely compress further, and level 6 triples the build time.
    Image.fromarray(array).save(path, format="PNG", compress_level=1)


def _is_built(folder: Path, spec: EmbeddedSpec) -> bool:
    try:
        meta = json.loads((folder / "embedded.json").read_text())
    except (OSError, ValueError):
        return False
    return meta.get("version") == VERSION and meta.get("spec") == asdict(spec)


class Sample(NamedTuple):
    relpath: str  # e.g. "test/hole/003.png"
    image: np.ndarray  # (S, S, 3) uint8, what is written
    pristine: np.ndarray  # (S, S, 3) uint8, the crop before any defect (equal to image for good samples)
    mask: np.ndarray | None  # (S, S) uint8 0/255 for defects, None for good samples
    mask_relpath: str | None  # e.g. "ground_truth/hole/003_mask.png"
    source: dict  # the crop box in the photo (y, x, size, flips) and, for "foreign", the other category
    severity: str | None = None  # one of SEVERITIES for defects, None for good samples


def iter_samples(category: str, spec: EmbeddedSpec = EmbeddedSpec()) -> Iterator[Sample]:
    """Every image of the category, in build order; a pure function of (category, spec).

    Each split and defect type draws from its own generator, so changing ``n_train`` leaves the test set as it was.
    Severities follow ``SEVERITY_CYCLE`` within a type and are shuffled by the seed; the type's index rotates
    where in the cycle it starts, so every severity appears once each type has two images.
    """
    _check_category(category)
    photo = load_photo(category)
    others = [c for c in EMBEDDED_CATEGORIES if c != category]
    splits = [
        ("train/good", TRAIN_ROWS, spec.n_train, None),
        ("test/good", TEST_ROWS, spec.n_test_good, None),
    ]
    splits += [(f"test/{kind}", TEST_ROWS, spec.n_test_per_defect, kind) for kind in DEFECT_TYPES]
    for split, rows, count, kind in splits:
        rng = _rng(spec, category, split)
        severities = _severities(spec, category, split, count, DEFECT_TYPES.index(kind)) if kind else []
        for i in range(count):
            image, box = _crop(photo, category, rows, spec, rng)
            pristine = to_u8(image)
            if kind is None:
                yield Sample(f"{split}/{i:03d}.png", pristine, pristine, None, None, box)
                continue
            foreign = None
            if kind == "foreign":
                other = others[int(rng.integers(len(others)))]
                # Any part of the other photo: it is not this category's test data.
                foreign, _ = _crop(load_photo(other), other, (0, PHOTO_SIZE), spec, rng)
                box["foreign"] = other
            defect = make_defect(image, kind, rng, foreign=foreign, severity=severities[i])
            mask = defect.mask.astype(np.uint8) * 255
            mask_relpath = f"ground_truth/{kind}/{i:03d}_mask.png"
            image_u8 = to_u8(defect.image)  # differs from ``pristine`` exactly where ``mask`` is set
            yield Sample(f"{split}/{i:03d}.png", image_u8, pristine, mask, mask_relpath, box, severities[i])


def _severities(spec: EmbeddedSpec, category: str, split: str, count: int, offset: int) -> list[str]:
    """``count`` severities in ``SEVERITY_CYCLE``'s mix, in a seeded order; their own stream keeps crops put."""
    levels = [SEVERITY_CYCLE[(offset + i) % len(SEVERITY_CYCLE)] for i in range(count)]
    order = _rng(spec, category, f"{split}/severity").permutation(count)
    return [levels[j] for j in order]


def load_severities(folder: str | Path) -> dict[str, str]:
    """Severity of every defective test image of a built category folder, keyed by its relative path."""
    path = Path(folder) / "embedded.json"
    try:
        meta = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise ValueError(f"{path}: cannot read the embedded build's metadata ({err}); rebuild it") from err
    if "severities" not in meta:
        raise ValueError(f"{path}: builder version {meta.get('version')} records no severities; rebuild it")
    return dict(meta["severities"])


def build_embedded(root: str | Path, category: str, spec: EmbeddedSpec = EmbeddedSpec()) -> Path:
    """Write ``<root>/<category>`` in the MVTec AD layout, unless it already holds this exact spec.

    Layout: ``train/good/000.png``, ``test/good/000.png``, ``test/<defect>/000.png`` and
    ``ground_truth/<defect>/000_mask.png`` (0/255), plus ``embedded.json`` (spec, version, counts, crop boxes,
    each defect's severity) and ``README.txt`` (provenance). The folder is built aside and renamed into place,
    so an interrupted build never leaves a complete-looking folder.

    Returns:
        The category folder.
    """
    _check_category(category)
    final = Path(root) / category
    if _is_built(final, spec):
        logger.debug("embedded %s already built at %s", category, final)
        return final
    start = time.perf_counter()
    crops: dict[str, dict] = {}
    counts: dict[str, int] = {}
    severities: dict[str, str] = {}
    with atomic_dir(final) as tmp:
        for sample in iter_samples(category, spec):
            _save(tmp / sample.relpath, sample.image)
            if sample.mask is not None:
                _save(tmp / sample.mask_relpath, sample.mask)
            crops[sample.relpath] = sample.source
            if sample.severity is not None:
                severities[sample.relpath] = sample.severity
            split = sample.relpath.rsplit("/", 1)[0]
            counts[split] = counts.get(split, 0) + 1
        (tmp / "README.txt").write_text(_readme(category, spec))
        meta = {
            "version": VERSION,
            "category": category,
            "spec": asdict(spec),
            "counts": counts,
            "source": f"skimage.data.{category}()",
            "regions": {"train_rows": list(TRAIN_ROWS), "test_rows": list(TEST_ROWS)},
            "crops": crops,
            "severities": severities,
        }
        # Written last: its presence with this spec is what marks the folder complete.
        (tmp / "embedded.json").write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n")
    elapsed = time.perf_counter() - start
    logger.info("built embedded %s (%d images) in %.1f s at %s", category, len(crops), elapsed, final)
    return final


def _readme(category: str, spec: EmbeddedSpec) -> str:
    return (
        f"tgad embedded dataset, category '{category}' (builder version {VERSION}).\n\n"
        f"Source photograph: scikit-image's bundled sample image skimage.data.{category}().\n"
        f"Provenance as documented by scikit-image: {_PROVENANCE[category]}\n\n"
        f"Train images are {spec.crop_px}-px crops from rows {TRAIN_ROWS[0]}-{TRAIN_ROWS[1]} of the 512-px "
        f"photo, test images from rows {TEST_ROWS[0]}-{TEST_ROWS[1]}; resized to {spec.image_size} px, with a "
        "fixed colour tint.\n"
        f"All defects ({', '.join(DEFECT_TYPES)}) are synthetic, drawn by tgad.data.defects; 'foreign' pastes "
        "a piece of another category's photo. Each is drawn at one severity (subtle, medium, obvious: size and "
        "contrast): per type half obvious, a quarter medium, a quarter subtle. Masks (0/255) mark exactly the pixels a defect changed.\n"
        "Built by tgad.data.embedded_builder; see embedded.json for the spec, every crop's source box and every "
        "defect's severity.\n"
    )
