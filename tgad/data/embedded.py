"""The embedded dataset: real scikit-image photographs with synthetic defects, built on demand into the cache."""

from __future__ import annotations

from pathlib import Path

from tgad.assets.cache import cache_dir
from tgad.data.datamodule import FewShotDataModule
from tgad.data.embedded_builder import EMBEDDED_CATEGORIES, EmbeddedSpec, build_embedded
from tgad.data.errors import DataError


def embedded_root(build_size: int = 256, build_seed: int = 0) -> Path:
    """Default folder of one build: builds with other sizes or seeds live side by side."""
    return cache_dir() / "embedded" / f"size{build_size}_seed{build_seed}"


class Embedded(FewShotDataModule):
    """Categories ``brick``, ``grass``, ``gravel`` (and any other ``EMBEDDED_CATEGORIES``) in MVTec layout.

    Args:
        build_size: side of the images the builder writes (``image_size`` still resizes at load time).
        build_seed: seed of the crops and defects; the same seed builds byte-identical files everywhere.
        (the rest as in ``FewShotDataModule``; ``root`` defaults to the tgad cache)
    """

    dataset_name = "embedded"
    root_env = "TGAD_EMBEDDED_ROOT"
    where_to_get = "it is built on demand by tgad (tgad data check --dataset embedded)"

    def __init__(
        self,
        category: str = "brick",
        root: str | None = None,
        build_size: int = 256,
        build_seed: int = 0,
        **kwargs,
    ) -> None:
        if category not in EMBEDDED_CATEGORIES:
            raise DataError(
                f"category {category!r} (--category/--categories) is not an embedded category; choose one of {list(EMBEDDED_CATEGORIES)}"
            )
        self.build_spec = EmbeddedSpec(image_size=build_size, seed=build_seed)
        super().__init__(root=root or str(embedded_root(build_size, build_seed)), category=category, **kwargs)

    def prepare_data(self) -> None:
        build_embedded(self.root, self.category, self.build_spec)

    def index(self):
        self.prepare_data()  # cheap when the build exists: it only reads embedded.json
        return super().index()
