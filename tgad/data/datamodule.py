"""Few-shot LightningDataModules over anomalib: k-shot training sets, extra normal folders, validation that
keeps test images out of training, and provenance of every chosen shot."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import ClassVar, Literal

import pandas as pd
from anomalib.data.datamodules.base.image import AnomalibDataModule
from anomalib.data.utils import DownloadInfo, TestSplitMode, ValSplitMode
from torchvision.transforms.v2 import Resize

from tgad.data.download import ensure_downloaded
from tgad.data.errors import DataError
from tgad.data.images import MAX_IMAGE_SIZE, MIN_IMAGE_SIZE, is_image_file
from tgad.data.indexing import COLUMNS, INDEXERS, validate_samples
from tgad.data.leaks import check_no_leak
from tgad.data.names import folder_name_problem
from tgad.data.samples_dataset import SamplesDataset
from tgad.data.shots import MAX_SEED, choose_shots, resolve_shot_ids

logger = logging.getLogger(__name__)


def extra_normal_rows(folder: str | Path) -> pd.DataFrame:
    """Rows for a folder of extra normal images: the folder itself, or its ``train/good`` (an ExtraSet artifact)."""
    folder = Path(folder)
    if (folder / "train" / "good").is_dir():
        folder = folder / "train" / "good"
    if not folder.is_dir():
        raise DataError(f"extra_normal_dirs: {folder} is not a folder; give folders of normal images")
    images = sorted(p for p in folder.iterdir() if is_image_file(p))
    if not images:
        raise DataError(
            f"extra_normal_dirs: {folder} holds no images; remove it from extra_normal_dirs or fill it"
        )
    rows = [
        {
            "image_path": str(p),
            "mask_path": "",
            "mask_paths": (),
            "split": "train",
            "label": "normal",
            "label_index": 0,
            "defect_type": "good",
        }
        for p in images
    ]
    return pd.DataFrame(rows, columns=COLUMNS)


def _check_numbers(name: str, shots, seed: int, size: int | None, train_batch: int, eval_batch: int) -> None:
    """The datamodule's numbers in range, whatever built it (a YAML through LightningCLI, Python)."""
    problems = [
        (shots is not None and shots < 1, f"shots={shots}: a positive number of images, or None for all"),
        (not 0 <= seed <= MAX_SEED, f"shot_seed={seed}: a whole number in 0 .. {MAX_SEED}"),
        (
            size is not None and not MIN_IMAGE_SIZE <= size <= MAX_IMAGE_SIZE,
            f"image_size={size}: a side in pixels in {MIN_IMAGE_SIZE} .. {MAX_IMAGE_SIZE}, or None for native",
        ),
        (train_batch < 1 or eval_batch < 1, f"batch sizes {train_batch}, {eval_batch}: need >= 1"),
    ]
    for bad, message in problems:
        if bad:
            raise DataError(f"{name}: {message}")


class FewShotDataModule(AnomalibDataModule):
    """Base of ``MVTecAD``, ``BTAD``, ``LOCO`` and ``Embedded``.

    Args:
        root: dataset root holding one folder per category (default: ``$<ROOT_ENV>``, else ``default_root``).
        category: category folder name under ``root``.
        shots: number of real normal training images (None = the full train set).
        shot_seed: which block of the fixed shot permutation to take (see ``tgad.data.shots``).
        shot_ids: explicit training file names; overrides ``shots``/``shot_seed``.
        image_size: square side every image and mask is resized to (None keeps the native size).
        extra_normal_dirs: folders of extra normal images (generated or augmented), appended to training only.
        validation: ``shots`` validates on the real shots (normal images: anomalib's score normalisation needs a
            validation pass, and no test image may be used for it); ``none`` has no validation set.
        download: allow downloading a missing dataset (when the dataset has a download and the network allows).
    """

    dataset_name: ClassVar[str] = ""
    default_root: ClassVar[str] = ""
    root_env: ClassVar[str] = ""
    download_info: ClassVar[DownloadInfo | None] = None
    where_to_get: ClassVar[str] = ""
    archive_inner_folder: ClassVar[str | None] = None
    categories: ClassVar[tuple[str, ...]] = ()

    def __init__(
        self,
        root: str | None = None,
        category: str = "",
        shots: int | None = None,
        shot_seed: int = 0,
        shot_ids: list[str] | None = None,
        image_size: int | None = 256,
        extra_normal_dirs: list[str] | None = None,
        validation: Literal["shots", "none"] = "shots",
        train_batch_size: int = 32,
        eval_batch_size: int = 32,
        num_workers: int = 0,
        download: bool = True,
    ) -> None:
        resize = Resize((image_size, image_size), antialias=True) if image_size else None
        super().__init__(
            train_batch_size=train_batch_size,
            eval_batch_size=eval_batch_size,
            num_workers=num_workers,
            augmentations=resize,
            test_split_mode=TestSplitMode.FROM_DIR,
            val_split_mode=ValSplitMode.FROM_DIR,  # tgad builds the validation set itself in _setup
        )
        if not category:
            raise DataError(
                f"{type(self).__name__}: category is empty; name a category folder under the root"
            )
        if problem := folder_name_problem(category):
            raise DataError(
                f"category {category!r} {problem}; a category is a folder name under the dataset root "
                "(e.g. hazelnut), not a path"
            )
        _check_numbers(type(self).__name__, shots, shot_seed, image_size, train_batch_size, eval_batch_size)
        self.root = Path(root or os.environ.get(self.root_env) or self.default_root).expanduser()
        self.category = category
        self.shots = shots
        self.shot_seed = shot_seed
        self.shot_ids_requested = list(shot_ids) if shot_ids else None
        self.image_size = image_size
        self.extra_normal_dirs = [str(d) for d in (extra_normal_dirs or [])]
        self.validation = validation
        self.download = download
        self.samples: pd.DataFrame | None = None
        self.shot_ids: list[str] = []
        self.shot_paths: list[Path] = []

    @property
    def category_dir(self) -> Path:
        return self.root / self.category

    def prepare_data(self) -> None:
        ensure_downloaded(
            self.root,
            self.category,
            self.download_info,
            self.where_to_get,
            self.download,
            self.archive_inner_folder,
        )

    def index(self) -> pd.DataFrame:
        """The validated samples table of the whole category (real images only)."""
        if not self.category_dir.is_dir():
            self._missing_category()
        return validate_samples(INDEXERS[self.dataset_name](self.category_dir))

    def _missing_category(self) -> None:
        if not self.root.is_dir():
            raise DataError(
                f"{self.root}: dataset root not found; pass --root (root: in a config, or set {self.root_env}) "
                f"{self.where_to_get}"
            )
        found = sorted(p.name for p in self.root.iterdir() if p.is_dir() and not p.name.startswith("."))
        raise DataError(
            f"{self.category_dir}: unknown category {self.category!r}; categories under {self.root}: {found}"
        )

    def _setup(self, _stage: str | None = None) -> None:
        if not self.category_dir.is_dir():
            if self.root.is_dir() and self.category not in self.categories:
                self._missing_category()  # a typo, not a dataset to download
            self.prepare_data()  # a user calling setup() directly, as anomalib allows
        samples = self.index()
        train = samples[samples.split == "train"]
        names = [Path(p).name for p in train.image_path]
        if self.shot_ids_requested:
            chosen = resolve_shot_ids(names, self.shot_ids_requested, str(self.category_dir / "train"))
        else:
            chosen = choose_shots(names, self.shots, self.shot_seed)
        by_name = dict(zip(names, train.image_path, strict=True))
        self.shot_ids = chosen
        self.shot_paths = [Path(by_name[n]) for n in chosen]
        shot_rows = train.set_index("image_path").loc[[str(p) for p in self.shot_paths]].reset_index()
        extras = [extra_normal_rows(d) for d in self.extra_normal_dirs]
        train_rows = pd.concat([shot_rows[COLUMNS], *extras], ignore_index=True)
        test_rows = samples[samples.split == "test"]
        self._check_no_leak(train_rows, test_rows)
        task = samples.attrs.get("task", "segmentation")
        self.samples = samples
        self.train_data = SamplesDataset(train_rows[COLUMNS], task, self.category)
        self.test_data = SamplesDataset(test_rows[COLUMNS], task, self.category)
        if self.validation == "shots":
            self.val_data = SamplesDataset(shot_rows[COLUMNS], task, self.category)
        elif hasattr(self, "val_data"):
            del self.val_data
        logger.info(
            "%s/%s: %d shot(s) %s + %d extra, %d test images",
            self.dataset_name,
            self.category,
            len(chosen),
            chosen,
            len(train_rows) - len(chosen),
            len(test_rows),
        )

    def _check_no_leak(self, train_rows: pd.DataFrame, test_rows: pd.DataFrame) -> None:
        """No training image (shot or extra) is a test image: not by path, not by content (a copy, a hard
        link), and no extra folder lies inside the test split."""
        test_paths = {os.path.realpath(p) for p in test_rows.image_path}
        for path in train_rows.image_path:
            if os.path.realpath(path) in test_paths:
                raise DataError(
                    f"{path}: a test image is in the training set; remove it from extra_normal_dirs"
                )
        check_no_leak(train_rows.image_path, test_rows.image_path)
        for folder in self.extra_normal_dirs:
            real = Path(os.path.realpath(folder))
            for guarded in ("test", "ground_truth"):
                if (self.category_dir / guarded).resolve() in (real, *real.parents):
                    raise DataError(
                        f"extra_normal_dirs: {folder} lies inside the category's {guarded}/ folder; "
                        "extra normal images must not come from the test split"
                    )

    def val_dataloader(self):
        if not hasattr(self, "val_data"):
            return []
        return super().val_dataloader()

    def provenance(self) -> dict:
        """What a result row records about its data: dataset, category, shots and their IDs."""
        return {
            "dataset": self.dataset_name,
            "category": self.category,
            "root": str(self.root),
            "shots": self.shots if self.shots is not None else "full",
            "shot_seed": self.shot_seed,
            "shot_ids": list(self.shot_ids),
            "extra_normal_dirs": list(self.extra_normal_dirs),
            "image_size": self.image_size,
        }
