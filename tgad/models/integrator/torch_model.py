"""The Integrator's pieces as plain PyTorch (no Lightning): pools of samples, differentiable samples for the
CLIP term, CLIP embeddings and feature vectors for the diversity term."""

from __future__ import annotations

import math
import pickle
from pathlib import Path
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from tgad.assets.cache import sha256_file
from tgad.models.variance_vqgan.sampling import perturbed_latents
from tgad.models.variance_vqgan.torch_model import SampleMode, VarianceVQGANModel
from tgad.text.clip_embed import encode_images

from .selection import quantize_uint8


class Pool(NamedTuple):
    images: torch.Tensor  # (N, 3, H, W) in [0, 1], on the 8-bit grid
    shot_index: torch.Tensor  # (N,) int64: which shot each sample was drawn from
    changed: torch.Tensor  # (N,) fraction of latent positions whose code differs from the shot's


@torch.no_grad()
def draw_pool(
    model: VarianceVQGANModel,
    shots: torch.Tensor,
    n: int,
    tau: float,
    patch_fraction: float,
    generator: torch.Generator,
    mode: SampleMode = "residual",
    block: int = 1,
    code_neighbors: int = 1,
    self_similar: int = 0,
) -> Pool:
    """``n`` samples spread evenly over the shots (k, 3, H, W): shot i gives samples i, i + k, ..."""
    k = len(shots)
    per_shot = math.ceil(n / k)
    out = model.sample(
        shots,
        per_shot,
        tau=tau,
        patch_fraction=patch_fraction,
        generator=generator,
        mode=mode,
        block=block,
        code_neighbors=code_neighbors,
        self_similar=self_similar,
    )
    images = out.images.transpose(0, 1).flatten(0, 1)[:n]  # (per_shot*k, 3, H, W), shot-interleaved
    shot_index = torch.arange(k).repeat(per_shot)[:n]
    changed = out.changed.transpose(0, 1).flatten()[:n]
    return Pool(quantize_uint8(images), shot_index, changed)


def differentiable_samples(
    model: VarianceVQGANModel,
    shots: torch.Tensor,
    n: int,
    tau: float,
    patch_fraction: float,
    generator: torch.Generator | None = None,
    mode: SampleMode = "residual",
    variance_grad: bool = True,
    block: int = 1,
    self_similar: int = 0,
) -> torch.Tensor:
    """Samples like ``VarianceVQGANModel.sample`` but with gradients to the encoder, decoder and variance head.

    Quantisation passes gradients straight through (z' + (q' - z').detach()), so the forward values equal the
    sampler's while the decoder, the encoder and the predicted variance all learn from a loss on the images.
    ``variance_grad=False`` detaches the predicted spread: a loss that rewards closeness to the shots would
    otherwise simply shrink it (Adam takes full-size steps on the variance head whatever the loss's size).
    Returns (k*n, 3, H, W), sample j of shot i at i*n + j. The quantiser must be in eval mode (no EMA update).
    """
    enc = model.encode(shots)
    logvar = enc.logvar if variance_grad else enc.logvar.detach()
    z, _ = perturbed_latents(enc.z_e, logvar, n, tau, patch_fraction, generator, block, self_similar)
    codes = model.quantizer.lookup(model.quantizer.nearest(z.detach()))
    decoded = model.decode(z + (codes - z).detach())  # (k*n, 3, H, W)
    if mode == "direct":
        return decoded.clamp(0, 1)
    base = model.decode(enc.quantized).repeat_interleave(n, 0)
    return (shots.repeat_interleave(n, 0) + decoded - base).clamp(0, 1)


def clip_image_embeddings(clip: nn.Module, images: torch.Tensor, batch_size: int = 32) -> torch.Tensor:
    """(B, D) L2-normalised CLIP embeddings of [0, 1] images; gradients reach ``images`` if they require them."""
    return encode_images(clip, images, batch_size)


@torch.no_grad()
def feature_vectors(perceptual: nn.Module, images: torch.Tensor, batch_size: int = 16) -> torch.Tensor:
    """(B, F) vectors whose squared Euclidean distance is the LPIPS-like distance of
    ``variance_vqgan.loss.PerceptualLoss.distance``: channel-normalised maps, scaled by 1/sqrt(positions)."""
    rows = []
    for start in range(0, len(images), batch_size):
        x = images[start : start + batch_size]
        rows.append(vectors_from_maps(perceptual.backbone((x - perceptual.mean) / perceptual.std)))
    return torch.cat(rows)


def vectors_from_maps(maps: list[torch.Tensor]) -> torch.Tensor:
    """The backbone's maps of B images -> (B, F) diversity vectors (:func:`feature_vectors`)."""
    parts = [F.normalize(f, dim=1).flatten(1) / math.sqrt(f.shape[-2] * f.shape[-1]) for f in maps]
    return torch.cat(parts, dim=1) / math.sqrt(len(maps))  # (B, sum C_l h_l w_l)


def random_crop(x: torch.Tensor, size: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """One random crop window shared by every image in ``x`` (B, 3, H, W); size 0 or >= H keeps the image."""
    h, w = x.shape[-2:]
    if not size or size >= min(h, w):
        return x
    top = int(torch.randint(h - size + 1, (), generator=generator))
    left = int(torch.randint(w - size + 1, (), generator=generator))
    return x[..., top : top + size, left : left + size]


def load_generator_state(model: VarianceVQGANModel, path: str | Path) -> str:
    """Load the ``model.*`` weights of a VarianceVQGAN Lightning checkpoint (weights_only) into ``model``.

    Returns:
        Provenance: the resolved path and the first 12 hex digits of its sha256.
    """
    file = Path(path).expanduser()
    if not file.is_file():
        raise FileNotFoundError(
            f"generator_checkpoint={path} not found; fit one first: "
            "tgad fit --config conf/variance_vqgan/<preset>.yaml"
        )
    try:
        ckpt = torch.load(file, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:  # torch's message advises weights_only=False: never that
        raise ValueError(
            f"generator_checkpoint={path} holds pickled Python objects besides tensors, which tgad does not "
            f"unpickle; fit the generator with tgad: tgad fit --config conf/variance_vqgan/<preset>.yaml"
        ) from err
    state = {k[6:]: v for k, v in ckpt.get("state_dict", {}).items() if k.startswith("model.")}
    if not state:
        raise ValueError(f"generator_checkpoint={path} holds no VarianceVQGAN weights (no 'model.*' keys)")
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise ValueError(
            f"generator_checkpoint={path} does not fit the Integrator's generator settings (set `generator` to "
            f"the fitted VarianceVQGAN's config): {str(err).splitlines()[0]}"
        ) from err
    return f"{file.resolve()} sha256:{sha256_file(file)[:12]}"
