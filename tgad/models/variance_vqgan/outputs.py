"""What the VarianceVQGAN's networks return, in a module of its own: ``torch_model`` (tgad's layout) and
``taming_layout`` (taming-transformers' layout) both build encoders that return ``EncoderFeatures``, and
``torch_model`` builds either layout, so the shared types live below both."""

from __future__ import annotations

from typing import Literal, NamedTuple

import torch

SampleMode = Literal["residual", "direct"]


class EncoderFeatures(NamedTuple):
    z_e: torch.Tensor  # (B, d, h, w) continuous latents
    hidden: torch.Tensor  # (B, C, h, w) features the latents are projected from; input of the variance head


class QuantizerOutput(NamedTuple):
    quantized: torch.Tensor  # (B, d, h, w); straight-through when gradients flow, exact codes otherwise
    indices: torch.Tensor  # (B, h, w) int64
    commit_loss: torch.Tensor  # scalar
    perplexity: torch.Tensor  # scalar: exp(entropy) of the code histogram of this batch


class EncodeOutput(NamedTuple):
    z_e: torch.Tensor  # (B, d, h, w) continuous latents E(x)
    logvar: torch.Tensor  # (B, d, h, w) predicted log Sigma(x)
    quantized: torch.Tensor  # (B, d, h, w)
    indices: torch.Tensor  # (B, h, w)
    commit_loss: torch.Tensor
    perplexity: torch.Tensor


class ModelOutput(NamedTuple):
    reconstruction: torch.Tensor  # (B, 3, H, W) in [0, 1] scale, not clamped (losses need the raw values)
    encoded: EncodeOutput


class SampleOutput(NamedTuple):
    images: torch.Tensor  # (B, n, 3, H, W) in [0, 1]
    indices: torch.Tensor  # (B, n, h, w) codes of each sample
    changed: torch.Tensor  # (B, n) fraction of latent positions whose code differs from the input's
