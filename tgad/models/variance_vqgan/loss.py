"""Losses of the VarianceVQGAN: L1 + perceptual + commitment + adaptive hinge GAN + variance NLL."""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from tgad.assets.backbones import drop_unused_blocks
from tgad.assets.weights import IMAGENET_MEAN, IMAGENET_STD

from .torch_model import ModelOutput

PERCEPTUAL_OUT_INDICES = (1, 2, 3)  # timm features_only maps at strides 4, 8, 16: texture to parts


class PerceptualLoss(nn.Module):
    """LPIPS-like distance without learned weights: squared difference of channel-normalised CNN features.

    The backbone (a timm ``features_only`` model returning a list of maps) is passed in, never built here:
    ``tgad.assets.create_backbone`` decides where its weights come from, and ``mean``/``std`` are the input
    normalisation those weights were trained with (``ResolvedWeights.mean/std``). It stays frozen, in eval mode.
    """

    def __init__(
        self,
        backbone: nn.Module,
        mean: tuple[float, ...] = IMAGENET_MEAN,
        std: tuple[float, ...] = IMAGENET_STD,
    ) -> None:
        super().__init__()
        # Only the maps the loss reads are computed (timm runs every block otherwise): the same maps, sooner.
        self.backbone = drop_unused_blocks(backbone).eval().requires_grad_(False)
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    def train(self, mode: bool = True) -> PerceptualLoss:
        return super().train(False)  # BatchNorm statistics of the pretrained net must not move

    def distance(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Per-image distance (B,) between images in [0, 1], both through the backbone in one batch."""
        return self._distance([f.chunk(2) for f in self._maps(torch.cat([x, y]))])

    def to_fixed_targets(self, targets: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
        """Mean distance from ``images`` (which carry the gradient) to ``targets`` (data: no gradient), the
        targets' maps computed without a graph, so the backward pass runs through half the batch: the fit's
        term, 16 % of its time saved. The same value and gradient as ``forward(targets, images)`` up to the
        backend's choice of convolution algorithm per batch size (bit-equal at the fit's 4 views of 128 px)."""
        with torch.no_grad():
            fixed = self._maps(targets)
        return self._distance(list(zip(fixed, self._maps(images), strict=True))).mean()

    def _maps(self, images: torch.Tensor) -> list[torch.Tensor]:
        """The backbone's maps of images in [0, 1] (ImageNet-normalised first)."""
        return self.backbone(images.sub(self.mean).div(self.std))

    @staticmethod
    def _distance(pairs: list[tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
        total = pairs[0][0].new_zeros(len(pairs[0][0]))
        for a, b in pairs:
            # (B, C, h, w): unit length over channels (LPIPS)
            a, b = F.normalize(a, dim=1), F.normalize(b, dim=1)
            total = total + (a - b).pow(2).sum(1).mean(dim=(1, 2))
        return total / len(pairs)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.distance(x, y).mean()


def hinge_d_loss(logits_real: torch.Tensor, logits_fake: torch.Tensor) -> torch.Tensor:
    return 0.5 * (F.relu(1.0 - logits_real).mean() + F.relu(1.0 + logits_fake).mean())


def adaptive_gan_weight(
    rec_loss: torch.Tensor, gan_loss: torch.Tensor, last_layer: torch.Tensor, max_weight: float = 1e4
) -> torch.Tensor:
    """Taming's balance: scale the GAN term so its gradient at the decoder's last layer matches the
    reconstruction's. Detached: the weight is a number, not something to optimise."""
    rec_grad = torch.autograd.grad(rec_loss, last_layer, retain_graph=True)[0]
    gan_grad = torch.autograd.grad(gan_loss, last_layer, retain_graph=True)[0]
    return (rec_grad.norm() / (gan_grad.norm() + 1e-4)).clamp(0.0, max_weight).detach()


class AlignedLatents(NamedTuple):
    """The shots' clean latents seen in every shot's frame (``tgad.features.registration.aligned_stack``)."""

    latents: torch.Tensor  # (k, k, d, h, w): [i, j] = shot j's latents at shot i's positions
    valid: torch.Tensor  # (k, k, 1, h, w): 1 where shot j covers that position of shot i


@torch.no_grad()
def aligned_latents(
    encode: Callable[[torch.Tensor], torch.Tensor], clean: torch.Tensor, stack: torch.Tensor, downsample: int
) -> AlignedLatents:
    """Every shot's latents in every shot's frame, from one step's crops of the aligned stack.

    Args:
        encode: images (N, 3, c, c) in [0, 1] -> latents (N, d, h, w).
        clean: (k, d, h, w) latents of the shots' clean views (the diagonal: a shot in its own frame).
        stack: (k, k*4, c, c) the step's crop of ``aligned_stack``: [i, 4j:4j+3] shot j in frame i (RGB),
            [i, 4j+3] where it is covered.
        downsample: pixels per latent position.
    A latent position counts only where its cell and the cells around it were fully covered: the encoder
    sees a few pixels beyond its cell, and the warp's zeros must not pass for image content.
    """
    k = len(clean)
    pairs = stack.view(k, k, 4, *stack.shape[-2:])  # (k, k, RGB + covered, c, c)
    off = ~torch.eye(k, dtype=torch.bool, device=pairs.device)
    latents = clean.detach()[None].repeat(k, 1, 1, 1, 1)  # (k, k, d, h, w)
    latents[off] = encode(pairs[off][:, :3]).to(latents)  # (k*(k-1), d, h, w)
    cell = F.avg_pool2d(pairs[:, :, 3].flatten(0, 1)[:, None], downsample) > 0.999  # (k*k, 1, h, w)
    valid = -F.max_pool2d(-cell.float(), 3, stride=1, padding=1)  # eroded by one cell
    valid = valid.view(k, k, 1, *valid.shape[-2:])
    valid[~off] = 1.0
    return AlignedLatents(latents, valid)


def cross_shot_spread(clean: torch.Tensor, aligned: AlignedLatents | None = None) -> torch.Tensor:
    """Bias-corrected variance across the k shots at corresponding positions, in each shot's frame.

    Args:
        clean: (k, d, h, w) latents of the shots' clean views (view 0), used as they are when ``aligned`` is
            None (aligned parts: position (y, x) of every shot shows the same place).
        aligned: the shots registered into each other's frames; positions covered by fewer than two shots
            get 0 (no spread can be measured there).
    Returns:
        (k, d, h, w): entry i is the spread at shot i's positions.
    """
    k = len(clean)
    if aligned is None:
        spread = (clean - clean.mean(0, keepdim=True)).pow(2).sum(0, keepdim=True) / (k - 1)  # (1, d, h, w)
        return spread.expand_as(clean)
    z, valid = aligned.latents.detach(), aligned.valid.to(aligned.latents)
    n = valid.sum(1)  # (k, 1, h, w) shots covering each position of frame i
    mean = (z * valid).sum(1) / n.clamp_min(1)  # (k, d, h, w)
    spread = ((z - mean.unsqueeze(1)).pow(2) * valid).sum(1) / (n - 1).clamp_min(1)
    return torch.where(n >= 2, spread, torch.zeros_like(spread))


def variance_target(
    z: torch.Tensor, cross_shot_weight: float = 1.0, aligned: AlignedLatents | None = None
) -> torch.Tensor:
    """What the variance head is taught, per view: (k, V, d, h, w) encoder latents -> (k, V, d, h, w).

    The view jitter's part is each view's squared deviation from its shot's mean over the V views
    (bias-corrected: a one-sample estimate of the within-shot variance). With k > 1, ``cross_shot_weight``
    times the spread across the shots' clean views (view 0) at corresponding positions is added: the two are
    independent sources of variation, so their variances add. Clean views, not the shots' means over views:
    a mean still carries 1/V of the view jitter, which the first term already counts.
    """
    k, views = z.shape[:2]
    z = z.detach()
    shot_mean = z.mean(1, keepdim=True)  # (k, 1, d, h, w)
    target = (z - shot_mean).pow(2) * (views / (views - 1))
    if k > 1 and cross_shot_weight > 0:
        target = target + cross_shot_weight * cross_shot_spread(z[:, 0], aligned).unsqueeze(1)
    return target


def view_variance_nll(
    logvar: torch.Tensor,
    z_e: torch.Tensor,
    views: int,
    cross_shot_weight: float = 1.0,
    aligned: AlignedLatents | None = None,
) -> torch.Tensor:
    """Gaussian NLL that teaches the variance head the spread of E's latents across aligned views.

    tgad's reading of the paper's "Sigma over i of E(I_i)": for each shot, the I_i are its augmented views
    (see ``augment.make_views``) and Sigma is the per-position, per-coordinate variance of E(I_i) over i, plus
    the spread across shots for k > 1 (:func:`variance_target`). Each target value is a one-sample estimate of
    that variance; minimising 0.5 * (log s + t / s) over s gives s = E[t], so the head learns the expected
    spread without ever seeing an explicit variance.

    Args:
        logvar: (k*V, d, h, w) predicted log-variances, one map per view.
        z_e: (k*V, d, h, w) encoder latents of the same views, views of a shot consecutive.
        views: V, the number of views per shot (>= 2).
        aligned: the shots registered into each other's frames (None: the identity).
    """
    if views < 2:
        raise ValueError("view_variance_nll: needs at least 2 views per shot; raise `views` in the config")
    k = len(z_e) // views
    target = variance_target(z_e.view(k, views, *z_e.shape[1:]), cross_shot_weight, aligned)
    lv = logvar.view_as(target)
    return 0.5 * (lv + target * torch.exp(-lv)).mean()


class GeneratorLossOutput(NamedTuple):
    total: torch.Tensor
    l1: torch.Tensor
    perceptual: torch.Tensor
    commit: torch.Tensor
    nll: torch.Tensor
    gan: torch.Tensor
    gan_weight: torch.Tensor


def generator_loss(
    x: torch.Tensor,
    out: ModelOutput,
    views: int,
    last_layer: torch.Tensor,
    perceptual: PerceptualLoss | None = None,
    perceptual_weight: float = 1.0,
    logits_fake: torch.Tensor | None = None,
    disc_weight: float = 0.5,
    nll_weight: float = 1.0,
    cross_shot_weight: float = 1.0,
    aligned: AlignedLatents | None = None,
) -> GeneratorLossOutput:
    """Everything the encoder, decoder and variance head minimise. ``logits_fake`` None = GAN still off."""
    rec = out.reconstruction
    l1 = (x - rec).abs().mean()
    zero = rec.new_zeros(())
    use_perceptual = perceptual is not None and perceptual_weight > 0
    perc = perceptual.to_fixed_targets(x, rec) if use_perceptual else zero
    rec_loss = l1 + perceptual_weight * perc
    nll = view_variance_nll(out.encoded.logvar, out.encoded.z_e, views, cross_shot_weight, aligned)
    gan, weight = zero, zero
    if logits_fake is not None:
        gan = -logits_fake.mean()
        weight = disc_weight * adaptive_gan_weight(rec_loss, gan, last_layer)
    total = rec_loss + out.encoded.commit_loss + nll_weight * nll + weight * gan
    return GeneratorLossOutput(total, l1, perc, out.encoded.commit_loss, nll, gan, weight)
