"""Synthetic surface defects of graded severity with exact masks: the anomalies of the embedded dataset.

Every defect is an alpha blend of a defect layer over the image, drawn at one of ``SEVERITIES``: ``obvious``
is the full-size, full-contrast defect, ``medium`` and ``subtle`` are smaller and fainter members of the same
family (a short hairline scratch, a pinhole, a faint stain, a small translucent fleck), so that a detector's
AUROC says how much it sees rather than sitting at 1.0. The mask is exact at 8 bits: the pixels inside the
defect's footprint (``alpha > ALPHA_THRESHOLD``) whose 8-bit value the defect changed; every other pixel is
restored to the input, so mask == (``to_u8(out) != to_u8(image)``) holds pixel for pixel.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from scipy.ndimage import shift, zoom

DEFECT_TYPES = ("scratch", "hole", "stain", "foreign")
SEVERITIES = ("subtle", "medium", "obvious")
ALPHA_THRESHOLD = 0.1


class Grade(NamedTuple):
    """How big and how strong one severity of one defect type is, as uniform ranges (lo, hi)."""

    size: tuple[float, float]  # scratch: length; others: blob radius; both as a fraction of the image side
    strength: tuple[float, float]  # fraction of the full defect's colour change that is applied
    width: tuple[float, float] = (0.0, 0.0)  # scratch only: line width in pixels at 256 px


# The severity table is data: one family of defects for every category and every condition. ``medium`` is
# about the builder-version-1 defect, ``obvious`` larger and bolder, ``subtle`` a few pixels across and faint.
# Strength scales the colour change, not the footprint, so a faint defect keeps its shape.
GRADES: dict[str, dict[str, Grade]] = {
    "scratch": {
        "subtle": Grade(size=(0.05, 0.10), strength=(0.35, 0.50), width=(1.0, 1.5)),
        "medium": Grade(size=(0.30, 0.60), strength=(0.80, 1.0), width=(1.8, 3.0)),
        "obvious": Grade(size=(0.45, 0.80), strength=(0.90, 1.0), width=(3.0, 5.0)),
    },
    "hole": {
        "subtle": Grade(size=(0.014, 0.022), strength=(0.45, 0.65)),
        "medium": Grade(size=(0.045, 0.075), strength=(0.90, 1.0)),
        "obvious": Grade(size=(0.070, 0.110), strength=(1.0, 1.0)),
    },
    "stain": {
        "subtle": Grade(size=(0.05, 0.09), strength=(0.18, 0.28)),
        "medium": Grade(size=(0.09, 0.14), strength=(0.75, 0.90)),
        "obvious": Grade(size=(0.13, 0.20), strength=(0.90, 1.0)),
    },
    "foreign": {
        "subtle": Grade(size=(0.022, 0.035), strength=(0.45, 0.65)),
        "medium": Grade(size=(0.065, 0.100), strength=(0.90, 1.0)),
        "obvious": Grade(size=(0.100, 0.160), strength=(1.0, 1.0)),
    },
}

# Light comes from the upper left in every defect, so shading is consistent across an image.
_LIGHT = np.array([-0.7071, -0.7071])  # (dy, dx), unit vector pointing towards the light

# Stains: rust and oil soak in (per-channel multipliers that darken and tint); chalk is a pale deposit that
# lightens (a blend towards the colour).
_STAIN_MULTIPLY = {"rust": (0.80, 0.46, 0.24), "oil": (0.30, 0.27, 0.22)}
_STAIN_DEPOSIT = {"chalk": (0.93, 0.91, 0.84)}


class Defect(NamedTuple):
    image: np.ndarray  # (H, W, 3) float32 in [0, 1]
    mask: np.ndarray  # (H, W) bool, True exactly where the defect changed the image's 8-bit value


def to_u8(image: np.ndarray) -> np.ndarray:
    """Float [0, 1] to uint8 by rounding: the one quantisation the masks are exact for."""
    return np.clip(np.rint(image * 255.0), 0, 255).astype(np.uint8)


def make_defect(
    image: np.ndarray,
    kind: str,
    rng: np.random.Generator,
    foreign: np.ndarray | None = None,
    severity: str = "obvious",
) -> Defect:
    """Apply one defect of type ``kind`` and ``severity`` to a float RGB image at a random place and size.

    Args:
        image: (H, W, 3) float in [0, 1], the defect-free image.
        kind: one of ``DEFECT_TYPES``.
        rng: the only source of randomness, so a seeded generator gives the same defect every time.
        foreign: (H, W, 3) float in [0, 1], another material's image; required for ``kind="foreign"``.
        severity: one of ``SEVERITIES``; sets size and strength from ``GRADES``.

    Returns:
        Defect with the defective image (identical to ``image`` outside the mask) and its mask, which is
        exactly the pixels whose ``to_u8`` value differs from the input's.
    """
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"make_defect: image must be (H, W, 3), got shape {image.shape}")
    if kind not in DEFECT_TYPES:
        raise ValueError(f"make_defect: unknown defect kind {kind!r}; valid kinds: {', '.join(DEFECT_TYPES)}")
    if severity not in SEVERITIES:
        raise ValueError(
            f"make_defect: unknown severity {severity!r}; valid severities: {', '.join(SEVERITIES)}"
        )
    image = image.astype(np.float32, copy=False)
    grade = GRADES[kind][severity]
    if kind == "scratch":
        blended, alpha = _scratch(image, rng, grade)
    elif kind == "hole":
        blended, alpha = _hole(image, rng, grade)
    elif kind == "stain":
        blended, alpha = _stain(image, rng, grade)
    else:
        if foreign is None or foreign.shape != image.shape:
            got = None if foreign is None else foreign.shape
            raise ValueError(f"make_defect: kind='foreign' needs foreign= of shape {image.shape}, got {got}")
        blended, alpha = _foreign(image, foreign.astype(np.float32, copy=False), rng, grade)
    strength = rng.uniform(*grade.strength)
    changed = np.clip(image + strength * (blended - image), 0.0, 1.0)
    mask = (alpha > ALPHA_THRESHOLD) & (to_u8(changed) != to_u8(image)).any(-1)
    out = np.where(mask[..., None], changed, image).astype(np.float32)
    return Defect(out, mask)


def _blend(base: np.ndarray, layer: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    return base * (1.0 - alpha[..., None]) + layer * alpha[..., None]


def _hue(image: np.ndarray) -> np.ndarray:
    """The image's mean colour, scaled so its brightest channel is 1: keeps synthetic layers in its tint."""
    mean = image.reshape(-1, 3).mean(0)
    return (mean / max(float(mean.max()), 1e-6)).astype(np.float32)


class _Blob(NamedTuple):
    rho: np.ndarray  # (H, W) radial coordinate, < 1 inside the outline
    u: np.ndarray  # (H, W) coordinate along the light direction, in radii (-1..1 across the blob)
    radius: float  # mean radius in pixels


def _blob(
    h: int, w: int, rng: np.random.Generator, radius: float, irregularity: float, harmonics: int = 5
) -> _Blob:
    """An irregular ellipse at a random place: the outline radius is 1 + a random low-order Fourier series."""
    aspect = rng.uniform(0.55, 1.0)
    angle = rng.uniform(0.0, np.pi)
    margin = radius * 0.8
    cy, cx = rng.uniform(margin, h - margin), rng.uniform(margin, w - margin)
    amps = rng.uniform(0.0, irregularity, harmonics - 1) / np.arange(2, harmonics + 1)
    phases = rng.uniform(0.0, 2 * np.pi, harmonics - 1)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)  # (H, W) each
    dy, dx = yy - cy, xx - cx
    cos, sin = np.cos(angle), np.sin(angle)
    a = (dx * cos + dy * sin) / radius  # along the major axis, in radii
    b = (-dx * sin + dy * cos) / (radius * aspect)
    r = np.sqrt(a * a + b * b)
    theta = np.arctan2(b, a)
    outline = 1.0 + sum(
        amp * np.cos(k * theta + ph) for k, amp, ph in zip(range(2, harmonics + 1), amps, phases, strict=True)
    )
    u = (dy * _LIGHT[0] + dx * _LIGHT[1]) / radius
    return _Blob((r / outline).astype(np.float32), u.astype(np.float32), radius)


def _edge(blob: _Blob, width_px: float) -> np.ndarray:
    """Anti-aliased inside-ness: 1 inside, 0 outside, a linear ramp ``width_px`` wide across the outline."""
    return np.clip((1.0 - blob.rho) * blob.radius / width_px + 0.5, 0.0, 1.0)


def _scratch(image: np.ndarray, rng: np.random.Generator, grade: Grade) -> tuple[np.ndarray, np.ndarray]:
    """A thin curved line (quadratic Bezier) drawn with anti-aliasing, tapered at both ends."""
    h, w = image.shape[:2]
    size = min(h, w)
    scale = size / 256
    length = rng.uniform(*grade.size) * size
    width = max(rng.uniform(*grade.width) * scale, 1.0)
    angle = rng.uniform(0.0, 2 * np.pi)
    direction = np.array([np.sin(angle), np.cos(angle)])  # (dy, dx)
    centre = np.array([rng.uniform(0.25, 0.75) * h, rng.uniform(0.25, 0.75) * w])
    p0, p2 = centre - direction * length / 2, centre + direction * length / 2
    bend = rng.uniform(-0.25, 0.25) * length
    p1 = centre + np.array([-direction[1], direction[0]]) * bend
    t = np.linspace(0.0, 1.0, 49)[:, None]
    pts = (1 - t) ** 2 * p0 + 2 * (1 - t) * t * p1 + t**2 * p2  # (49, 2) curve samples
    a, b = pts[:-1], pts[1:]  # (48, 2) segments

    # Distances only inside the curve's bounding box (plus the line width): the rest stays untouched.
    pad = width + 3
    y0, x0 = (max(int(np.floor(pts[:, i].min() - pad)), 0) for i in (0, 1))
    y1, x1 = (min(int(np.ceil(pts[:, i].max() + pad)), n) for i, n in ((0, h), (1, w)))
    yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)  # (h', w') each
    p = np.stack([yy.ravel(), xx.ravel()], 1)  # (h'*w', 2)
    ab = b - a
    # Projection of every pixel onto every segment: (h'*w', 48).
    s = ((p[:, None, :] - a[None]) * ab[None]).sum(-1) / (ab * ab).sum(-1)[None]
    s = np.clip(s, 0.0, 1.0)
    near = a[None] + s[..., None] * ab[None]
    dist = np.sqrt(((p[:, None, :] - near) ** 2).sum(-1))
    seg = dist.argmin(1)
    rows = np.arange(len(p))
    d = np.full((h, w), np.inf, dtype=np.float32)
    along = np.zeros((h, w), dtype=np.float32)
    d[y0:y1, x0:x1] = dist[rows, seg].reshape(y1 - y0, x1 - x0)
    along[y0:y1, x0:x1] = ((seg + s[rows, seg]) / len(ab)).reshape(y1 - y0, x1 - x0)  # 0..1 along the curve
    taper = np.clip(np.minimum(along, 1.0 - along) / 0.15, 0.0, 1.0)
    half = width / 2 * (0.4 + 0.6 * taper)
    alpha = np.clip(half + 0.5 - d, 0.0, 1.0) * (0.3 + 0.7 * taper)

    if rng.random() < 0.75:  # bright: the scratch exposes shiny material under the surface
        tone = rng.uniform(0.88, 1.0)
    else:  # dark: a groove in shadow
        tone = rng.uniform(0.04, 0.14)
    layer = np.full_like(image, tone) * (0.85 + 0.15 * _hue(image))
    return _blend(image, layer, alpha), alpha.astype(np.float32)


def _hole(image: np.ndarray, rng: np.random.Generator, grade: Grade) -> tuple[np.ndarray, np.ndarray]:
    """A dark, roughly elliptical pit with a lit far wall and a slightly raised bright rim."""
    h, w = image.shape[:2]
    size = min(h, w)
    blob = _blob(h, w, rng, radius=rng.uniform(*grade.size) * size, irregularity=0.25)
    inside = _edge(blob, width_px=max(1.2 * size / 256, 0.8))
    # Light enters from the upper left, so the wall on the far (lower right) side is lit near the rim.
    lit = np.clip(-blob.u, 0.0, 1.0) * np.clip(blob.rho, 0.0, 1.0) ** 2
    base = rng.uniform(0.03, 0.10)
    interior = base + 0.22 * lit[..., None] + 0.12 * image  # a trace of the texture survives in the pit
    interior = interior * _hue(image)
    out = _blend(image, interior, inside)
    # Rim: a narrow ring just outside the outline, brighter on the side facing the light.
    ring = np.exp(-(((blob.rho - 1.08) / 0.09) ** 2)) * (blob.rho > 0.9)
    rim_alpha = ring * (0.35 + 0.35 * np.clip(blob.u, 0.0, 1.0)) * (1.0 - inside)
    out = _blend(out, 0.45 + 0.55 * image, rim_alpha)
    alpha = 1.0 - (1.0 - inside) * (1.0 - rim_alpha)
    return out, alpha.astype(np.float32)


def _smooth_noise(h: int, w: int, rng: np.random.Generator, cells: int) -> np.ndarray:
    """Smooth value noise in [0, 1]: a coarse random grid upsampled with cubic splines."""
    coarse = rng.random((cells + 1, cells + 1)).astype(np.float32)
    return np.clip(zoom(coarse, (h / (cells + 1), w / (cells + 1)), order=3), 0.0, 1.0)[:h, :w]


def _stain(image: np.ndarray, rng: np.random.Generator, grade: Grade) -> tuple[np.ndarray, np.ndarray]:
    """A smooth-edged, irregular blot of rust or oil soaked into the surface, or a chalky deposit on it."""
    h, w = image.shape[:2]
    size = min(h, w)
    blob = _blob(h, w, rng, radius=rng.uniform(*grade.size) * size, irregularity=0.45, harmonics=7)
    soft = _edge(blob, width_px=blob.radius * rng.uniform(0.25, 0.45))
    density = 0.65 + 0.35 * _smooth_noise(h, w, rng, cells=6)  # uneven soaking
    # A darker tide line just inside the edge, as where a drop of liquid dried.
    tide = 0.25 * np.exp(-(((blob.rho - 0.85) / 0.12) ** 2))
    alpha = np.clip(soft * (density + tide), 0.0, 1.0)
    name = ("rust", "oil", "chalk")[rng.integers(3)]
    if name in _STAIN_MULTIPLY:
        layer = image * np.array(_STAIN_MULTIPLY[name], dtype=np.float32)
    else:
        layer = 0.35 * image + 0.65 * np.array(_STAIN_DEPOSIT[name], dtype=np.float32)
    return _blend(image, layer, alpha), alpha.astype(np.float32)


def _foreign(
    image: np.ndarray, foreign: np.ndarray, rng: np.random.Generator, grade: Grade
) -> tuple[np.ndarray, np.ndarray]:
    """A piece of another material lying on the surface, with a crisp irregular outline and a soft shadow."""
    h, w = image.shape[:2]
    size = min(h, w)
    blob = _blob(h, w, rng, radius=rng.uniform(*grade.size) * size, irregularity=0.4, harmonics=6)
    piece = _edge(blob, width_px=max(1.0 * size / 256, 0.7))
    # Contact shadow: the blob moved away from the light, blurred; it only darkens, never lightens.
    shift = blob.radius * 0.12
    dy, dx = -_LIGHT * shift
    shadow = _shifted(np.clip((1.2 - blob.rho) / 0.35, 0.0, 1.0), dy, dx) * 0.45
    out = _blend(image, image * 0.35, shadow)
    layer = np.clip(foreign * rng.uniform(0.85, 1.15), 0.0, 1.0)
    out = _blend(out, layer, piece)
    alpha = 1.0 - (1.0 - piece) * (1.0 - shadow)
    return out, alpha.astype(np.float32)


def _shifted(field: np.ndarray, dy: float, dx: float) -> np.ndarray:
    """``field`` moved by (dy, dx) pixels with linear interpolation; zeros enter at the borders."""
    return np.clip(shift(field, (dy, dx), order=1, mode="constant", cval=0.0), 0.0, 1.0)
