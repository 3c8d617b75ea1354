"""The one answer every weight lookup returns: which file, and where it came from."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

Source = Literal["local_file", "cache", "package", "download", "random"]


class AssetError(RuntimeError):
    """A weight or data file could not be had; the message names it and says how to provide it."""


@dataclass(frozen=True)
class ResolvedWeights:
    """Provenance of a set of weights, recorded with every result that used them.

    ``source == "random"`` means no real weights were found and the caller explicitly allowed random ones.
    """

    name: str
    source: Source
    path: Path | None = None
    sha256: str | None = None
    tag: str | None = None

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
        return out
