"""CLIP embeddings as pure functions: batched, L2-normalised text and image features.

Text embeddings are cached per (model fingerprint, prompt tuple) so that the PromptSelector and the
Integrator, or several runs of one class in a process, encode each prompt list once.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from tgad.assets.clip import preprocess_cfg  # the weights' statistics: recorded by assets, read here

_TEXT_CACHE: OrderedDict[tuple[str, tuple[str, ...]], torch.Tensor] = OrderedDict()
_TEXT_CACHE_SIZE = 32
_stats = {"hits": 0, "misses": 0}


def model_fingerprint(model: nn.Module, samples_per_tensor: int = 64) -> str:
    """A cheap hash of a strided sample of every parameter: two differently initialised or loaded models differ.

    Why not ``id(model)``: ids are reused after garbage collection, and two random models share a weights tag.
    """
    digest = hashlib.sha1()
    for name, param in model.state_dict().items():
        flat = param.detach().reshape(-1)
        step = max(1, flat.numel() // samples_per_tensor)
        digest.update(name.encode())
        digest.update(flat[::step][:samples_per_tensor].float().cpu().numpy().tobytes())
    return digest.hexdigest()[:16]


def text_cache_info() -> dict[str, int]:
    return {**_stats, "size": len(_TEXT_CACHE)}


def clear_text_cache() -> None:
    _TEXT_CACHE.clear()
    _stats.update(hits=0, misses=0)


@torch.no_grad()
def encode_text(
    model: nn.Module,
    tokenizer: Callable[[list[str]], torch.Tensor],
    prompts: Sequence[str],
    batch_size: int = 256,
    cache: bool = True,
) -> torch.Tensor:
    """Embed prompts with CLIP's text tower.

    Returns:
        (N, D) float32 tensor on the model's device, rows L2-normalised, in the order of ``prompts``.
    """
    if not prompts:
        raise ValueError("encode_text needs at least one prompt")
    device = next(model.parameters()).device
    key = (model_fingerprint(model), str(device), tuple(prompts))  # a moved model answers on its new device
    if cache and key in _TEXT_CACHE:
        _stats["hits"] += 1
        _TEXT_CACHE.move_to_end(key)
        return _TEXT_CACHE[key].clone()
    _stats["misses"] += 1
    was_training = model.training
    model.eval()
    chunks = []
    for start in range(0, len(prompts), batch_size):
        tokens = tokenizer(list(prompts[start : start + batch_size])).to(device)  # (b, context_length)
        chunks.append(F.normalize(model.encode_text(tokens).float(), dim=-1))  # (b, D)
    model.train(was_training)
    out = torch.cat(chunks)  # (N, D)
    if cache:
        _TEXT_CACHE[key] = out.clone()
        while len(_TEXT_CACHE) > _TEXT_CACHE_SIZE:
            _TEXT_CACHE.popitem(last=False)
    return out


def prepare_images(model: nn.Module, images: torch.Tensor | Sequence[torch.Tensor]) -> torch.Tensor:
    """[0, 1] RGB images -> CLIP input: shorter side resized (bicubic) to the model's size, centre-cropped,
    normalised with the model's mean/std (as open_clip's eval transform does, but on tensors, differentiably).

    Args:
        images: (B, 3, H, W) tensor or a list of (3, H, W) tensors of any sizes.

    Returns:
        (B, 3, S, S) tensor.
    """
    size, mean, std = preprocess_cfg(model)
    items = [images] if isinstance(images, torch.Tensor) else list(images)
    if not items:
        raise ValueError("no images to embed")
    out = []
    for x in items:
        x = x if x.dim() == 4 else x.unsqueeze(0)  # (b, 3, H, W)
        if x.shape[1] != 3:
            raise ValueError(f"CLIP images must be RGB (b, 3, H, W), got shape {tuple(x.shape)}")
        h, w = x.shape[-2:]
        scale = size / min(h, w)
        nh, nw = max(size, round(h * scale)), max(size, round(w * scale))
        if (nh, nw) != (h, w):
            x = F.interpolate(x, size=(nh, nw), mode="bicubic", align_corners=False, antialias=True)
        top, left = (nh - size) // 2, (nw - size) // 2
        x = x[..., top : top + size, left : left + size].clamp(0, 1)  # (b, 3, S, S)
        out.append(x)
    x = torch.cat(out)
    mean_t = torch.tensor(mean, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    std_t = torch.tensor(std, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x - mean_t) / std_t


def encode_images(
    model: nn.Module, images: torch.Tensor | Sequence[torch.Tensor], batch_size: int = 64
) -> torch.Tensor:
    """Embed [0, 1] RGB images with CLIP's image tower (gradients flow to ``images`` if they require them).

    Returns:
        (B, D) float32 tensor, rows L2-normalised.
    """
    device = next(model.parameters()).device
    x = prepare_images(model, images).to(device)  # (B, 3, S, S)
    was_training = model.training
    model.eval()
    feats = [model.encode_image(x[i : i + batch_size]).float() for i in range(0, len(x), batch_size)]
    model.train(was_training)
    return F.normalize(torch.cat(feats), dim=-1)  # (B, D)
