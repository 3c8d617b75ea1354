"""The ONE place that decides where tgad's weights and data come from.

Order everywhere: an explicit local file > the tgad cache > a package on disk > a download (when online);
random weights only when explicitly allowed. Every weight lookup answers with a :class:`ResolvedWeights`
that names its source and sha256, so results record what they were computed with.
"""

from __future__ import annotations

from tgad.assets.backbones import LITE0, create_backbone, resolve_backbone_weights, use_backbone_weights
from tgad.assets.cache import atomic_dir, atomic_file, cache_dir, sha256_file
from tgad.assets.clip import (
    CHECKPOINT_SUFFIXES,
    TINY_CLIP,
    clip_weight_sources,
    clip_weights_available,
    resolve_clip,
)
from tgad.assets.weights import AssetError, ResolvedWeights
from tgad.assets.wordnet import ensure_wordnet

__all__ = [
    "CHECKPOINT_SUFFIXES",
    "LITE0",
    "TINY_CLIP",
    "AssetError",
    "ResolvedWeights",
    "atomic_dir",
    "atomic_file",
    "cache_dir",
    "clip_weight_sources",
    "clip_weights_available",
    "create_backbone",
    "ensure_wordnet",
    "resolve_backbone_weights",
    "resolve_clip",
    "sha256_file",
    "use_backbone_weights",
]
