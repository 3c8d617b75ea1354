"""Synthetic defects made from a normal image alone, with their masks, in two families kept apart on purpose.

* **Validation family** (``VALIDATION_KINDS``; ``tgad.evaluation.validation``): CutPaste (Li et al., CVPR 2021)
  patches and scars cut from the image itself, colour-jittered and pasted elsewhere; and DRAEM-style
  (Zavrtanik et al., ICCV 2021) smooth-noise masks filled with a procedural foreign texture. It scores extra
  sets on held-out normals and never feeds the method.
* **Method family** (``METHOD_KINDS``; the ``defect_safe`` scorer, which may only use the shots): smooth-noise
  masks filled with the shot's own content moved elsewhere and tinted (``self_blend``), and soft stains that
  darken or lighten and tint a blob (``stain``).

Neither is the family that builds the embedded dataset's test defects (``tgad.data.defects``: scratches,
holes, stains drawn with shading, foreign photographs), so numbers on the embedded test split do not flatter
what is tuned on either. Everything is a function of the image and a ``torch.Generator``.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torchvision.transforms.v2 import functional as TF

VALIDATION_KINDS = ("cutpaste_patch", "cutpaste_scar", "perlin_texture")
METHOD_KINDS = ("self_blend", "stain")


class Defects(NamedTuple):
    images: torch.Tensor  # (N, 3, H, W) in [0, 1]
    masks: torch.Tensor  # (N, H, W) bool, where the defect changed the image
    kinds: list[str]


def _rand(generator: torch.Generator, low: float = 0.0, high: float = 1.0) -> float:
    return low + (high - low) * float(torch.rand((), generator=generator))


def smooth_noise_mask(
    height: int, width: int, area: float, generator: torch.Generator, max_blobs: int = 3
) -> torch.Tensor:
    """(H, W) bool: a thresholded low-frequency noise field (Perlin-like blobs) covering ~``area`` of the image,
    restricted to a random window so that it forms one to ``max_blobs`` blobs rather than speckle."""
    cells = int(torch.randint(3, 8, (), generator=generator))
    noise = torch.rand(1, 1, cells, cells, generator=generator)
    field = F.interpolate(noise, size=(height, width), mode="bicubic", align_corners=False)[0, 0]  # (H, W)
    side = math.sqrt(area * max_blobs) * 1.6  # window side (fraction of the image) that holds the blobs
    side = min(1.0, max(side, math.sqrt(area) * 1.2))
    wh, ww = max(2, round(side * height)), max(2, round(side * width))
    top = int(torch.randint(0, height - wh + 1, (), generator=generator))
    left = int(torch.randint(0, width - ww + 1, (), generator=generator))
    window = torch.zeros(height, width, dtype=torch.bool)
    window[top : top + wh, left : left + ww] = True
    values = field[window]
    keep = max(1, round(area * height * width))
    threshold = values.flatten().kthvalue(max(1, values.numel() - keep + 1)).values
    return window & (field >= threshold)


def procedural_texture(height: int, width: int, generator: torch.Generator) -> torch.Tensor:
    """(3, H, W) a foreign texture: a few oriented gratings at random frequencies plus grain, in two random
    colours (DRAEM fills its masks from DTD photographs; offline, a procedural texture plays that part)."""
    y, x = torch.meshgrid(torch.linspace(0, 1, height), torch.linspace(0, 1, width), indexing="ij")
    field = torch.zeros(height, width)
    for _ in range(3):
        angle, freq, phase = _rand(generator, 0, math.pi), _rand(generator, 4, 40), _rand(generator, 0, 6.3)
        field += torch.sin(2 * math.pi * freq * (x * math.cos(angle) + y * math.sin(angle)) + phase)
    field = field + 0.8 * torch.randn(height, width, generator=generator)
    field = (field - field.min()) / (field.max() - field.min()).clamp_min(1e-6)  # (H, W) in [0, 1]
    a, b = torch.rand(3, generator=generator), torch.rand(3, generator=generator)
    return a.view(3, 1, 1) * field + b.view(3, 1, 1) * (1 - field)


def _tint(image: torch.Tensor, generator: torch.Generator, strength: float) -> torch.Tensor:
    gain = 1 + strength * (2 * torch.rand(3, 1, 1, generator=generator) - 1)
    return (image * gain).clamp(0, 1)


def _cutpaste(
    image: torch.Tensor, generator: torch.Generator, scar: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    _, h, w = image.shape
    if scar:  # a thin long strip (2-8 % of the side by 10-25 %), rotated by any angle
        ph, pw = (
            max(2, round(_rand(generator, 0.02, 0.08) * h)),
            max(4, round(_rand(generator, 0.10, 0.25) * w)),
        )
    else:  # a patch of 2-10 % of the area with aspect ratio 0.3-3.3
        area, ratio = _rand(generator, 0.02, 0.10) * h * w, math.exp(_rand(generator, -1.2, 1.2))
        ph = min(h - 1, max(2, round(math.sqrt(area * ratio))))
        pw = min(w - 1, max(2, round(math.sqrt(area / ratio))))
    sy, sx = (
        int(torch.randint(0, h - ph + 1, (), generator=generator)),
        int(torch.randint(0, w - pw + 1, (), generator=generator)),
    )
    patch = _tint(image[:, sy : sy + ph, sx : sx + pw], generator, 0.25)  # (3, ph, pw)
    layer, alpha = torch.zeros_like(image), torch.zeros(1, h, w)
    ty, tx = (
        int(torch.randint(0, h - ph + 1, (), generator=generator)),
        int(torch.randint(0, w - pw + 1, (), generator=generator)),
    )
    layer[:, ty : ty + ph, tx : tx + pw] = patch
    alpha[:, ty : ty + ph, tx : tx + pw] = 1.0
    if scar:
        angle = _rand(generator, -90, 90)
        centre = [tx + pw / 2, ty + ph / 2]
        layer = TF.affine(layer, angle=angle, translate=[0, 0], scale=1.0, shear=[0.0], center=centre)
        alpha = TF.affine(alpha, angle=angle, translate=[0, 0], scale=1.0, shear=[0.0], center=centre)
    mask = alpha[0] > 0.5
    return torch.where(mask, layer, image), mask


def _blend_in(image: torch.Tensor, fill: torch.Tensor, mask: torch.Tensor, opacity: float) -> torch.Tensor:
    soft = F.avg_pool2d(mask[None, None].float(), 3, 1, 1)[0] * mask  # (1, H, W), hard outside the mask
    return image * (1 - opacity * soft) + fill * opacity * soft


def make_defect(
    image: torch.Tensor, kind: str, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """One defect of ``kind`` on ``image`` (3, H, W) in [0, 1]: (defective image, (H, W) bool mask). The image
    is unchanged outside the mask."""
    _, h, w = image.shape
    if kind in ("cutpaste_patch", "cutpaste_scar"):
        return _cutpaste(image, generator, scar=kind == "cutpaste_scar")
    mask = smooth_noise_mask(h, w, _rand(generator, 0.01, 0.05), generator)
    if kind == "perlin_texture":
        fill, opacity = procedural_texture(h, w, generator), _rand(generator, 0.5, 1.0)
    elif kind == "self_blend":  # the image's own content from elsewhere (rolled), tinted
        dy, dx = (
            int(torch.randint(h // 4, 3 * h // 4, (), generator=generator)),
            int(torch.randint(w // 4, 3 * w // 4, (), generator=generator)),
        )
        fill, opacity = _tint(image.roll((dy, dx), dims=(1, 2)), generator, 0.3), _rand(generator, 0.6, 1.0)
    elif kind == "stain":  # darker or lighter, tinted
        factor = _rand(generator, 0.35, 0.7) if _rand(generator) < 0.6 else _rand(generator, 1.35, 1.8)
        fill, opacity = _tint(image * factor, generator, 0.2), _rand(generator, 0.6, 1.0)
    else:
        raise ValueError(f"synthetic defect kind {kind!r}: choose from {VALIDATION_KINDS + METHOD_KINDS}")
    out = _blend_in(image, fill, mask, opacity).clamp(0, 1)
    return torch.where(mask, out, image), mask


def make_defects(images: torch.Tensor, per_image: int, kinds: tuple[str, ...], seed: int) -> Defects:
    """``per_image`` defects of every image in ``images`` (N, 3, H, W), kinds taken in turn; seeded."""
    generator = torch.Generator().manual_seed(seed)
    out, masks, names = [], [], []
    for index, image in enumerate(images):
        for j in range(per_image):
            kind = kinds[(index * per_image + j) % len(kinds)]
            defective, mask = make_defect(image.float(), kind, generator)
            out.append(defective)
            masks.append(mask)
            names.append(kind)
    return Defects(torch.stack(out), torch.stack(masks), names)
