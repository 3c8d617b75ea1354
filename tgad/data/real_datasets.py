"""The real datasets: MVTec AD, BTAD and MVTec LOCO, as few-shot datamodules (download info from anomalib)."""

from __future__ import annotations

from anomalib.data.datamodules.image.btech import DOWNLOAD_INFO as BTAD_DOWNLOAD
from anomalib.data.datamodules.image.mvtecad import DOWNLOAD_INFO as MVTEC_DOWNLOAD

from tgad.data.datamodule import FewShotDataModule

MVTEC_CATEGORIES = (
    "bottle",
    "cable",
    "capsule",
    "carpet",
    "grid",
    "hazelnut",
    "leather",
    "metal_nut",
    "pill",
    "screw",
    "tile",
    "toothbrush",
    "transistor",
    "wood",
    "zipper",
)
BTAD_CATEGORIES = ("01", "02", "03")
LOCO_CATEGORIES = ("breakfast_box", "juice_bottle", "pushpins", "screw_bag", "splicing_connectors")


class MVTecAD(FewShotDataModule):
    """MVTec AD (CC BY-NC-SA 4.0). Root holds ``<category>/{train,test,ground_truth}``; downloaded when missing."""

    dataset_name = "mvtec"
    categories = MVTEC_CATEGORIES
    default_root = "./datasets/MVTecAD"
    root_env = "TGAD_MVTEC_ROOT"
    download_info = MVTEC_DOWNLOAD
    where_to_get = "from https://www.mvtec.com/company/research/datasets/mvtec-ad"

    def __init__(self, root: str | None = None, category: str = "bottle", **kwargs) -> None:
        super().__init__(root=root, category=category, **kwargs)


class BTAD(FewShotDataModule):
    """BTAD (beanTech; products 01, 02, 03). Root holds ``<category>/{train/ok,test/{ok,ko},ground_truth/ko}``.

    The raw archive's BMP images are read as they are (no conversion step needed).
    """

    dataset_name = "btad"
    categories = BTAD_CATEGORIES
    default_root = "./datasets/BTAD"
    root_env = "TGAD_BTAD_ROOT"
    download_info = BTAD_DOWNLOAD
    where_to_get = "from the BTAD page (btad.zip, folder BTech_Dataset_transformed)"
    archive_inner_folder = "BTech_Dataset_transformed"

    def __init__(self, root: str | None = None, category: str = "01", **kwargs) -> None:
        super().__init__(root=root, category=category, **kwargs)


class LOCO(FewShotDataModule):
    """MVTec LOCO AD. No automatic download (its licence requires accepting terms on MVTec's page)."""

    dataset_name = "loco"
    categories = LOCO_CATEGORIES
    default_root = "./datasets/MVTecLOCO"
    root_env = "TGAD_LOCO_ROOT"
    download_info = None
    where_to_get = (
        "download mvtec_loco_anomaly_detection.tar.xz from "
        "https://www.mvtec.com/company/research/datasets/mvtec-loco and extract it there"
    )

    def __init__(self, root: str | None = None, category: str = "breakfast_box", **kwargs) -> None:
        super().__init__(root=root, category=category, **kwargs)
