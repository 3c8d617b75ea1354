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
# Issue 23: the validation family by name. ``v1`` is the coarse, high-contrast family above (CutPaste patches
# of 2-10 % of the area, opaque textures); ``v2`` draws defects at the scale and kind of real ones (thin
# scratches, small missing parts, misplaced or bent parts, subtle colour spots; see the section at the end).
V2_KINDS = ("thin_scratch", "missing_part", "misplaced_part", "colour_spot")
VALIDATION_FAMILIES = {"v1": VALIDATION_KINDS, "v2": V2_KINDS}


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
    if kind in V2_KINDS:
        return _real_scale_defect(image, kind, generator)
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
        raise ValueError(
            f"synthetic defect kind {kind!r}: choose from {VALIDATION_KINDS + V2_KINDS + METHOD_KINDS}"
        )
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


# --- v2: defects at the scale and kind of real ones (issue 23) ----------------------------------------------
# Real defects in MVTec-like classes are thin scratches, small missing or bent parts, a part out of place and
# subtle colour spots, a fraction of a percent of the image; v1's 2-10 % high-contrast patches are far easier.
# Every v2 defect is placed on the object (see ``_object_centre``) and its mask is exact: the pixels where some
# channel moved by more than ``CHANGE_THRESHOLD``; every other pixel is returned unchanged.
CHANGE_THRESHOLD = 1 / 255  # less than one grey level of an 8-bit image is no visible change


def _object_centre(image: torch.Tensor, generator: torch.Generator, margin: int) -> tuple[int, int]:
    """A defect centre drawn with weight = the blurred colour distance from the image border's median colour
    (the background of an object class; every pixel of a texture), at least ``margin`` px from the border."""
    _, h, w = image.shape
    border = torch.cat([image[:, 0], image[:, -1], image[:, :, 0], image[:, :, -1]], dim=1)  # (3, 2H+2W)
    weight = (image - border.median(dim=1).values.view(3, 1, 1)).abs().sum(0)  # (H, W)
    weight = F.avg_pool2d(weight[None, None], 9, 1, 4, count_include_pad=False)[0, 0]
    weight = weight + 0.02 * weight.max() + 1e-6  # a flat image still gets centres
    my, mx = min(margin, (h - 1) // 2), min(margin, (w - 1) // 2)
    inside = torch.zeros_like(weight)
    inside[my : h - my, mx : w - mx] = 1
    index = int(torch.multinomial((weight * inside).flatten(), 1, generator=generator))
    return index // w, index % w


def _blob(
    image: torch.Tensor, area: float, generator: torch.Generator, reach: float = 1.0
) -> tuple[torch.Tensor, float]:
    """((H, W) field f, equal-area radius): an irregular ellipse on the object whose region f <= 1 covers
    ``area`` of the image to the pixel; f grows outwards, so f <= ``reach`` is a larger concentric region."""
    _, h, w = image.shape
    pixels = max(4, round(area * h * w))
    radius = math.sqrt(pixels / math.pi)
    aspect, theta = math.exp(_rand(generator, -0.6, 0.6)), _rand(generator, 0, math.pi)
    wobble = (
        _rand(generator, 0, 0.2),
        _rand(generator, 0, 6.3),
        _rand(generator, 0, 0.1),
        _rand(generator, 0, 6.3),
    )
    cy, cx = _object_centre(image, generator, math.ceil(2.4 * radius * reach) + 10)
    yy, xx = torch.meshgrid(torch.arange(h) - cy, torch.arange(w) - cx, indexing="ij")  # (H, W) each
    u = xx * math.cos(theta) + yy * math.sin(theta)
    v = -xx * math.sin(theta) + yy * math.cos(theta)
    angle = torch.atan2(v, u)
    scale = 1 + wobble[0] * torch.sin(2 * angle + wobble[1]) + wobble[2] * torch.sin(3 * angle + wobble[3])
    field = torch.sqrt((u / aspect) ** 2 + (v * aspect) ** 2) / scale
    return field / field.flatten().kthvalue(pixels).values.clamp_min(1e-6), radius


def _box(region: torch.Tensor, margin: int) -> tuple[slice, slice]:
    """The bounding box of ``region`` (H, W) bool grown by ``margin`` px, clipped to the image."""
    rows, cols = region.any(1).nonzero()[:, 0], region.any(0).nonzero()[:, 0]
    h, w = region.shape
    return (
        slice(max(0, int(rows[0]) - margin), min(h, int(rows[-1]) + margin + 1)),
        slice(max(0, int(cols[0]) - margin), min(w, int(cols[-1]) + margin + 1)),
    )


def _thin_scratch(image: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """A 1-2 px curved stroke (quadratic Bezier, chord 10-30 % of the side), lighter or darker by 0.15-0.35
    (towards the side with room), slightly tinted and blurred."""
    _, h, w = image.shape
    length, angle = _rand(generator, 0.10, 0.30) * min(h, w), _rand(generator, 0, math.pi)
    width, bend, shift = _rand(generator, 1, 2), _rand(generator, -0.25, 0.25), _rand(generator, 0.15, 0.35)
    sigma, tint = _rand(generator, 0.5, 0.8), 1 + 0.1 * (2 * torch.rand(3, 1, 1, generator=generator) - 1)
    cy, cx = _object_centre(image, generator, math.ceil(length * 0.6) + 4)
    along = torch.tensor([math.sin(angle), math.cos(angle)])  # (y, x)
    across = torch.tensor([-along[1], along[0]])
    centre = torch.tensor([float(cy), float(cx)])
    p0, p2 = centre - along * length / 2, centre + along * length / 2
    p1 = centre + across * bend * length * 2  # the curve's apex lies bend * length from the chord
    t = torch.linspace(0, 1, max(16, round(3 * length)))[:, None]  # (T, 1)
    points = (1 - t) ** 2 * p0 + 2 * (1 - t) * t * p1 + t**2 * p2  # (T, 2)
    hull = torch.zeros(h, w, dtype=torch.bool)
    ys, xs = points.round().long().T
    hull[ys.clamp(0, h - 1), xs.clamp(0, w - 1)] = True
    rows, cols = _box(hull, 4)
    yy, xx = torch.meshgrid(
        torch.arange(rows.start, rows.stop).float(),
        torch.arange(cols.start, cols.stop).float(),
        indexing="ij",
    )
    grid = torch.stack([yy, xx], -1).reshape(-1, 2)  # (h'*w', 2)
    dist = torch.cdist(grid, points).amin(1).reshape(yy.shape)  # (h', w') distance to the stroke
    cover = (width / 2 + 0.5 - dist).clamp(0, 1)  # antialiased stroke of ``width`` px
    k = torch.exp(-(torch.arange(-1, 2).float() ** 2) / (2 * sigma**2))
    kernel = (k[:, None] * k[None]) / (k.sum() ** 2)  # (3, 3) Gaussian blur
    cover = F.conv2d(cover[None, None], kernel[None, None], padding=1)[0]  # (1, h', w')
    crop = image[:, rows, cols]
    sign = -1.0 if float((crop * cover).sum() / (3 * cover.sum())) > 0.5 else 1.0
    out = image.clone()
    out[:, rows, cols] = crop + sign * shift * tint * cover
    return out


def _missing_part(image: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """A blob of 0.3-1.5 % of the area whose content is replaced by a diffusion of its surroundings (Jacobi
    iterations of the Laplace equation from the blob's border inwards): the part is gone, the hole is smooth."""
    field, radius = _blob(image, _rand(generator, 0.003, 0.015), generator)
    region = field <= 1
    rows, cols = _box(region, 2)
    hole, known = region[rows, cols], image[:, rows, cols]
    ring = F.max_pool2d(hole[None, None].float(), 3, 1, 1)[0, 0].bool() & ~hole  # the border just outside
    fill = torch.where(hole, known[:, ring].mean(1, keepdim=True)[..., None], known)  # (3, h', w')
    for _ in range(min(400, round(2 * radius**2) + 20)):  # enough sweeps to converge on a blob of this radius
        smooth = F.avg_pool2d(fill[None], 3, 1, 1, count_include_pad=False)[0]
        fill = torch.where(hole, smooth, known)
    out = image.clone()
    out[:, rows, cols] = fill
    return out


def _misplaced_part(image: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """A part of 1-3 % of the area displaced by 3-8 px: either moved whole (feathered over ~3 px at its edge)
    or bent (the displacement fades smoothly from its centre). Only geometry changes: pixels are resampled."""
    _, h, w = image.shape
    bent = _rand(generator) < 0.5
    field, radius = _blob(image, _rand(generator, 0.01, 0.03), generator, reach=1.3)
    distance, direction = _rand(generator, 3, 8), _rand(generator, 0, 2 * math.pi)
    if bent:
        weight = torch.cos(math.pi / 2 * (field / 1.3).clamp(max=1)) ** 2  # 1 at the centre, 0 beyond 1.3
    else:
        feather = 3 / radius  # about 3 px of the field
        ramp = ((1 + feather - field) / feather).clamp(0, 1)
        weight = ramp * ramp * (3 - 2 * ramp)  # smoothstep: 1 inside the part, 0 beyond its feathered edge
    yy, xx = torch.meshgrid(torch.arange(h).float(), torch.arange(w).float(), indexing="ij")
    sy = yy - distance * math.sin(direction) * weight  # where each pixel's content comes from
    sx = xx - distance * math.cos(direction) * weight
    grid = torch.stack([2 * sx / (w - 1) - 1, 2 * sy / (h - 1) - 1], -1)[None]  # (1, H, W, 2) as (x, y)
    moved = F.grid_sample(image[None], grid, mode="bilinear", padding_mode="border", align_corners=True)[0]
    return torch.where(weight > 0, moved, image)


def _colour_spot(image: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """A soft blob of 0.2-1 % of the area (flat core, cosine edge) shifted by 5-15 % in brightness and hue:
    a direction in RGB mixing an overall lighter/darker part with a random tint."""
    field, _ = _blob(image, _rand(generator, 0.002, 0.01), generator)
    alpha = 0.5 * (1 + torch.cos(math.pi * ((field - 0.5) / 0.5).clamp(0, 1)))  # (H, W): 1 in, 0 from f=1
    strength = _rand(generator, 0.05, 0.15)
    inside = image[:, field <= 1]
    sign = -1.0 if float(inside.mean()) > 0.5 else 1.0
    direction = sign * _rand(generator, 0.3, 1.0) + (2 * torch.rand(3, generator=generator) - 1)  # (3,)
    direction = direction / direction.abs().max().clamp_min(1e-6)
    return image + strength * direction.view(3, 1, 1) * alpha


_V2_MAKERS = {
    "thin_scratch": _thin_scratch,
    "missing_part": _missing_part,
    "misplaced_part": _misplaced_part,
    "colour_spot": _colour_spot,
}


def _real_scale_defect(
    image: torch.Tensor, kind: str, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """(defective image, exact (H, W) bool mask) of a v2 ``kind``: pixels that moved by at most
    ``CHANGE_THRESHOLD`` are reset, so the image is unchanged outside the mask and changed inside it."""
    out = _V2_MAKERS[kind](image, generator).clamp(0, 1)
    mask = (out - image).abs().amax(0) > CHANGE_THRESHOLD
    return torch.where(mask, out, image), mask
