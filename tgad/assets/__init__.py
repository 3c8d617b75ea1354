"""The ONE place that decides where tgad's weights and data come from.

Order everywhere: an explicit local file > the tgad cache > a package on disk > a download (when online);
random weights only when explicitly allowed. Every weight lookup answers with a :class:`ResolvedWeights`
that names its source and sha256, so results record what they were computed with.
"""

from __future__ import annotations

import importlib.util

from tgad.assets.backbones import LITE0, create_backbone, resolve_backbone_weights, use_backbone_weights
from tgad.assets.cache import atomic_dir, atomic_file, cache_dir, sha256_file
from tgad.assets.weights import AssetError, ResolvedWeights
from tgad.assets.wordnet import ensure_wordnet

__all__ = [
    "LITE0",
    "AssetError",
    "ResolvedWeights",
    "atomic_dir",
    "atomic_file",
    "cache_dir",
    "create_backbone",
    "ensure_wordnet",
    "resolve_backbone_weights",
    "sha256_file",
    "use_backbone_weights",
]

# CLIP resolution lives in its own module (another issue); re-export it once it exists. Not a try/except
# ImportError: a broken clip.py must fail loudly, not vanish.
if importlib.util.find_spec(f"{__name__}.clip") is not None:
    from tgad.assets import clip

    for _name in getattr(clip, "__all__", []):
        globals()[_name] = getattr(clip, _name)
    __all__ += list(getattr(clip, "__all__", []))
