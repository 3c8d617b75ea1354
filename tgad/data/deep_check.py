"""The thorough check behind ``tgad data check`` and the benchmark's preflight: every image and mask decoded
in full, not only its header.

``validate_samples`` (run on every index) reads headers and PIL's ``verify``, which does not decode JPEG
data, so a truncated JPEG passes it; a full decode catches it. A defective test image whose mask is all zero
would silently count as having a mask and score as a defect without defective pixels, so it is an error here.

A full decode of a real category takes seconds, so each passed image is remembered in the tgad cache by its
path, size and modification time (and its masks'): a re-run decodes only what changed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

import pandas as pd

from tgad.assets.cache import atomic_file, cache_dir
from tgad.data.errors import DataError
from tgad.data.images import read_mask, read_rgb

logger = logging.getLogger(__name__)


def _stamp(paths: list[str]) -> list[list[int]]:
    """(size, mtime in ns) of each file: a replaced or rewritten file gets another stamp."""
    return [[(st := os.stat(p)).st_size, st.st_mtime_ns] for p in paths]


def verdict_file(samples: pd.DataFrame) -> Path:
    """The cache file of one category's decoded images (keyed by the category folder's absolute path)."""
    where = str(Path(samples.attrs.get("category_dir", "")).resolve())
    return (
        cache_dir()
        / "decoded"
        / f"{hashlib.sha256(where.encode('utf-8', 'surrogateescape')).hexdigest()[:16]}.json"
    )


def _load(path: Path) -> dict[str, list]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):  # absent, or damaged by hand: decode everything again
        return {}
    return data if isinstance(data, dict) else {}


def decode_one(image_path: str, mask_paths: tuple[str, ...], label_index: int) -> None:
    """Decode one image and its masks in full; ``DataError`` naming the file on the first problem."""
    read_rgb(image_path)  # DataError naming the file when it does not decode in full
    if not mask_paths:
        return
    mask = read_mask(mask_paths)
    if label_index == 1 and not bool(mask.any()):
        raise DataError(
            f"{mask_paths[0]}: the mask of defective image {image_path} is empty (all zero); "
            "draw the defect into it, or move the image to test/good if it has none"
        )


def decode_all(samples: pd.DataFrame, use_cache: bool = True) -> int:
    """Decode every image and mask of a samples table not already passed with the same stamps; raise
    ``DataError`` on the first bad file. Returns how many images were decoded (0: all known good)."""
    cache = verdict_file(samples) if use_cache else None
    known = _load(cache) if cache is not None else {}
    passed: dict[str, list] = {}
    decoded = 0
    try:
        for row in samples.itertuples():
            paths = [row.image_path, *row.mask_paths]
            stamp = _stamp(paths)
            if known.get(row.image_path) != stamp:
                decode_one(row.image_path, tuple(row.mask_paths), row.label_index)
                decoded += 1
            passed[row.image_path] = stamp
    finally:  # what passed is remembered even when a later file fails
        if cache is not None and decoded and passed:
            try:
                cache.parent.mkdir(parents=True, exist_ok=True)
                with atomic_file(cache) as handle:
                    json.dump(known | passed, handle)
            except OSError as err:  # a read-only cache only costs the next run its decode
                logger.warning("cannot remember decoded images in %s: %s", cache, err)
    return decoded
