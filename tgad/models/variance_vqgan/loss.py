"""Losses of the VarianceVQGAN: L1 + perceptual + commitment + adaptive hinge GAN + variance NLL."""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

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
        self.backbone = backbone.eval().requires_grad_(False)
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    def train(self, mode: bool = True) -> PerceptualLoss:
        return super().train(False)  # BatchNorm statistics of the pretrained net must not move

    def distance(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Per-image distance (B,) between images in [0, 1]."""
        fx = self.backbone(torch.cat([x, y]).sub(self.mean).div(self.std))
        total = x.new_zeros(len(x))
        for f in fx:
            f = F.normalize(f, dim=1)  # (2B, C, h, w), unit length over channels as in LPIPS
            a, b = f.chunk(2)
            total = total + (a - b).pow(2).sum(1).mean(dim=(1, 2))
        return total / len(fx)

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


def view_variance_nll(
    logvar: torch.Tensor, z_e: torch.Tensor, views: int, cross_shot_weight: float = 1.0
) -> torch.Tensor:
    """Gaussian NLL that teaches the variance head the spread of E's latents across aligned views.

    tgad's reading of the paper's "Sigma over i of E(I_i)": for each shot, the I_i are its augmented views
    (see ``augment.make_views``) and Sigma is the per-position, per-coordinate variance of E(I_i) over i. With
    k > 1 shots the spread of the shots' mean latents at the same position is added, weighted by
    ``cross_shot_weight``. Each view's squared deviation from its group mean (bias-corrected) is a one-sample
    estimate of that variance; minimising 0.5 * (log s + t / s) over s gives s = E[t], so the head learns the
    expected spread without ever seeing an explicit variance.

    Args:
        logvar: (k*V, d, h, w) predicted log-variances, one map per view.
        z_e: (k*V, d, h, w) encoder latents of the same views, views of a shot consecutive.
        views: V, the number of views per shot (>= 2).
    """
    if views < 2:
        raise ValueError("view_variance_nll: needs at least 2 views per shot; raise `views` in the config")
    k = len(z_e) // views
    z = z_e.detach().view(k, views, *z_e.shape[1:])  # (k, V, d, h, w)
    shot_mean = z.mean(1, keepdim=True)  # (k, 1, d, h, w)
    target = (z - shot_mean).pow(2) * (views / (views - 1))
    if k > 1 and cross_shot_weight > 0:
        across = (shot_mean - shot_mean.mean(0, keepdim=True)).pow(2) * (k / (k - 1))  # (k, 1, d, h, w)
        target = target + cross_shot_weight * across
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
) -> GeneratorLossOutput:
    """Everything the encoder, decoder and variance head minimise. ``logits_fake`` None = GAN still off."""
    rec = out.reconstruction
    l1 = (x - rec).abs().mean()
    zero = rec.new_zeros(())
    perc = perceptual(x, rec) if perceptual is not None and perceptual_weight > 0 else zero
    rec_loss = l1 + perceptual_weight * perc
    nll = view_variance_nll(out.encoded.logvar, out.encoded.z_e, views, cross_shot_weight)
    gan, weight = zero, zero
    if logits_fake is not None:
        gan = -logits_fake.mean()
        weight = disc_weight * adaptive_gan_weight(rec_loss, gan, last_layer)
    total = rec_loss + out.encoded.commit_loss + nll_weight * nll + weight * gan
    return GeneratorLossOutput(total, l1, perc, out.encoded.commit_loss, nll, gan, weight)
