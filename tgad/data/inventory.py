"""What ``tgad data check`` reports about a category: counts per split and defect type, sizes, masks matched."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import pandas as pd


@dataclass(frozen=True)
class Inventory:
    dataset: str
    category: str
    path: str
    counts: dict[tuple[str, str], int]  # (split, defect_type) -> images
    sizes: dict[str, int]  # "WxH" -> images
    defective: int
    masks_matched: int
    mask_files: int
    warnings: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def inventory(samples: pd.DataFrame, dataset: str, category: str) -> Inventory:
    """Summarise a validated samples table (see ``validate_samples``, which adds width/height)."""
    counts = Counter(zip(samples.split, samples.defect_type, strict=True))
    sizes = Counter(f"{w}x{h}" for w, h in zip(samples.width, samples.height, strict=True))
    defective = samples[samples.label_index == 1]
    warnings = []
    if len(sizes) > 1:
        warnings.append(f"images come in {len(sizes)} sizes; they are resized to the datamodule's image_size")
    if defective.empty:
        warnings.append("no defective test images: only image-level checks of normal data are possible")
    return Inventory(
        dataset=dataset,
        category=category,
        path=samples.attrs.get("category_dir", ""),
        counts=dict(sorted(counts.items())),
        sizes=dict(sizes.most_common()),
        defective=len(defective),
        masks_matched=int((defective.mask_paths.apply(len) > 0).sum()),
        mask_files=int(samples.mask_paths.apply(len).sum()),
        warnings=warnings,
    )
