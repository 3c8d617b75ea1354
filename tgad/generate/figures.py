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


PART_LABELS = {
    "clip_text": "CLIP cosine similarity with P*",
    "shot_fidelity": "shot fidelity (- tail patch distance to the shots)",
}


def save_score_histogram(
    path: str | Path,
    rounds: Sequence[dict],
    final_parts: dict[str, Sequence[float]],
    title: str,
) -> Path:
    """Per round (columns) and recorded score part (rows): kept vs dropped samples; the last column is the
    written images. A scorer that selects well keeps the right-hand side of the shot-fidelity row; under
    random selection (``none``) kept and dropped overlap.

    Args:
        rounds: ``RoundRecord._asdict()`` of every round (``parts``, ``kept``, ``excluded``).
        final_parts: part name -> value of each written image.
    """
    plt = _figure_module()
    names = [p for p in PART_LABELS if any(p in r.get("parts", {}) for r in rounds) or p in final_parts]
    if not names:
        names = ["score"]
    columns = len(rounds) + 1
    fig, axes = plt.subplots(len(names), columns, figsize=(3.0 * columns, 2.4 * len(names)), squeeze=False)
    for row, name in enumerate(names):
        everything = [v for r in rounds for v in _values(r, name)] + list(final_parts.get(name, []))
        lo, hi = (min(everything), max(everything)) if everything else (0.0, 1.0)
        bins = torch.linspace(lo, hi + 1e-6, 21).tolist()
        for col, record in enumerate(rounds):
            ax, values = axes[row, col], _values(record, name)
            kept = set(record.get("kept", []))
            excluded = record.get("excluded", [False] * len(values))
            chosen = [v for i, v in enumerate(values) if i in kept]
            dropped = [v for i, v in enumerate(values) if i not in kept and not excluded[i]]
            ax.hist(dropped, bins=bins, histtype="step", linewidth=1.5, color="tab:gray", label="dropped")
            ax.hist(chosen, bins=bins, alpha=0.6, color="tab:green", label="kept")
            ax.set_title(f"round {record.get('round', col)} ({record.get('scorer') or 'scorer'})", fontsize=8)
            if col == 0:
                ax.set_ylabel(PART_LABELS.get(name, name), fontsize=7)
        ax = axes[row, -1]
        ax.hist(list(final_parts.get(name, [])), bins=bins, alpha=0.6, color="tab:red", label="written")
        ax.set_title("written images", fontsize=8)
        for ax in axes[row]:
            ax.tick_params(labelsize=6)
            ax.legend(fontsize=6)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return _save(plt, fig, path)


def _values(record: dict, name: str) -> list[float]:
    return list(record.get("parts", {}).get(name, record.get("scores", []) if name == "score" else []))
