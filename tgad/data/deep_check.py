"""The thorough check behind ``tgad data check``: every image and mask decoded in full, not only its header.

``validate_samples`` (run on every index) reads headers and PIL's ``verify``, which does not decode JPEG
data, so a truncated JPEG passes it; a full decode catches it. A defective test image whose mask is all zero
would silently count as having a mask and score as a defect without defective pixels, so it is an error here.
"""

from __future__ import annotations

import pandas as pd

from tgad.data.errors import DataError
from tgad.data.images import read_mask, read_rgb


def decode_all(samples: pd.DataFrame) -> None:
    """Decode every image and mask of a samples table; raise ``DataError`` on the first bad file."""
    for row in samples.itertuples():
        read_rgb(row.image_path)  # DataError naming the file when it does not decode in full
        if not row.mask_paths:
            continue
        mask = read_mask(row.mask_paths)
        if row.label_index == 1 and not bool(mask.any()):
            raise DataError(
                f"{row.mask_paths[0]}: the mask of defective image {row.image_path} is empty (all zero); "
                "draw the defect into it, or move the image to test/good if it has none"
            )
