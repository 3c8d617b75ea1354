"""The one answer every weight lookup returns (which file, and where it came from), and whether a weight file
is whole and loads without unpickling code."""

from __future__ import annotations

import json
import pickle
import re
import struct
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import torch

from tgad.assets.cache import file_kind

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


def weight_file_problem(path: str | Path) -> str | None:
    """What is wrong with a weight or checkpoint file, ending with the fix; None when it is present and whole
    (a torch zip's members pass their CRCs, a safetensors header parses). Nothing is unpickled."""
    path = Path(path).expanduser()
    if not path.exists():
        return "no such file; fix the path"
    if not path.is_file():
        return f"{file_kind(path)}, not a checkpoint file; name the file"
    if path.stat().st_size == 0:
        return "the file is empty; replace it with a whole checkpoint"
    if path.suffix == ".safetensors":
        return _safetensors_problem(path)
    with open(path, "rb") as handle:
        magic = handle.read(4)
    legacy = magic[:3] == b"\x80\x02\x8a"  # torch's pre-1.6 format: pickle protocol 2, then its magic number
    if magic == b"PK\x03\x04" or zipfile.is_zipfile(path):
        try:
            with zipfile.ZipFile(path) as archive:
                bad = archive.testzip()
        except (zipfile.BadZipFile, OSError, EOFError) as err:
            return f"a damaged or truncated checkpoint ({err}); replace it with a whole file"
        if bad is not None:
            return f"member {bad} is corrupt; replace it with a whole file"
    elif not legacy:
        return "not a PyTorch checkpoint (unknown format); name a .ckpt/.pt file"
    return None


def _safetensors_problem(path: Path) -> str | None:
    """A safetensors file's header parses and the file is as long as the header says."""
    try:
        with open(path, "rb") as handle:
            (length,) = struct.unpack("<Q", handle.read(8))
            header = json.loads(handle.read(length))
        end = max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"), default=0)
        if path.stat().st_size < 8 + length + end:
            raise ValueError("shorter than its header says")
    except (struct.error, ValueError, KeyError, TypeError, MemoryError, OverflowError) as err:
        return f"not a whole safetensors file ({err}); replace it with a whole file"
    return None


def unpickling_problem(err: BaseException) -> str:
    """torch's weights_only refusal as what it is, with the object it met; its advice to re-run with
    ``weights_only=False`` (run the file's code) is never repeated."""
    found = re.search(r"GLOBAL ([\w.]+)", str(err))
    what = f" ({found.group(1)})" if found else ""
    return (
        f"holds pickled Python objects{what} besides tensors, which tgad does not unpickle (unpickling runs "
        "code); use a checkpoint written by tgad, or save only its tensors (state_dict)"
    )


def weights_only_problem(path: str | Path) -> str | None:
    """Why the checkpoint does not load with ``weights_only=True`` (tensors, numbers, containers), as Lightning
    will load it, in one line; None when it loads."""
    path = Path(path).expanduser()
    try:
        try:
            torch.load(path, map_location="cpu", weights_only=True, mmap=True)  # mmap: tensors stay on disk
        except RuntimeError as err:  # the legacy (pre-1.6) format cannot be memory-mapped
            if "mmap" not in str(err):
                raise
            torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        return unpickling_problem(err)
    except (RuntimeError, EOFError, OSError, ValueError) as err:
        first = (str(err).strip().splitlines() or [type(err).__name__])[0][:160]
        return f"does not load as a checkpoint ({first}); replace it"
    return None
