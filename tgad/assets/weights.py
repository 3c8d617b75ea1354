"""The one answer every weight lookup returns: which file, and where it came from."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

# The statistics most ImageNet-trained weights expect; weights trained otherwise record their own.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

Source = Literal["local_file", "cache", "package", "download", "random"]


class AssetError(RuntimeError):
    """A weight or data file could not be had; the message names it and says how to provide it."""


@dataclass(frozen=True)
class ResolvedWeights:
    """Provenance of a set of weights, recorded with every result that used them.

    ``source == "random"`` means no real weights were found and the caller explicitly allowed random ones.
    ``mean``/``std`` are the input normalisation the weights were trained with (RGB in [0, 1]): whoever feeds
    them images reads it from here, so a backbone never sees another network's statistics.
    """

    name: str
    source: Source
    path: Path | None = None
    sha256: str | None = None
    tag: str | None = None
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    @property
    def is_random(self) -> bool:
        return self.source == "random"

    def describe(self) -> str:
        """Short human/CSV form, e.g. ``tf_efficientnet_lite0:package:57934424``."""
        if self.is_random:
            return f"{self.name}:RANDOM"
        ident = self.tag or (self.sha256[:8] if self.sha256 else (self.path.name if self.path else "?"))
        return f"{self.name}:{self.source}:{ident}"

    def to_dict(self) -> dict:
        out = asdict(self)
        out["path"] = str(self.path) if self.path else None
        out["mean"], out["std"] = list(self.mean), list(self.std)
        return out
