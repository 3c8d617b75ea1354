"""Rigid registration of shots to a reference shot, so that "the same position" of two shots shows the same
part of the object when parts lie turned or shifted between images (screws, hazelnuts, metal nuts), as RegAD
registers its support set. Pure functions on tensors, no Lightning.

The search is coarse to fine on gradient-magnitude images: every ``coarse_step`` degrees over the full turn at 64 px, then
1-degree steps around the best at 128 px, with a parabola through the scores for a sub-degree angle; for each
angle the translation is the peak of an FFT cross-correlation (sub-pixel by a parabola). Both images are
weighted by a round window, so the corners a rotation uncovers never count. Flips are never tried: a flipped
metal nut is a defect, not a pose. About 0.2 s per shot at 256 px on one CPU thread (of a loaded machine).

Conventions: ``angle`` (degrees) and ``shift`` (dx, dy in pixels, x right, y down) say how the moving image
was made from the reference: its content is the reference's turned counter-clockwise (as seen) by ``angle``
about the image centre, then moved by ``shift``: torchvision's ``affine(ref, -angle, shift)`` (its angle
turns clockwise).
"""

from __future__ import annotations

import math
from typing import Literal, NamedTuple

import torch
import torch.nn.functional as F

RegisterMode = Literal["none", "rigid", "auto"]
REGISTER_MODES = ("none", "rigid", "auto")
# auto: a rigid fit is used where it beats the identity's windowed correlation by AUTO_MARGIN and moves the
# image by at least AUTO_MIN_MOTION of its side (4 px at 256 px: half a latent cell of the cpu preset's f8);
# smaller motions barely change which latent position sees what. MVTec AD measurements: README, Method notes.
AUTO_MARGIN = 0.1
AUTO_MIN_MOTION = 1 / 64


class RigidFit(NamedTuple):
    angle: float  # degrees, counter-clockwise as seen
    shift: tuple[float, float]  # (dx, dy) pixels at the input size
    score: float  # windowed normalised correlation at the fit, in [-1, 1]
    identity_score: float  # the same for angle 0 and shift 0


class ShotRegistration(NamedTuple):
    """What was done to one shot: the fit found (always recorded) and whether it is used."""

    shot: int
    angle: float
    shift: tuple[float, float]
    score: float
    identity_score: float
    registered: bool  # True: aligned by the rigid fit; False: the identity (the reference, or no clear gain)

    def as_dict(self) -> dict:
        return {
            "shot": self.shot,
            "angle": round(self.angle, 3),
            "shift": [round(self.shift[0], 3), round(self.shift[1], 3)],
            "score": round(self.score, 4),
            "identity_score": round(self.identity_score, 4),
            "registered": self.registered,
        }


class Warped(NamedTuple):
    images: torch.Tensor  # (N, C, H, W), zeros outside the source frame
    valid: torch.Tensor  # (N, 1, H, W) 1.0 where every sampled pixel lay inside the source frame


def rigid_theta(angle: float, shift: tuple[float, float], height: int, width: int) -> torch.Tensor:
    """The (2, 3) ``affine_grid`` matrix (normalised coordinates, align_corners=False) that maps a reference
    position to where the moving image shows it: warping the moving image with it aligns it to the reference.
    Rotations are built in pixel units, so non-square images turn without shearing."""
    a = math.radians(angle)
    cos, sin = math.cos(a), math.sin(a)
    # pixel offsets from the centre -> normalised: x_n = 2 x / W, y_n = 2 y / H
    return torch.tensor(
        [
            [cos, sin * height / width, 2 * shift[0] / width],
            [-sin * width / height, cos, 2 * shift[1] / height],
        ],
        dtype=torch.float32,
    )


def warp(images: torch.Tensor, theta: torch.Tensor) -> Warped:
    """Sample ``images`` (N, C, H, W) at ``theta`` (N, 2, 3): out(p) = images(theta p), bilinear."""
    grid = F.affine_grid(theta.to(images), list(images.shape), align_corners=False)  # (N, H, W, 2)
    out = F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    ones = images.new_ones(len(images), 1, *images.shape[-2:])
    inside = F.grid_sample(ones, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return Warped(out, (inside > 0.999).to(images.dtype))


def _edges(image: torch.Tensor, size: int) -> torch.Tensor:
    """(3, H, W) -> (1, 1, size, size): gradient magnitude of the antialiased luminance. Edges rather than
    grey levels: on MVTec AD they gave the turned hazelnuts and the shifted transistors 1.5-3x the identity's
    score gain of grey levels, and they ignore a change of illumination."""
    grey = (0.299 * image[0] + 0.587 * image[1] + 0.114 * image[2])[None, None].float()
    grey = F.interpolate(grey, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    gx = F.pad(grey[..., :, 2:] - grey[..., :, :-2], (1, 1, 0, 0))  # central differences, (1, 1, s, s)
    gy = F.pad(grey[..., 2:, :] - grey[..., :-2, :], (0, 0, 1, 1))
    return (gx.pow(2) + gy.pow(2)).sqrt()


def _window(size: int, device: torch.device) -> torch.Tensor:
    """(size, size) round window: 1 inside 70 % of the half side, a cosine to 0 at the inscribed circle."""
    c = (size - 1) / 2
    y, x = torch.meshgrid(torch.arange(size, device=device), torch.arange(size, device=device), indexing="ij")
    r = ((x - c) ** 2 + (y - c) ** 2).sqrt() / (size / 2)
    ramp = ((1.0 - r) / 0.3).clamp(0, 1)
    return 0.5 - 0.5 * torch.cos(math.pi * ramp)


def _normalised(x: torch.Tensor, window: torch.Tensor) -> torch.Tensor:
    """Zero weighted mean, unit norm, times the window. x (N, 1, s, s)."""
    mean = (x * window).sum((-2, -1), keepdim=True) / window.sum()
    x = (x - mean) * window
    return x / x.flatten(1).norm(dim=1).clamp_min(1e-8).view(-1, 1, 1, 1)


def _peak_offset(left: float, mid: float, right: float) -> float:
    """Sub-sample position of a peak from three samples (a parabola), within [-0.5, 0.5]."""
    denom = left - 2 * mid + right
    return 0.0 if denom >= 0 else max(-0.5, min(0.5, 0.5 * (left - right) / denom))


def _search(ref: torch.Tensor, mov: torch.Tensor, angles: torch.Tensor, max_shift: float) -> torch.Tensor:
    """Correlation of ``ref`` (1, 1, s, s) with ``mov`` turned back by each angle, at every shift within
    ``max_shift`` * s: (A, 2s, 2s), entry [a, dy, dx] (FFT order). At the right angle the turned-back moving
    image is the reference moved by (dx, dy) = R^-1 shift."""
    s = ref.shape[-1]
    window = _window(s, ref.device)
    thetas = torch.stack([rigid_theta(float(a), (0.0, 0.0), s, s) for a in angles])  # (A, 2, 3)
    turned = warp(mov.expand(len(angles), -1, -1, -1), thetas).images  # (A, 1, s, s)
    a_f = torch.fft.rfft2(_normalised(turned, window), s=(2 * s, 2 * s))
    r_f = torch.fft.rfft2(_normalised(ref, window), s=(2 * s, 2 * s))
    corr = torch.fft.irfft2(a_f * r_f.conj(), s=(2 * s, 2 * s))[:, 0]  # (A, 2s, 2s): zero-padded, no wrap
    lag = torch.fft.fftfreq(2 * s, 1 / (2 * s), device=ref.device).abs()  # |shift| of each index
    too_far = (lag[:, None] > max_shift * s) | (lag[None, :] > max_shift * s)
    return corr.masked_fill(too_far, -2.0)


def _subpixel_peak(corr: torch.Tensor) -> tuple[float, float]:
    """(dx, dy) of the maximum of one (2s, 2s) correlation map in FFT order, refined by parabolas."""
    n = corr.shape[-1]
    y, x = divmod(int(corr.argmax()), n)
    dx = _peak_offset(float(corr[y, x - 1]), float(corr[y, x]), float(corr[y, (x + 1) % n]))
    dy = _peak_offset(float(corr[y - 1, x]), float(corr[y, x]), float(corr[(y + 1) % n, x]))
    signed = lambda i: i - n if i >= n // 2 else i  # noqa: E731 (FFT index -> signed lag)
    return signed(x) + dx, signed(y) + dy


def estimate_rigid(
    reference: torch.Tensor,
    moving: torch.Tensor,
    coarse_step: float = 4.0,
    max_shift: float = 0.3,
    sizes: tuple[int, int] = (64, 128),
) -> RigidFit:
    """The rotation + translation that best maps ``reference`` (3, H, W) onto ``moving`` (3, H, W), both in
    [0, 1] (module docstring for the conventions). ``max_shift``: largest translation, a fraction of the side."""
    h, w = reference.shape[-2:]
    coarse, fine = sizes
    angles = torch.arange(0.0, 360.0, coarse_step)
    best = _search(_edges(reference, coarse), _edges(moving, coarse), angles, max_shift).flatten(1).amax(1)
    angles = float(angles[int(best.argmax())]) + torch.arange(-coarse_step, coarse_step + 0.5, 1.0)
    ref, mov = _edges(reference, fine), _edges(moving, fine)
    corr = _search(ref, mov, angles, max_shift)
    best = corr.flatten(1).amax(1)  # (A,)
    i = int(best.argmax())
    step = 0.0
    if 0 < i < len(angles) - 1:
        step = _peak_offset(float(best[i - 1]), float(best[i]), float(best[i + 1]))
    angle = (float(angles[i]) + step + 180.0) % 360.0 - 180.0
    sx, sy = _subpixel_peak(corr[i])
    sx, sy = sx * w / fine, sy * h / fine
    a = math.radians(float(angles[i]))
    # the search measured s = R^-1 shift in the turned-back frame; shift = R s
    shift = (math.cos(a) * sx + math.sin(a) * sy, -math.sin(a) * sx + math.cos(a) * sy)
    identity = float(_search(ref, mov, torch.zeros(1), 0.0)[0, 0, 0])
    return RigidFit(angle, shift, float(best[i]), identity)


def motion(fit: RigidFit, height: int, width: int) -> float:
    """Pixels the fit moves the farthest point of the image's inscribed circle (at most)."""
    radius = min(height, width) / 2
    return math.hypot(*fit.shift) + 2 * radius * abs(math.sin(math.radians(fit.angle) / 2))


def register_shots(
    shots: torch.Tensor,
    mode: RegisterMode,
    margin: float = AUTO_MARGIN,
    min_motion: float = AUTO_MIN_MOTION,
) -> list[ShotRegistration]:
    """Register every shot (k, 3, H, W) to shot 0. ``none``: identity, nothing measured; ``rigid``: every fit
    used; ``auto``: a fit used only where its score beats the identity's by ``margin`` and it moves the image
    by at least ``min_motion`` of its side (aligned parts keep the identity)."""
    if mode not in REGISTER_MODES:
        raise ValueError(
            f"register_shots: {mode!r} is no registration mode; set `register_shots` to one of {REGISTER_MODES}"
        )
    nan, side = float("nan"), min(shots.shape[-2:])
    records = [ShotRegistration(0, 0.0, (0.0, 0.0), nan, nan, False)]
    for j in range(1, len(shots)):
        if mode == "none":
            records.append(ShotRegistration(j, 0.0, (0.0, 0.0), nan, nan, False))
            continue
        fit = estimate_rigid(shots[0], shots[j])
        use = mode == "rigid" or (
            fit.score - fit.identity_score >= margin and motion(fit, *shots.shape[-2:]) >= min_motion * side
        )
        records.append(ShotRegistration(j, fit.angle, fit.shift, fit.score, fit.identity_score, use))
    return records


def _homogeneous(registration: ShotRegistration, height: int, width: int) -> torch.Tensor:
    if not registration.registered:
        return torch.eye(3)
    theta = rigid_theta(registration.angle, registration.shift, height, width)
    return torch.cat([theta, torch.tensor([[0.0, 0.0, 1.0]])])  # (3, 3)


def aligned_stack(shots: torch.Tensor, registrations: list[ShotRegistration]) -> Warped:
    """Every shot seen in every shot's frame: (k, 3, H, W) -> images (k, k, 3, H, W), valid (k, k, 1, H, W),
    entry [i, j] = shot j warped so that its positions correspond to shot i's. With M_j mapping reference
    positions into shot j, shot j in frame i is sampled at M_j M_i^-1 (the identity on the diagonal)."""
    k, _, h, w = shots.shape
    m = torch.stack([_homogeneous(r, h, w) for r in registrations])  # (k, 3, 3)
    pair = m[None] @ torch.linalg.inv(m)[:, None]  # (k, k, 3, 3): [i, j] = M_j M_i^-1
    source = shots[None].expand(k, -1, -1, -1, -1).flatten(0, 1)  # (k*k, 3, H, W), [i, j] -> i*k + j
    out = warp(source, pair[..., :2, :].flatten(0, 1))
    # identity pairs (the diagonal, two unregistered shots) are copied: grid_sample is not exact there
    same = (
        torch.isclose(pair, torch.eye(3), atol=1e-6).flatten(2).all(-1).flatten().to(shots.device)
    )  # (k*k,)
    images = torch.where(same[:, None, None, None], source, out.images)
    valid = torch.where(same[:, None, None, None], torch.ones_like(out.valid), out.valid)
    return Warped(images.view(k, k, *shots.shape[1:]), valid.view(k, k, 1, h, w))
