"""Plain augmentation of the shots: the control every generated set must beat (METHOD.md section 4), and the
same augmentation applied to a generated set (the ``tgad_aug`` condition).

Flips, 90-degree rotations, a small affine warp and colour jitter (torchvision v2), each image drawn from its
own seeded generator, so the same (shots, n, seed, config) gives byte-identical images in any order. The
affine warp runs on a reflect-padded image and is cropped back, so no black corners appear: a constant fill
would add a border that no real normal image has, and a detector would learn it as normal.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torchvision.transforms import v2

from tgad.data.images import read_rgb
from tgad.generate.artifact import write_extra_set


@dataclass(frozen=True)
class PlainAugConfig:
    """What a plain-augmented copy may differ by. Defaults stay within what a normal part may look like."""

    hflip: float = 0.5
    vflip: float = 0.5
    rot90: bool = True  # a random multiple of 90 degrees
    degrees: float = 10.0
    translate: float = 0.05  # fraction of the side
    scale: tuple[float, float] = (0.95, 1.05)
    brightness: float = 0.1
    contrast: float = 0.1
    saturation: float = 0.1
    hue: float = 0.02


def _load(path: str | Path, image_size: int | None) -> torch.Tensor:
    image = read_rgb(path)  # (3, H, W) in [0, 1]
    if image_size:
        image = v2.functional.resize(image, [image_size, image_size], antialias=True)
    return image


def augment_image(image: torch.Tensor, config: PlainAugConfig, generator: torch.Generator) -> torch.Tensor:
    """One augmented copy of ``image`` (3, H, W) in [0, 1]; all randomness from ``generator``."""

    def draw() -> float:
        return float(torch.rand((), generator=generator))

    out = image
    if draw() < config.hflip:
        out = out.flip(-1)
    if draw() < config.vflip:
        out = out.flip(-2)
    if config.rot90:
        out = torch.rot90(out, int(torch.randint(4, (), generator=generator)), dims=(-2, -1))
    height, width = out.shape[-2:]
    angle = (2 * draw() - 1) * config.degrees
    shift = [
        round((2 * draw() - 1) * config.translate * width),
        round((2 * draw() - 1) * config.translate * height),
    ]
    scale = config.scale[0] + draw() * (config.scale[1] - config.scale[0])
    pad = int(0.25 * max(height, width))
    padded = torch.nn.functional.pad(out[None], (pad, pad, pad, pad), mode="reflect")[0]  # (3, H+2p, W+2p)
    warped = v2.functional.affine(padded, angle=angle, translate=shift, scale=scale, shear=[0.0, 0.0])
    out = warped[:, pad : pad + height, pad : pad + width]
    jitter = [1 + (2 * draw() - 1) * m for m in (config.brightness, config.contrast, config.saturation)]
    out = v2.functional.adjust_brightness(out, jitter[0])
    out = v2.functional.adjust_contrast(out, jitter[1])
    out = v2.functional.adjust_saturation(out, jitter[2])
    out = v2.functional.adjust_hue(out, (2 * draw() - 1) * config.hue)
    return out.clamp(0.0, 1.0)


def augment_shots(
    shots: Sequence[torch.Tensor], n: int, seed: int, config: PlainAugConfig = PlainAugConfig()
) -> list[tuple[torch.Tensor, int]]:
    """``n`` augmented copies, round-robin over the shots: [(image (3, H, W), index of its shot)].

    Image i is augmented by the stream seeded ``seed * 1_000_003 + i``, whatever the source: a generated set
    augmented with the same seed (``make_tgad_aug_set``) gets exactly the transforms plain augmentation drew.
    """
    if not shots or n < 1:
        raise ValueError(f"augment_shots: need at least one shot and n >= 1 (got {len(shots)} shots, n={n})")
    out = []
    for i in range(n):
        generator = torch.Generator().manual_seed(seed * 1_000_003 + i)  # one stream per image
        source = i % len(shots)
        out.append((augment_image(shots[source], config, generator), source))
    return out


def make_plain_aug_set(
    out_dir: str | Path,
    shot_paths: Sequence[str | Path],
    shot_ids: Sequence[str],
    *,
    n: int,
    seed: int,
    dataset: str,
    category: str,
    image_size: int | None = 256,
    config: PlainAugConfig = PlainAugConfig(),
    key: str | None = None,
) -> Path:
    """Write ``n`` plainly augmented copies of the shots as an ExtraSet folder (``kind="plain_aug"``)."""
    start = time.perf_counter()
    shots = [_load(p, image_size) for p in shot_paths]
    pairs = augment_shots(shots, n, seed, config)
    augment_seconds = time.perf_counter() - start
    records = [{"source_shot": shot_ids[source]} for _, source in pairs]
    return write_extra_set(
        out_dir,
        (image for image, _ in pairs),
        records,
        kind="plain_aug",
        dataset=dataset,
        category=category,
        shot_ids=shot_ids,
        shot_paths=shot_paths,
        seed=seed,
        config={"augment": dataclasses.asdict(config), "image_size": image_size},
        timings={"augment_seconds": augment_seconds},
        key=key,
    )


def make_tgad_aug_set(
    out_dir: str | Path,
    source_dir: str | Path,
    *,
    seed: int,
    image_size: int | None = 256,
    config: PlainAugConfig = PlainAugConfig(),
    key: str | None = None,
) -> Path:
    """Write the images of a generated ExtraSet (``source_dir``), each plainly augmented, as an ExtraSet of
    kind ``tgad_aug``: image i gets the transform plain augmentation gives image i for the same seed, so
    ``tgad_aug`` and ``plain_aug`` differ only in what is augmented (generated images vs the shots)."""
    from tgad.generate.artifact import load_manifest

    start = time.perf_counter()
    source = load_manifest(source_dir)
    images = [_load(Path(source_dir) / record["file"], image_size) for record in source["images"]]
    pairs = augment_shots(images, len(images), seed, config)  # one source image per output, in order
    records = [
        {"source_shot": record["source_shot"], "source_image": record["file"]} for record in source["images"]
    ]
    return write_extra_set(
        out_dir,
        (image for image, _ in pairs),
        records,
        kind="tgad_aug",
        dataset=source["dataset"],
        category=source["category"],
        shot_ids=source["shot_ids"],
        shot_paths=source["shot_paths"],
        seed=seed,
        config={
            "augment": dataclasses.asdict(config),
            "image_size": image_size,
            "source": {
                "path": str(source_dir),
                "kind": source["kind"],
                "cache_key": source["cache_key"],
                "scorer": source.get("scorer"),
            },
        },
        weights=source["weights"],
        timings={"augment_seconds": time.perf_counter() - start},
        key=key,
    )
