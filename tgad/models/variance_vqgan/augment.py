"""Few-shot augmentation: many aligned views of the same shots, so one image is enough to fit the generator.

Two kinds of change, kept apart on purpose (METHOD.md lesson: a variance target mixing flipped and unflipped
views is meaningless):

* *global* geometric changes (flips, 90-degree turns) are applied once per shot and step, identically to all
  of its views. They are off by default: on aligned objects (transistor, cable) a flip is itself a defect.
* *view* changes (mild photometric jitter, sensor noise, a shift of a few pixels, a small rotation and scale)
  differ between the views of one shot. The spread of the encoder's latents across these views is what the
  variance head learns. They are small enough not to invent defects.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace
from typing import NamedTuple

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class AugmentConfig:
    brightness: float = 0.08  # multiplicative factor drawn from [1 - b, 1 + b]
    contrast: float = 0.08
    saturation: float = 0.08
    noise_std: float = 0.01  # additive Gaussian noise, in [0, 1] pixel units
    max_shift: float = 0.02  # fraction of the view side
    max_rotate: float = 3.0  # degrees
    max_scale: float = 0.03
    hflip: bool = False
    vflip: bool = False
    rot90: bool = False

    def scaled(self, strength: float) -> AugmentConfig:
        """All view-level magnitudes multiplied by ``strength`` (0 turns view augmentation off)."""
        magnitudes = {
            f.name: v * strength for f in fields(self) if isinstance(v := getattr(self, f.name), float)
        }
        return replace(self, **magnitudes)


def _uniform(n: int, low: float, high: float, generator: torch.Generator | None) -> torch.Tensor:
    return low + (high - low) * torch.rand(n, generator=generator)


def _global(shots: torch.Tensor, cfg: AugmentConfig, generator: torch.Generator | None) -> torch.Tensor:
    out = []
    for img in shots:
        if cfg.hflip and torch.rand((), generator=generator) < 0.5:
            img = img.flip(-1)
        if cfg.vflip and torch.rand((), generator=generator) < 0.5:
            img = img.flip(-2)
        if cfg.rot90:
            img = torch.rot90(img, int(torch.randint(4, (), generator=generator)), dims=(-2, -1))
        out.append(img)
    return torch.stack(out)


def _jitter(x: torch.Tensor, cfg: AugmentConfig, generator: torch.Generator | None) -> torch.Tensor:
    """Small random affine warp per image, reflection-padded. x (N, 3, H, W)."""
    n = len(x)
    angle = _uniform(n, -cfg.max_rotate, cfg.max_rotate, generator) * math.pi / 180
    scale = _uniform(n, 1 - cfg.max_scale, 1 + cfg.max_scale, generator)
    shift = _uniform(2 * n, -2 * cfg.max_shift, 2 * cfg.max_shift, generator).view(
        n, 2
    )  # grid units: [-1, 1]
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack(
        [torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1
    )
    grid = F.affine_grid(theta.to(x), list(x.shape), align_corners=False)  # (N, H, W, 2)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


def _photometric(x: torch.Tensor, cfg: AugmentConfig, generator: torch.Generator | None) -> torch.Tensor:
    n = len(x)
    col = (n, 1, 1, 1)
    b = _uniform(n, 1 - cfg.brightness, 1 + cfg.brightness, generator).view(col).to(x)
    c = _uniform(n, 1 - cfg.contrast, 1 + cfg.contrast, generator).view(col).to(x)
    s = _uniform(n, 1 - cfg.saturation, 1 + cfg.saturation, generator).view(col).to(x)
    x = x * b
    gray = (0.299 * x[:, :1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3]).expand_as(x)
    x = gray + (x - gray) * s
    mean = gray.mean(dim=(1, 2, 3), keepdim=True)
    x = mean + (x - mean) * c
    if cfg.noise_std > 0:
        x = x + cfg.noise_std * torch.randn(x.shape, generator=generator).to(x)
    return x.clamp(0, 1)


class ViewBatch(NamedTuple):
    views: torch.Tensor  # (k, V, 3, c, c)
    companions: torch.Tensor | None  # (k, C, c, c): each shot's companions, same global change and crop


def make_views(
    shots: torch.Tensor,
    views: int,
    crop_size: int = 0,
    cfg: AugmentConfig | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Aligned views of every shot: (k, 3, H, W) -> (k, views, 3, c, c).

    One crop window (``crop_size``; 0 = the whole image) is shared by all shots and views of a step, so
    position (i, j) of every latent map looks at the same place: the spread across views (and across shots)
    at a position is meaningful. View 0 of each shot is the clean crop, so the model always sees the shot as
    it is; views 1.. are jittered.
    """
    return make_view_batch(shots, views, crop_size, cfg, generator).views


def make_view_batch(
    shots: torch.Tensor,
    views: int,
    crop_size: int = 0,
    cfg: AugmentConfig | None = None,
    generator: torch.Generator | None = None,
    companions: torch.Tensor | None = None,
) -> ViewBatch:
    """:func:`make_views`, plus ``companions`` (k, C, H, W): images tied to each shot's frame (the other
    shots registered to it) that take the shot's global flip/turn and the step's crop, never the view jitter.
    The random draws are those of :func:`make_views` whether or not companions are given."""
    cfg = cfg or AugmentConfig()
    k, _, h, w = shots.shape
    if views < 1:
        raise ValueError(f"make_views: views must be >= 1, got {views}")
    x = shots if companions is None else torch.cat([shots, companions.to(shots)], 1)  # (k, 3 + C, H, W)
    x = _global(x, cfg, generator)
    h, w = x.shape[-2:]
    if crop_size and crop_size < min(h, w):
        top = int(torch.randint(h - crop_size + 1, (), generator=generator))
        left = int(torch.randint(w - crop_size + 1, (), generator=generator))
        x = x[..., top : top + crop_size, left : left + crop_size]
    x, tied = (x, None) if companions is None else (x[:, :3], x[:, 3:])
    out = x.unsqueeze(1).repeat(1, views, 1, 1, 1)  # (k, V, 3, c, c)
    if views > 1:
        rest = out[:, 1:].flatten(0, 1)  # (k*(V-1), 3, c, c)
        if cfg.max_rotate or cfg.max_scale or cfg.max_shift:
            rest = _jitter(rest, cfg, generator)
        rest = _photometric(rest, cfg, generator)
        out[:, 1:] = rest.view(k, views - 1, *rest.shape[1:])
    return ViewBatch(out, tied)
