"""A cache of fitted generators: the VarianceVQGAN fit is the costly part of ``tgad generate`` (minutes on a
CPU) and depends only on the shots, the seed and the preset, so requests that differ after it (the scorer,
tau, N: e.g. a benchmark's selection ablation) share one fit. Files are written atomically and loaded with
``weights_only=True``; a file that does not load (truncated, garbage) is moved aside and the fit redone.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

import torch

import tgad
from tgad.assets.cache import atomic_file, sha256_file
from tgad.assets.weights import ResolvedWeights
from tgad.generate.artifact import cache_key
from tgad.generate.heal import heal_fit_file

logger = logging.getLogger(__name__)


def fit_cache_file(
    folder: str | Path | None, arguments: dict[str, Any], image_size: int, backbone: ResolvedWeights
) -> Path | None:
    """Where the fitted generator of this request is kept: its key covers only what the fit depends on."""
    if folder is None:
        return None
    fit = {
        k: arguments[k] for k in ("dataset", "root", "category", "shot_ids", "shot_sha256", "seed", "preset")
    }
    fit |= {
        "vqgan_iterations": arguments["vqgan_iterations"],
        "vqgan_plateau": arguments.get("vqgan_plateau", 0.0),
        "image_size": image_size,
        "perceptual": backbone.sha256,
        "kind": "variance_vqgan_fit",
        "tgad_version": tgad.__version__,
    }
    vqgan = arguments.get("recipe", {}).get("vqgan")
    if vqgan:  # overridden generator settings (cross_shot_weight, register_shots, ...) are another fit
        fit["vqgan"] = vqgan
    if "hardware" in arguments:  # a fit on a GPU, in bf16 or with DDP is another fit
        fit["hardware"] = arguments["hardware"]
    if "prior" in arguments:  # a fit that started from a prior (its corpus key or file hash) is another fit
        fit["prior"] = arguments["prior"]
    shots = len(arguments["shot_ids"])
    path = Path(folder) / arguments["category"] / f"k{shots}_seed{arguments['seed']}_{cache_key(fit)}.pt"
    heal_fit_file(path)  # a fit that does not load is moved aside (with a warning) and fitted again
    return path


def save_fit(vqgan, path: Path) -> str:
    """Write the fitted VarianceVQGAN's generator weights atomically; returns a provenance note."""
    with atomic_file(path, "wb") as handle:
        torch.save(
            {"state_dict": vqgan.model.state_dict(), "config": dataclasses.asdict(vqgan.config)}, handle
        )
    return f" (saved to {path}, sha256:{sha256_file(path)[:12]})"


def load_fit(vqgan, path: Path) -> str:
    """Load a cached fit (weights_only); a file that does not fit the preset is a one-line error."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    try:
        vqgan.model.load_state_dict(state["state_dict"], strict=True)
    except (KeyError, RuntimeError) as err:
        raise ValueError(
            f"{path}: not a fitted generator of this preset ({err}); delete it to refit"
        ) from err
    logger.info("generator: reusing the fit in %s", path)
    return f" (reused from {path}, sha256:{sha256_file(path)[:12]})"
