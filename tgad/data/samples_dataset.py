"""A thin anomalib dataset over a tgad samples table, decoding any image mode through ``tgad.data.images``."""

from __future__ import annotations

import pandas as pd
import torch
from anomalib import TaskType
from anomalib.data import ImageItem
from anomalib.data.datasets.base.image import AnomalibDataset
from torchvision import tv_tensors
from torchvision.transforms.v2 import Transform

from tgad.data.images import read_mask, read_rgb


class SamplesDataset(AnomalibDataset):
    """Items are anomalib ``ImageItem``s: image (3, H, W) float in [0, 1], gt_mask (H, W) bool, gt_label.

    The task is fixed by the whole category (segmentation when it has masks), not by this subset, so a train
    set of normal images still batches like the test set.
    """

    def __init__(
        self,
        samples: pd.DataFrame,
        task: TaskType | str,
        category: str,
        augmentations: Transform | None = None,
    ):
        super().__init__(augmentations=augmentations)
        self._task = TaskType(task)
        self.category = category
        self.samples = samples.reset_index(drop=True)

    @property
    def task(self) -> TaskType:
        return self._task

    def __getitem__(self, index: int) -> ImageItem:
        row = self.samples.iloc[index]
        image = tv_tensors.Image(read_rgb(row.image_path))
        mask = None
        if self._task == TaskType.SEGMENTATION:
            if row.label_index == 1 and len(row.mask_paths):
                mask = tv_tensors.Mask(read_mask(row.mask_paths).to(torch.uint8))
            else:
                mask = tv_tensors.Mask(torch.zeros(image.shape[-2:], dtype=torch.uint8))
        if self.augmentations is not None:
            if mask is None:
                image = self.augmentations(image)
            else:
                image, mask = self.augmentations(image, mask)
        return ImageItem(
            image=image,
            gt_mask=None if mask is None else tv_tensors.Mask(mask.bool()),
            gt_label=torch.tensor(int(row.label_index)),
            image_path=row.image_path,
            mask_path=row.mask_path,
        )
