"""Where the VarianceVQGAN's samples differ from their input: the target mask, the perturbed latents, and
the self-similar partners. The sampler (``VarianceVQGANModel.sample``) and the Integrator's differentiable
draw (``tgad.models.integrator.torch_model.differentiable_samples``) share this one core."""

from __future__ import annotations

import torch


def perturbed_latents(
    z_e: torch.Tensor,
    logvar: torch.Tensor,
    n: int,
    tau: float,
    patch_fraction: float,
    generator: torch.Generator | None = None,
    block: int = 1,
    self_similar: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The one sampling core of the sampler and the Integrator's differentiable draw: (B, d, h, w) encoder
    output and log-variance -> ((B*n, d, h, w) latents, (B*n, 1, h, w) target mask), sample j of input i at
    i*n + j. Target positions get z + tau * sigma * eps; gradients reach ``z_e`` and ``logvar``.

    ``self_similar`` = K > 0 first replaces each target position's latent (and its sigma) by those of one of
    the K positions of the same input whose latents are nearest to it, outside its own +-1 neighbourhood, at
    random: the input's own structures, moved to places where structures like them already are. Variation of
    the kind a texture or a part shows across its surface, and none it does not show (a black background
    stays black: its nearest positions are background too)."""
    b, d, h, w = z_e.shape
    z = z_e.repeat_interleave(n, 0)  # (B*n, d, h, w)
    std = torch.exp(0.5 * logvar).repeat_interleave(n, 0)
    eps = torch.randn(z.shape, generator=generator).to(z)
    mask = target_mask(b * n, h, w, patch_fraction, block, generator).to(z)  # (B*n, 1, h, w)
    if self_similar > 0:
        partners = self_similar_partners(z_e.detach(), self_similar, n, generator).to(z.device)  # (B*n, h*w)
        index = partners[:, None, :].expand(-1, d, -1)  # (B*n, d, h*w)
        z = torch.where(mask.bool(), z.flatten(2).gather(2, index).view_as(z), z)
        std = torch.where(mask.bool(), std.flatten(2).gather(2, index).view_as(std), std)
    return z + tau * std * eps * mask, mask


def self_similar_partners(
    z: torch.Tensor, k: int, n: int, generator: torch.Generator | None = None, exclude: int = 1
) -> torch.Tensor:
    """(B, d, h, w) latents -> (B*n, h*w): for each of n samples per input, every position's partner, drawn
    uniformly among its ``k`` nearest positions (latent distance) outside its +-``exclude`` neighbourhood."""
    b, d, h, w = z.shape
    flat = z.flatten(2).transpose(1, 2).float()  # (B, h*w, d)
    dist = torch.cdist(flat, flat)  # (B, h*w, h*w)
    rows, cols = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    grid = torch.stack([rows.flatten(), cols.flatten()], 1).to(z.device)  # (h*w, 2)
    near = (grid[:, None] - grid[None]).abs().amax(-1) <= exclude  # (h*w, h*w) own neighbourhood
    if bool(near.all()):  # a map too small to have an "elsewhere": any other position will do
        near = torch.eye(h * w, dtype=torch.bool, device=z.device)
    top = dist.masked_fill(near, float("inf")).topk(min(k, h * w - 1), dim=2, largest=False).indices
    top = top.repeat_interleave(n, 0).cpu()  # (B*n, h*w, k)
    pick = torch.randint(top.shape[2], (*top.shape[:2], 1), generator=generator)
    return top.gather(2, pick).squeeze(2)


def target_mask(
    n: int, h: int, w: int, fraction: float, block: int = 1, generator: torch.Generator | None = None
) -> torch.Tensor:
    """(n, 1, h, w) float mask of the "target patches" each sample perturbs: ``round(fraction * h * w)`` latent
    positions (exactly, for ``block`` = 1), or the union of ``block`` x ``block`` squares at random places
    covering about that fraction (fewer, larger patches)."""
    if block <= 1:
        keep = round(fraction * h * w)
        scores = torch.rand(n, h * w, generator=generator)
        return torch.zeros(n, h * w).scatter_(1, scores.topk(keep, dim=1).indices, 1.0).view(n, 1, h, w)
    if fraction >= 1:
        return torch.ones(n, 1, h, w)
    gh, gw = -(-h // block), -(-w // block)  # a grid of block cells, cropped back to (h, w)
    keep = max(1, round(fraction * gh * gw)) if fraction > 0 else 0
    scores = torch.rand(n, gh * gw, generator=generator)
    cells = torch.zeros(n, gh * gw).scatter_(1, scores.topk(keep, dim=1).indices, 1.0).view(n, 1, gh, gw)
    return cells.repeat_interleave(block, 2).repeat_interleave(block, 3)[..., :h, :w]
