"""A cache of fitted generators: the VarianceVQGAN fit is the costly part of ``tgad generate`` (minutes on a
CPU) and depends only on the shots, the seed, the run settings and the generator's config
(``artifact.fit_arguments``, from the same request as the ExtraSet key), so requests that differ after it (the scorer,
tau, N: e.g. a benchmark's selection ablation) share one fit. Files are written atomically and loaded with
``weights_only=True``; a file that does not load (truncated, garbage) is moved aside and the fit redone.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

import torch

from tgad.assets.cache import atomic_file, sha256_file
from tgad.assets.weights import ResolvedWeights
from tgad.generate.artifact import cache_key, fit_arguments
from tgad.generate.heal import heal_fit_file

logger = logging.getLogger(__name__)


def fit_cache_file(
    folder: str | Path | None, arguments: dict[str, Any], backbone: ResolvedWeights
) -> Path | None:
    """Where the fitted generator of a request (its ``ExtraSetRequest.arguments``) is kept: its key is
    ``artifact.fit_arguments`` of them (what the fit depends on) and the perceptual backbone's hash."""
    if folder is None:
        return None
    key = cache_key(fit_arguments(arguments) | {"perceptual": backbone.sha256})
    shots = len(arguments["shot_ids"])
    path = Path(folder) / arguments["category"] / f"k{shots}_seed{arguments['seed']}_{key}.pt"
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
