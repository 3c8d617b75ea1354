"""Figures of a generated set: a grid of shots and generated images, and a histogram of scores per round.

matplotlib with the Agg backend (no display needed); both are written with ``atomic_file``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import torch

from tgad.assets.cache import atomic_file


def _save(plt, fig, path: str | Path) -> Path:
    """Write the figure atomically (a killed run leaves no half-written PNG) and free it."""
    path = Path(path)
    with atomic_file(path, "wb") as handle:
        fig.savefig(handle, format="png", dpi=100)
    plt.close(fig)
    return path


def _figure_module():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def save_grid(
    path: str | Path,
    shots: torch.Tensor,
    images: torch.Tensor,
    captions: Sequence[str],
    title: str,
    columns: int = 8,
    max_images: int = 64,
) -> Path:
    """First row: the shots; then the generated images (at most ``max_images``), each captioned.

    Args:
        shots: (k, 3, H, W) in [0, 1]. images: (N, 3, H, W) in [0, 1]. captions: one per image.
    """
    plt = _figure_module()
    images = images[:max_images]
    shown_shots = shots[:columns]
    rows = 1 + math.ceil(len(images) / columns)
    side = max(1.2, min(2.7, shots.shape[-1] / 100 + 0.14))  # about native size at 100 dpi up to 256 px
    fig, axes = plt.subplots(rows, columns, figsize=(columns * side, rows * (side + 0.2)), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for i, shot in enumerate(shown_shots):
        axes[0, i].imshow(shot.permute(1, 2, 0).clamp(0, 1).numpy())
        axes[0, i].set_title(f"shot {i}", fontsize=8, color="tab:blue")
    for i, (image, caption) in enumerate(zip(images, captions, strict=False)):
        ax = axes[1 + i // columns, i % columns]
        ax.imshow(image.permute(1, 2, 0).clamp(0, 1).numpy())
        ax.set_title(caption, fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return _save(plt, fig, path)


def save_score_histogram(
    path: str | Path,
    round_scores: Sequence[Sequence[float]],
    thresholds: Sequence[float],
    final_scores: Sequence[float],
    title: str,
) -> Path:
    """One step histogram per round (all M samples) and one of the written images, with the gates marked."""
    plt = _figure_module()
    fig, ax = plt.subplots(figsize=(7, 4))
    everything = [s for r in round_scores for s in r] + list(final_scores)
    lo, hi = (min(everything), max(everything)) if everything else (0.0, 1.0)
    bins = torch.linspace(lo, hi + 1e-6, 31).tolist()
    cmap = plt.get_cmap("viridis")
    for r, scores in enumerate(round_scores):
        color = cmap(r / max(1, len(round_scores)))
        ax.hist(scores, bins=bins, histtype="step", linewidth=1.5, color=color, label=f"round {r} (all)")
        if r < len(thresholds):
            ax.axvline(thresholds[r], color=color, linestyle=":", linewidth=1)
    if final_scores:
        ax.hist(final_scores, bins=bins, alpha=0.3, color="tab:red", label=f"written ({len(final_scores)})")
    ax.set_xlabel("CLIP cosine similarity with P*")
    ax.set_ylabel("images")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return _save(plt, fig, path)
