"""The ExtraSet artifact: a folder of extra normal images (``train/good/*.png``) and its ``manifest.json``.

Plain augmentation and ``tgad generate`` both write one, so everything downstream (datamodules through
``extra_normal_dirs``, the benchmark, the report) treats the two alike. A folder is written atomically: it
appears under its final name only once every image and the manifest are on disk, so an interrupted write
never looks complete. Its name carries a key of the arguments that made it, so an identical request reuses it.

A generated set is asked for with one ``ExtraSetRequest`` and named by one function, ``extra_set_key``: the
benchmark names its folder with it and the chain checks a folder's manifest against it, so the two never
disagree. ``fit_arguments`` takes from the same request what a generator fit depends on (``fit_cache.py``).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import torch
from PIL import Image

import tgad
from tgad.assets.cache import atomic_dir, atomic_file, sha256_file
from tgad.hardware import Hardware

if TYPE_CHECKING:
    from tgad.recipe import Recipe

MANIFEST = "manifest.json"
IMAGES_DIR = Path("train") / "good"
SCHEMA_VERSION = 1
KINDS = ("plain_aug", "tgad", "tgad_aug", "aug_select", "tgad_select")
# What a generated set's key covers. 1: the settings that differed from the preset, each part added under its
# own condition so earlier keys stayed valid; 2: every recipe part that shapes the images, whole. A new version
# makes the sets of an older one again, once (their folders and manifests carry the older keys).
KEY_SCHEMA = 2
# ``RunSettings`` fields that shape the detector's run, never a generated image: outside the key
DETECTOR_ONLY = ("detector_image_size", "train_batch_size", "eval_batch_size")
# What a generator fit depends on besides the run settings and the VarianceVQGAN config (``fit_arguments``)
_FIT_ARGUMENTS = ("key_schema", "tgad_version", "dataset", "root", "category", "shot_ids", "shot_sha256",
                  "seed", "preset", "hardware", "prior")  # fmt: skip

# field -> accepted types; the per-image records need "file" and "source_shot", anything else is extra.
_REQUIRED: dict[str, tuple[type, ...]] = {
    "schema_version": (int,),
    "kind": (str,),
    "dataset": (str,),
    "category": (str,),
    "shot_ids": (list,),
    "shot_paths": (list,),
    "seed": (int,),
    "n": (int,),
    "image_size": (list,),
    "images": (list,),
    "config": (dict,),
    "weights": (dict,),
    "tgad_version": (str,),
    "timings": (dict,),
    "created": (str,),
    "cache_key": (str, type(None)),
}


class ExtraSetError(ValueError):
    """An ExtraSet folder or manifest is malformed; the message names the file and the field."""


def cache_key(arguments: Mapping[str, Any]) -> str:
    """16 hex digits of the sha256 of the canonical JSON of the generating arguments (key order ignored)."""
    canonical = json.dumps(arguments, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:16]


class ChosenShots(NamedTuple):
    """The shots a datamodule chose (``shot_seed``): where they came from and their files and IDs."""

    dataset: str
    category: str
    root: Path
    paths: list[Path]
    ids: list[str]

    @classmethod
    def from_datamodule(cls, dataset: str, dm) -> ChosenShots:
        """The shots of a set-up ``FewShotDataModule`` of ``dataset``."""
        return cls(dataset, dm.category, Path(dm.root), [Path(p) for p in dm.shot_paths], list(dm.shot_ids))


@dataclass(frozen=True)
class ExtraSetRequest:
    """Everything that determines a generated ExtraSet's images; ``extra_set_key`` names it.

    Build one with ``tgad.generate.chain.make_request`` (it describes the recipe's prior for the shots).
    """

    shots: ChosenShots
    seed: int  # chose the shots (the datamodule's ``shot_seed``) and seeds every random draw
    n: int
    recipe: Recipe  # CLIP weights included (``recipe.prompt.clip_weights``)
    hardware: Hardware = Hardware()  # resolved on construction: the key holds what runs
    keyword: str | None = None  # object word or synset for a category the class table lacks
    prior: Mapping[str, Any] | None = None  # ``tgad.generate.prior.describe_prior(...).request``

    def __post_init__(self) -> None:
        if self.n < 1:
            raise ValueError(f"--n ({self.n}) must be >= 1")
        if not self.shots.paths or len(self.shots.paths) != len(self.shots.ids):
            raise ValueError(
                f"chosen shots: {len(self.shots.paths)} files for {len(self.shots.ids)} IDs; need >= 1 of each"
            )
        object.__setattr__(self, "hardware", self.hardware.resolved())

    @functools.cached_property
    def arguments(self) -> dict[str, Any]:
        """What the key hashes and the manifest records (``config.arguments``): the shots (IDs and file
        hashes), seed, N, keyword, the recipe parts that shape the images (whole), the CLIP file's size and
        mtime, the resolved hardware, the prior, the key schema and the tgad version. Computed once."""
        shots, recipe = self.shots, self.recipe
        run = {k: v for k, v in dataclasses.asdict(recipe.run).items() if k not in DETECTOR_ONLY}
        return {
            "key_schema": KEY_SCHEMA,
            "kind": "tgad",
            "tgad_version": tgad.__version__,
            "dataset": shots.dataset,
            "root": str(Path(shots.root).resolve()),
            "category": shots.category,
            "shot_ids": list(shots.ids),
            "shot_sha256": [sha256_file(p) for p in shots.paths],
            "seed": self.seed,
            "n": self.n,
            "keyword": self.keyword,
            "preset": recipe.preset,
            "recipe": {
                "run": run,
                "vqgan": recipe.vqgan.flat(),  # by flat name, as before its groups: the same keys
                "integrator": dataclasses.asdict(recipe.integrator),
                "prompt": dataclasses.asdict(recipe.prompt),
            },
            "clip_weights_file": _file_stamp(recipe.prompt.clip_weights),
            "hardware": dataclasses.asdict(self.hardware),
            "prior": None if self.prior is None else dict(self.prior),
        }


def extra_set_key(request: ExtraSetRequest) -> str:
    """The one key of a generated set: the benchmark's folder name and the chain's manifest both carry it."""
    return cache_key(request.arguments)


def fit_arguments(arguments: Mapping[str, Any]) -> dict[str, Any]:
    """What the generator fit of a request (its ``arguments``) depends on: the shots, seed, hardware, prior,
    the run settings and the VarianceVQGAN config; not the Integrator, the prompt, N or the keyword, so
    requests that differ only after the fit share it (``fit_cache.py``)."""
    recipe = arguments["recipe"]
    return {k: arguments[k] for k in _FIT_ARGUMENTS} | {
        "kind": "variance_vqgan_fit",
        "run": recipe["run"],
        "vqgan": recipe["vqgan"],
    }


def _file_stamp(path: str | None) -> list[int] | None:
    """Size and mtime of a weight file, so a replaced file is not mistaken for the same request."""
    if path and Path(path).expanduser().is_file():
        stat = Path(path).expanduser().stat()
        return [stat.st_size, stat.st_mtime_ns]
    return None


def _to_uint8(image: torch.Tensor | np.ndarray | Image.Image) -> np.ndarray:
    """(H, W, 3) uint8 from a float tensor (3, H, W) in [0, 1], a uint8/float array (H, W, 3) or a PIL image."""
    if isinstance(image, Image.Image):
        return np.asarray(image.convert("RGB"))
    if isinstance(image, torch.Tensor):
        if image.ndim != 3 or image.shape[0] != 3:
            raise ExtraSetError(f"extra-set image tensor must be (3, H, W), got {tuple(image.shape)}")
        image = image.detach().cpu().permute(1, 2, 0).numpy()  # (3, H, W) -> (H, W, 3)
    array = np.asarray(image)
    if array.dtype != np.uint8:
        array = (np.clip(array.astype(np.float32), 0.0, 1.0) * 255.0).round().astype(np.uint8)
    if array.ndim != 3 or array.shape[2] != 3:
        raise ExtraSetError(f"extra-set image array must be (H, W, 3), got {array.shape}")
    return array


def write_extra_set(
    out_dir: str | Path,
    images: Iterable[torch.Tensor | np.ndarray | Image.Image],
    records: Sequence[Mapping[str, Any]],
    *,
    kind: str,
    dataset: str,
    category: str,
    shot_ids: Sequence[str],
    shot_paths: Sequence[str | Path],
    seed: int,
    config: Mapping[str, Any],
    weights: Mapping[str, Any] | None = None,
    timings: Mapping[str, float] | None = None,
    key: str | None = None,
) -> Path:
    """Write images ``train/good/0000.png...`` and the manifest into ``out_dir``, atomically.

    Args:
        images: RGB images, one per record, all of one size.
        records: per-image metadata; each needs ``source_shot`` (a shot ID); other fields (score, round) are kept.
        weights: name -> ``ResolvedWeights.to_dict()`` (or any JSON) of every weight file used.
        key: the ``cache_key`` of the request, recorded so a reader can check what it is reusing.

    Returns:
        ``out_dir``, complete. An exception inside leaves no folder under that name.
    """
    if kind not in KINDS:
        raise ExtraSetError(f"kind={kind!r}: an ExtraSet is one of {KINDS}")
    out_dir = Path(out_dir)
    entries, size = [], None
    start = time.perf_counter()
    with atomic_dir(out_dir) as tmp:
        (tmp / IMAGES_DIR).mkdir(parents=True)
        count = 0
        for index, image in enumerate(images):
            if index >= len(records):
                raise ExtraSetError(f"{out_dir}: more images than records ({len(records)})")
            array = _to_uint8(image)
            if size is None:
                size = [int(array.shape[0]), int(array.shape[1])]
            elif [array.shape[0], array.shape[1]] != size:
                raise ExtraSetError(f"{out_dir}: image {index} is {array.shape[:2]}, the first was {size}")
            name = (IMAGES_DIR / f"{index:04d}.png").as_posix()
            Image.fromarray(array).save(tmp / name)
            entries.append({"file": name, **dict(records[index])})
            count += 1
        if count != len(records):
            raise ExtraSetError(f"{out_dir}: {count} images for {len(records)} records")
        manifest = {
            "schema_version": SCHEMA_VERSION,
            "kind": kind,
            "dataset": dataset,
            "category": category,
            "shot_ids": list(shot_ids),
            "shot_paths": [str(p) for p in shot_paths],
            "seed": int(seed),
            "n": count,
            "image_size": size or [0, 0],
            "images": entries,
            "config": dict(config),
            "weights": dict(weights or {}),
            "tgad_version": tgad.__version__,
            "timings": {"write_seconds": time.perf_counter() - start, **dict(timings or {})},
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "cache_key": key,
        }
        validate_manifest(manifest, tmp)
        with atomic_file(tmp / MANIFEST) as handle:
            json.dump(manifest, handle, indent=2, default=str)
    return out_dir


def validate_manifest(manifest: Mapping[str, Any], folder: str | Path | None = None) -> None:
    """Raise ``ExtraSetError`` unless ``manifest`` follows the schema (and, with ``folder``, its files exist)."""
    where = f"{Path(folder) / MANIFEST}" if folder is not None else "manifest"
    for field, types in _REQUIRED.items():
        if field not in manifest:
            raise ExtraSetError(f"{where}: missing field {field!r}")
        if not isinstance(manifest[field], types) or isinstance(manifest[field], bool):
            raise ExtraSetError(f"{where}: field {field!r} has type {type(manifest[field]).__name__}")
    if manifest["schema_version"] != SCHEMA_VERSION:
        raise ExtraSetError(
            f"{where}: schema_version {manifest['schema_version']}, expected {SCHEMA_VERSION}"
        )
    if manifest["kind"] not in KINDS:
        raise ExtraSetError(f"{where}: kind {manifest['kind']!r} is not one of {KINDS}")
    if len(manifest["images"]) != manifest["n"]:
        raise ExtraSetError(f"{where}: n={manifest['n']} but {len(manifest['images'])} image records")
    if len(manifest["shot_ids"]) != len(manifest["shot_paths"]) or not manifest["shot_ids"]:
        raise ExtraSetError(f"{where}: shot_ids and shot_paths must be non-empty and of equal length")
    if not all(isinstance(p, str) for p in manifest["shot_paths"]):
        raise ExtraSetError(f"{where}: shot_paths must be strings (a record of the shots, never opened)")
    shots = set(manifest["shot_ids"])
    inside = Path(folder).resolve() if folder is not None else None
    for index, record in enumerate(manifest["images"]):
        if not isinstance(record, dict) or "file" not in record or "source_shot" not in record:
            raise ExtraSetError(f"{where}: images[{index}] needs 'file' and 'source_shot'")
        if record["source_shot"] not in shots:
            raise ExtraSetError(f"{where}: images[{index}] source_shot {record['source_shot']!r} is no shot")
        if problem := _outside(record["file"], inside):
            raise ExtraSetError(f"{where}: images[{index}] file {record['file']!r} {problem}")
        if folder is not None and not (Path(folder) / record["file"]).is_file():
            raise ExtraSetError(f"{where}: images[{index}] file {record['file']} is missing")


def _outside(file: object, folder: Path | None) -> str | None:
    """Why an image path of a manifest would be read from outside its set's ``folder`` (None when it would not).

    A manifest's ``file`` is relative to its own folder (``train/good/0000.png``): an absolute path, a ``..``
    or a link leading out would make a reader take in a file the set never held (validation, plots).
    """
    if not isinstance(file, str) or not file:
        return "is not a relative path"
    path = PurePosixPath(file.replace("\\", "/"))
    if path.is_absolute() or PureWindowsPath(file).drive or ".." in path.parts:
        return "is not inside the set's folder (absolute, or with '..')"
    if folder is not None and not (folder / path).resolve().is_relative_to(folder):
        return "leads out of the set's folder (a link)"
    return None


def load_manifest(folder: str | Path) -> dict[str, Any]:
    """The validated manifest of an ExtraSet folder."""
    path = Path(folder) / MANIFEST
    if not path.is_file():
        raise ExtraSetError(
            f"{path}: no manifest; {folder} is not a complete ExtraSet (delete it to rebuild)"
        )
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ExtraSetError(f"{path}: not valid JSON ({err.msg}); delete {folder} to rebuild it") from err
    validate_manifest(manifest, folder)
    return manifest


def is_complete(folder: str | Path, key: str | None = None) -> bool:
    """True if ``folder`` holds a valid ExtraSet (made by the request ``key``, when given)."""
    try:
        manifest = load_manifest(folder)
    except ExtraSetError:
        return False
    return key is None or manifest["cache_key"] == key


def extra_set_dir(root: str | Path, kind: str, category: str, shots: int | None, seed: int, key: str) -> Path:
    """Where a benchmark keeps one ExtraSet: ``<root>/<kind>/<category>/k<shots>_seed<seed>_<key>``."""
    return Path(root) / kind / category / f"k{shots if shots is not None else 'full'}_seed{seed}_{key}"
