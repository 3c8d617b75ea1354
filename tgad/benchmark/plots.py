"""The benchmark's figures: per-category bars of the conditions, extra-set sample grids, anomaly-map overlays.

Every figure is written atomically (a killed run leaves no half-written PNG) with the Agg backend.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from tgad.assets.cache import atomic_file  # noqa: E402
from tgad.data.images import read_rgb  # noqa: E402
from tgad.generate.artifact import load_manifest  # noqa: E402

CONDITION_COLOURS = {"shots": "#8c8c8c", "plain_aug": "#4c78a8", "tgad": "#e45756", "tgad_aug": "#f58518"}
_EXTRA_COLOURS = ("#54a24b", "#b279a2", "#9d755d", "#72b7b2", "#eeca3b", "#ff9da6")


def _colour(label: str, index: int) -> str:
    """A condition's colour; a scorer variant (``tgad (none)``) gets its own from a second palette."""
    return CONDITION_COLOURS.get(label) or _EXTRA_COLOURS[index % len(_EXTRA_COLOURS)]


def _save(fig, path: Path) -> Path:
    with atomic_file(path, "wb") as handle:
        fig.savefig(handle, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def save_bars(
    stats: Mapping[str, Mapping[str, tuple[float, float, int]]],
    conditions: Sequence[str],
    path: Path,
    title: str,
    ylabel: str,
) -> Path:
    """Grouped bars: ``stats[category][condition] = (mean, std, n_seeds)``, error bars = std over seeds."""
    categories = list(stats)
    width = 0.8 / max(len(conditions), 1)
    fig, ax = plt.subplots(figsize=(max(4.0, 1.3 * len(categories) + 1.5), 3.2))
    x = np.arange(len(categories))
    for i, condition in enumerate(conditions):
        means = [stats[c].get(condition, (np.nan, 0.0, 0))[0] for c in categories]
        stds = [stats[c].get(condition, (np.nan, 0.0, 0))[1] for c in categories]
        ax.bar(
            x + (i - (len(conditions) - 1) / 2) * width,
            means,
            width,
            yerr=stds,
            capsize=3,
            label=condition,
            color=_colour(condition, i),
        )
    ax.set_xticks(x, categories)
    finite = [v[0] for c in categories for v in stats[c].values() if np.isfinite(v[0])]
    low = min(finite, default=0.5)
    ax.set_ylim(max(0.0, min(0.5, low - 0.05)), 1.02)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.legend(
        fontsize=8, ncols=len(conditions), loc="upper center", bbox_to_anchor=(0.5, -0.1), frameon=False
    )
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, path)


def save_extra_grid(folder: Path, shot_paths: Sequence[str | Path], path: Path, n: int = 15) -> Path:
    """The shots (the caller's: a manifest's ``shot_paths`` are a record, never opened), then the first ``n``
    images of an ExtraSet."""
    manifest = load_manifest(folder)  # every image file checked to lie inside ``folder``
    shots = [(read_rgb(p), f"shot {Path(p).stem}") for p in list(shot_paths)[:4]]
    extra = [(read_rgb(folder / r["file"]), _caption(r)) for r in manifest["images"][:n]]
    tiles = shots + extra
    cols = min(8, len(tiles))
    rows = -(-len(tiles) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(1.6 * cols, 1.75 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, (image, caption) in zip(axes.flat, tiles, strict=False):
        ax.imshow(image.permute(1, 2, 0).numpy())  # (3, H, W) -> (H, W, 3)
        ax.set_title(caption, fontsize=7)
    fig.suptitle(f"{manifest['kind']}: {manifest['category']} ({manifest['n']} images)", fontsize=9)
    return _save(fig, path)


def _caption(record: Mapping[str, object]) -> str:
    text = str(record.get("source_shot", ""))[:10]
    if isinstance(record.get("score"), (int, float)):
        text += f" s={record['score']:.3f}"
    return text


def save_overlays(examples: Sequence, path: Path, title: str) -> Path:
    """Each test image beside its anomaly map over it (one colour scale for all shown, from their own range)."""
    maps = [e.anomaly_map.float() for e in examples]
    low = min(float(m.min()) for m in maps)
    high = max(float(m.max()) for m in maps)
    fig, axes = plt.subplots(2, len(examples), figsize=(2.0 * len(examples), 4.2), squeeze=False)
    for col, example in enumerate(examples):
        image = torch.nn.functional.interpolate(
            read_rgb(example.path)[None], size=example.anomaly_map.shape, mode="bilinear", antialias=True
        )[0]  # (3, H0, W0) -> (3, H, W), the map's size
        image = image.permute(1, 2, 0).clamp(0, 1).numpy()  # (3, H, W) -> (H, W, 3)
        axes[0, col].imshow(image)
        axes[0, col].set_title(f"{'defect' if example.label else 'good'} {example.score:.3g}", fontsize=7)
        axes[1, col].imshow(image)
        axes[1, col].imshow(example.anomaly_map.numpy(), cmap="jet", alpha=0.45, vmin=low, vmax=high)
        if example.mask is not None and example.mask.any():
            axes[1, col].contour(example.mask.numpy(), levels=[0.5], colors="white", linewidths=0.8)
        for ax in axes[:, col]:
            ax.axis("off")
    fig.suptitle(title, fontsize=8)
    return _save(fig, path)
