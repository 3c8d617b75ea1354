"""anomalib EfficientAd, made to run offline.

anomalib downloads two things in ``on_train_start``: the distilled teacher PDN (GitHub release) and ImageNette
(the "penalty" images that stop the student from imitating the teacher outside the normal data). Here:
- the teacher's weights are resolved by ``tgad.assets`` like any backbone (a local file, the tgad cache, or
  anomalib's own cache when a user ran it online once); without them, a random teacher only when allowed,
  and the row records ``RANDOM``;
- the penalty images are ImageNette when it is found at ``imagenet_dir``, else the natural photographs that
  scikit-image bundles (astronaut, coffee, rocket, ...): the same role (generic images unlike the part), a far
  smaller set. This is a deviation from the paper's setting; the row records which set was used.
"""

from __future__ import annotations

import logging

import numpy as np
import skimage.data
import torch
from anomalib.models import EfficientAd
from anomalib.utils.path import get_pretrained_weights_dir
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms.v2 import CenterCrop, Compose, RandomGrayscale, Resize, ToTensor

from tgad.assets import AssetError, ResolvedWeights, resolve_backbone_weights

log = logging.getLogger(__name__)

# Photographs shipped inside the scikit-image wheel; none of them is an embedded-dataset texture.
PENALTY_PHOTOS = (
    "astronaut",
    "camera",
    "chelsea",
    "clock",
    "coffee",
    "coins",
    "hubble_deep_field",
    "immunohistochemistry",
    "moon",
    "page",
    "retina",
    "rocket",
)


def teacher_weights(model_size: str = "small", allow_random: bool = False) -> ResolvedWeights:
    """The EfficientAd teacher PDN: ``<tgad cache>/weights/efficientad_teacher_<size>.pth``, else anomalib's cache."""
    name = f"efficientad_teacher_{model_size}"
    anomalib_file = (
        get_pretrained_weights_dir()
        / "efficientad_pretrained_weights"
        / f"pretrained_teacher_{model_size}.pth"
    )
    try:
        return resolve_backbone_weights(
            name, anomalib_file if anomalib_file.is_file() else None, allow_random
        )
    except AssetError as err:
        raise AssetError(
            f"no weights for the EfficientAd teacher ({name}): put pretrained_teacher_{model_size}.pth (from "
            f"anomalib's efficientad_pretrained_weights release) at <tgad cache>/weights/{name}.pth, or allow a "
            "random backbone (--allow-random-backbone)"
        ) from err


class _Photos(Dataset):
    """scikit-image's bundled photographs as an ImageFolder-like dataset: items are (image, 0)."""

    def __init__(self, transform) -> None:
        self.images = []
        for name in PENALTY_PHOTOS:
            array = np.asarray(getattr(skimage.data, name)())
            if array.ndim == 2:  # grey (H, W) -> (H, W, 3)
                array = np.repeat(array[..., None], 3, axis=2)
            self.images.append(Image.fromarray(array[..., :3].astype(np.uint8)))
        self.transform = transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int):
        return self.transform(self.images[index]), 0


class OfflineEfficientAd(EfficientAd):
    """EfficientAd whose teacher comes from ``teacher`` (resolved weights) and whose penalty set works offline."""

    def __init__(self, teacher: ResolvedWeights, penalty_seed: int = 0, **kwargs) -> None:
        super().__init__(**kwargs)
        self.teacher_resolved = teacher
        self.penalty_seed = penalty_seed
        self.penalty_source = "imagenette" if self.imagenet_dir.is_dir() else "skimage_photos"

    def prepare_pretrained_model(self) -> None:
        if self.teacher_resolved.is_random:
            log.warning("EfficientAd: RANDOM teacher (no pretrained teacher weights), as allowed")
            return
        state = torch.load(self.teacher_resolved.path, map_location=self.device, weights_only=True)
        self.model.teacher.load_state_dict(state)

    def prepare_imagenette_data(self, image_size) -> None:
        if self.penalty_source == "imagenette":
            super().prepare_imagenette_data(image_size)
            return
        # anomalib's transform (resize x2, random grey, centre crop), applied to the bundled photographs.
        self.data_transforms_imagenet = Compose(
            [
                Resize((image_size[0] * 2, image_size[1] * 2)),
                RandomGrayscale(p=0.3),
                CenterCrop((image_size[0], image_size[1])),
                ToTensor(),
            ]
        )
        generator = torch.Generator().manual_seed(self.penalty_seed)
        self.imagenet_loader = DataLoader(
            _Photos(self.data_transforms_imagenet),
            batch_size=self.batch_size,
            shuffle=True,
            generator=generator,
        )
        self.imagenet_iterator = iter(self.imagenet_loader)
