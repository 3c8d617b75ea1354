"""The Integrator's update objective: reconstruct the kept images, push fresh samples toward what the scorer
rewards (the guidance term: 1 - cos to P* for clip_text, the relative tail patch distance to the shots for
shot_fidelity, both for combined), and keep reconstructing the shots (fidelity), each weighted by the config."""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import nn

from tgad.models.variance_vqgan.torch_model import SampleMode, VarianceVQGANModel

from .config import IntegratorConfig
from .torch_model import differentiable_samples, random_crop

Guidance = Callable[[torch.Tensor], torch.Tensor]  # (B, 3, H, W) samples -> scalar loss, lower is better


class IntegratorLossOutput(NamedTuple):
    total: torch.Tensor
    reconstruction: torch.Tensor  # on the kept images
    guidance: torch.Tensor  # the scorer's differentiable term on fresh samples (0 without a scorer)
    fidelity: torch.Tensor  # on the shots


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
    guidance: Guidance | None,
    cfg: IntegratorConfig,
    tau: float,
    *,
    perceptual: nn.Module | None,
    mode: SampleMode,
    variance_grad: bool,
    generator: torch.Generator | None,
) -> IntegratorLossOutput:
    """One update step's loss, weighted by ``cfg.update``. Reconstruction and fidelity see one shared random crop
    (``model.config.training.crop_size``, as the generator was fitted); the guidance term sees whole samples at
    ``tau`` (CLIP resizes them itself; shot fidelity compares them with whole shots). ``variance_grad=False``
    keeps the guidance away from the variance head (see ``differentiable_samples``)."""
    weights, levers = cfg.update, cfg.levers
    crop, perceptual_weight = model.config.training.crop_size, model.config.loss.perceptual_weight
    zero = shots.new_zeros(())
    rec = fid = guide = zero
    if weights.reconstruction_weight > 0 and len(kept):
        both = random_crop(torch.cat([kept, shots]), crop, generator)  # (q+k, 3, c, c)
        rec = reconstruction_loss(model, both[: len(kept)], perceptual, perceptual_weight)
        if weights.fidelity_weight > 0:
            fid = reconstruction_loss(model, both[len(kept) :], perceptual, perceptual_weight)
    elif weights.fidelity_weight > 0:
        fid = reconstruction_loss(model, random_crop(shots, crop, generator), perceptual, perceptual_weight)
    n = weights.guidance_samples
    if guidance is not None and weights.guidance_weight > 0 and n > 0:
        per_shot = max(1, -(-n // len(shots)))
        samples = differentiable_samples(
            model,
            shots,
            per_shot,
            tau,
            cfg.patch_fraction,
            generator,
            mode,
            variance_grad,
            levers.target_block,
            levers.self_similar,
        )
        # (k*n, ...) shot-major -> shot-interleaved, so the first guidance_samples cover every shot
        samples = samples.view(len(shots), per_shot, *samples.shape[1:]).transpose(0, 1).flatten(0, 1)
        guide = guidance(samples[:n])
    total = (
        weights.reconstruction_weight * rec + weights.guidance_weight * guide + weights.fidelity_weight * fid
    )
    return IntegratorLossOutput(total, rec, guide, fid)


def update_generator(
    model: VarianceVQGANModel,
    kept: torch.Tensor,
    shots: torch.Tensor,
    guidance: Guidance | None,
    cfg: IntegratorConfig,
    tau: float,
    step: Callable[[torch.Tensor], None],
    *,
    perceptual: nn.Module | None,
    mode: SampleMode,
    variance_grad: bool,
    generator: torch.Generator,
) -> dict[str, float]:
    """A round's update: ``cfg.update.update_steps`` steps on :func:`integrator_loss`, each handed to ``step``
    (zero the gradients, backpropagate, step the optimiser); returns the mean of every loss part over the steps."""
    sums: dict[str, float] = {}
    steps = cfg.update.update_steps
    with torch.enable_grad():
        for _ in range(steps):
            out = integrator_loss(
                model,
                kept,
                shots,
                guidance,
                cfg,
                tau,
                perceptual=perceptual,
                mode=mode,
                variance_grad=variance_grad,
                generator=generator,
            )
            step(out.total)
            for k, v in out._asdict().items():
                sums[k] = sums.get(k, 0.0) + float(v.detach()) / steps
    return sums
