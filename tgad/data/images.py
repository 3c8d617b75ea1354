"""Decoding any image file a dataset ships (L, RGB, RGBA, 16-bit PNG, BMP) into RGB tensors and boolean masks."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from tgad.data.errors import DataError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
# Image sides a run may resize to: below 16 px the backbones' feature maps vanish; above 2048 px (twice the
# largest side of any supported dataset) a detector batch alone needs tens of GB (--image-size 100000 tried
# to allocate 120 GB).
MIN_IMAGE_SIZE, MAX_IMAGE_SIZE = 16, 2048


def is_image_file(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".")


EXIF_ORIENTATION = 0x0112  # 1: stored upright; 2-8: mirrored and/or rotated, as cameras and phones save
TRANSPOSED = (5, 6, 7, 8)  # the orientations that swap width and height


def orientation(image: Image.Image) -> int:
    """The EXIF orientation tag of an opened image (1 when it has none)."""
    try:
        return int(image.getexif().get(EXIF_ORIENTATION, 1) or 1)
    except (ValueError, TypeError, OSError, SyntaxError):  # a damaged EXIF block: read the pixels as stored
        return 1


def _open(path: str | Path) -> Image.Image:
    """The decoded image, turned upright by its EXIF orientation (as every viewer shows it)."""
    try:
        image = Image.open(path)
        image.load()
        if orientation(image) != 1:
            image = ImageOps.exif_transpose(image)
    except (UnidentifiedImageError, OSError, SyntaxError) as err:
        raise DataError(
            f"{path}: cannot decode image ({err.__class__.__name__}: {str(err)[:80]}); replace or delete the file"
        ) from err
    return image


def _to_float_array(image: Image.Image) -> np.ndarray:
    """Scale to [0, 1] by the mode's real range, so 16-bit images are not clipped to white."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        array = np.asarray(image, dtype=np.float64)
        peak = 65535.0 if image.mode.startswith("I;16") or array.max() > 255 else 255.0
        return (array / peak).astype(np.float32)
    if image.mode == "F":
        array = np.asarray(image, dtype=np.float32)
        return np.clip(array, 0.0, 1.0) if array.max() <= 1.0 else array / max(float(array.max()), 1e-12)
    if image.mode in ("RGBA", "LA", "P", "PA", "CMYK", "YCbCr", "1"):
        # Alpha is dropped by compositing onto black: industrial datasets use it rarely and never meaningfully.
        image = (
            image.convert("RGBA").convert("RGB")
            if "A" in image.mode or image.mode == "P"
            else image.convert("RGB")
        )
    return np.asarray(image, dtype=np.float32) / 255.0


def read_rgb(path: str | Path) -> torch.Tensor:
    """Read an image as a float RGB tensor (3, H, W) in [0, 1], whatever its mode or bit depth."""
    array = _to_float_array(_open(path))
    if array.ndim == 2:  # (H, W) -> (H, W, 3)
        array = np.repeat(array[..., None], 3, axis=2)
    elif array.shape[2] == 4:
        array = array[..., :3]
    return torch.from_numpy(np.ascontiguousarray(array)).permute(2, 0, 1).contiguous()  # (3, H, W)


def read_resized(paths: Sequence[str | Path], size: int) -> torch.Tensor:
    """(N, 3, size, size) in [0, 1]: the images of ``paths`` resized as the datamodules resize them (bilinear,
    antialiased), so shots, extra sets and held-out normals are compared at one resolution."""
    images = [read_rgb(p)[None] for p in paths]
    resized = [
        torch.nn.functional.interpolate(
            x, size=(size, size), mode="bilinear", antialias=True, align_corners=False
        )
        for x in images
    ]
    return torch.cat(resized).clamp(0, 1)


def read_mask(paths: str | Path | Sequence[str | Path]) -> torch.Tensor:
    """Read one or several mask files as one boolean (H, W) mask: any nonzero pixel of any file is defective."""
    paths = [paths] if isinstance(paths, (str, Path)) else list(paths)
    union: np.ndarray | None = None
    for path in paths:
        array = np.asarray(_open(path))
        mask = array.reshape(array.shape[0], array.shape[1], -1).max(axis=2) > 0  # (H, W[, C]) -> (H, W)
        if union is not None and union.shape != mask.shape:
            raise DataError(
                f"{path}: mask size {mask.shape[::-1]} differs from {paths[0]}; masks of one image must agree"
            )
        union = mask if union is None else union | mask
    if union is None:
        raise DataError("read_mask got no mask paths")
    return torch.from_numpy(union)


def image_size(path: str | Path) -> tuple[int, int]:
    """(width, height) upright, after a full decode so a truncated file is caught here."""
    image = _open(path)
    return image.size
