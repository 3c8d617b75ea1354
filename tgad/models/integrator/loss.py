"""The Integrator's update objective: reconstruct the kept images, pull fresh samples toward P* in CLIP
space, and keep reconstructing the shots (fidelity), each weighted by the config."""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from tgad.models.variance_vqgan.torch_model import SampleMode, VarianceVQGANModel

from .selection import clip_scores
from .torch_model import clip_image_embeddings, differentiable_samples, random_crop


class IntegratorLossOutput(NamedTuple):
    total: torch.Tensor
    reconstruction: torch.Tensor  # on the kept images
    clip: torch.Tensor  # 1 - mean cos(CLIP(sample), P*)
    fidelity: torch.Tensor  # on the shots
    clip_score: torch.Tensor  # mean cos of this step's differentiable samples (detached)


def reconstruction_loss(
    model: VarianceVQGANModel,
    images: torch.Tensor,
    perceptual: nn.Module | None = None,
    perceptual_weight: float = 0.0,
) -> torch.Tensor:
    """L1 + perceptual distance + commitment of ``model``'s reconstruction of ``images`` (B, 3, H, W)."""
    out = model(images)
    loss = (out.reconstruction - images).abs().mean() + out.encoded.commit_loss
    if perceptual is not None and perceptual_weight > 0:
        loss = loss + perceptual_weight * perceptual(out.reconstruction, images)
    return loss


def integrator_loss(
    model: VarianceVQGANModel,
    kept: torch.Tensor,
    shots: torch.Tensor,
    clip: nn.Module,
    text_emb: torch.Tensor,
    *,
    reconstruction_weight: float,
    clip_weight: float,
    fidelity_weight: float,
    clip_samples: int,
    tau: float,
    patch_fraction: float,
    perceptual: nn.Module | None = None,
    perceptual_weight: float = 0.0,
    crop_size: int = 0,
    mode: SampleMode = "residual",
    generator: torch.Generator | None = None,
) -> IntegratorLossOutput:
    """One update step's loss. Reconstruction and fidelity see one shared random crop (``crop_size``, as the
    generator was fitted); the CLIP term needs whole images (CLIP resizes them itself)."""
    zero = shots.new_zeros(())
    rec = fid = clip_term = zero
    score = zero
    if reconstruction_weight > 0 and len(kept):
        both = random_crop(torch.cat([kept, shots]), crop_size, generator)  # (q+k, 3, c, c)
        rec = reconstruction_loss(model, both[: len(kept)], perceptual, perceptual_weight)
        if fidelity_weight > 0:
            fid = reconstruction_loss(model, both[len(kept) :], perceptual, perceptual_weight)
    elif fidelity_weight > 0:
        fid = reconstruction_loss(
            model, random_crop(shots, crop_size, generator), perceptual, perceptual_weight
        )
    if clip_weight > 0 and clip_samples > 0:
        per_shot = max(1, -(-clip_samples // len(shots)))
        samples = differentiable_samples(model, shots, per_shot, tau, patch_fraction, generator, mode)
        samples = samples.view(len(shots), per_shot, *samples.shape[1:]).transpose(0, 1).flatten(0, 1)
        cos = clip_scores(clip_image_embeddings(clip, samples[:clip_samples]), text_emb)  # shot-interleaved
        clip_term, score = 1 - cos.mean(), cos.mean().detach()
    total = reconstruction_weight * rec + clip_weight * clip_term + fidelity_weight * fid
    return IntegratorLossOutput(total, rec, clip_term, fid, score)
