"""Selected extra sets: candidates from plain augmentation (and the generator), kept by ``defect_safe``.

Plain augmentation adds variation, but on many classes it hides defects almost as much as it explains normal
variation (METHOD.md section 5): a rotated copy of a round part helps, a rotated transistor is itself a defect.
Here the candidates are scored by the ``defect_safe`` scorer against the shots alone (the variation a candidate
adds, minus how much it hides synthetic defects of the shots) and the best of them are kept, diverse:

* ``aug_select``: candidates are ``pool_factor * n`` plainly augmented copies of the shots (the first ``n`` are
  exactly the ``plain_aug`` set of the same seed, so it selects from a superset of that control);
* ``tgad_select``: the same augmentation candidates plus a generated ExtraSet's images and those images through
  plain augmentation's transforms (the ``tgad_aug`` images): the scorer decides which source serves the class.

Selection: the best ``pass_fraction`` of the pool by score pass; greedy farthest-point among them in patch
feature space, seeded with the shots, picks ``n`` (as the Integrator keeps its samples).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from tgad.data.images import read_resized
from tgad.features.patches import detector_features
from tgad.generate.artifact import load_manifest, write_extra_set
from tgad.generate.augment import PlainAugConfig, augment_shots

DEFECT_RULES = ("max", "region_z")


@dataclass(frozen=True)
class SelectConfig:
    """How candidates are ranked. ``defect_rule``: ``max`` ranks by ``defect_safe`` as the Integrator scores
    (its ``defect_cover`` follows each synthetic defect's largest patch distance); ``region_z`` standardises
    over the pool, z(novelty - outlier_weight * implausible) - region_weight * z(region cover), the cover
    taken over each synthetic defect's own patches (``DefectSafe.region_covers``), so the defect term moves
    the ranking as much as the rest does (issue 23's selection analysis)."""

    pool_factor: int = 3  # augmentation candidates per kept image
    pass_fraction: float = 0.5  # share of the pool that passes the score gate
    defect_weight: float = 2.0  # defect_safe (tgad.models.integrator.defect_safe)
    outlier_weight: float = 0.5  # defect_safe: weight of patches beyond the shots' internal radius
    defect_count: int = 8
    radius_quantile: float = 0.9  # defect_safe's internal radius
    views: int = 8  # the shots' reference bank: each shot and 7 mild views
    defect_rule: str = "max"
    region_weight: float = 1.0  # region_z: weight of the standardised region cover

    def __post_init__(self) -> None:
        if self.defect_rule not in DEFECT_RULES:
            raise ValueError(f"SelectConfig: defect_rule={self.defect_rule!r}; choose one of {DEFECT_RULES}")
        if self.region_weight < 0:
            raise ValueError(f"SelectConfig: region_weight={self.region_weight} must be >= 0")

    @property
    def score_part(self) -> str:
        """The part that ranks candidates (``select_candidates`` names it so in the parts it returns)."""
        return "defect_safe" if self.defect_rule == "max" else "region_z"

    def recorded(self) -> dict:
        """The settings as keys and manifests record them: the fields added with ``region_z`` only when the
        rule is on, so every set made by the ``max`` rule keeps the key and the manifest it was written with."""
        out = asdict(self)
        if self.defect_rule == "max":
            del out["defect_rule"], out["region_weight"]
        return out


def _candidates(
    shots: torch.Tensor,
    shot_ids: Sequence[str],
    n: int,
    seed: int,
    config: SelectConfig,
    generated: Path | None,
    size: int,
) -> tuple[torch.Tensor, list[dict]]:
    """(C, 3, H, W) candidates and one record each (source, shot)."""
    pairs = augment_shots(list(shots), config.pool_factor * n, seed, PlainAugConfig())
    images = [image for image, _ in pairs]
    records = [
        {"source": "augment", "source_shot": shot_ids[s], "index": i} for i, (_, s) in enumerate(pairs)
    ]
    if generated is not None:
        manifest = load_manifest(generated)
        by_id = {sid: i for i, sid in enumerate(shot_ids)}
        gen = read_resized([generated / r["file"] for r in manifest["images"]], size)
        augmented = augment_shots(
            list(gen), len(gen), seed, PlainAugConfig()
        )  # image i: plain_aug's transform i
        for i, record in enumerate(manifest["images"]):
            shot = record["source_shot"] if record["source_shot"] in by_id else shot_ids[0]
            images.append(gen[i])
            records.append({"source": "generated", "source_shot": shot, "source_image": record["file"]})
            images.append(augmented[i][0])
            records.append({"source": "generated_aug", "source_shot": shot, "source_image": record["file"]})
    return torch.stack(images), records


@torch.no_grad()
def select_candidates(
    shots: torch.Tensor, candidates: torch.Tensor, n: int, config: SelectConfig, seed: int
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """(indices of the ``n`` kept candidates, every candidate's defect_safe parts)."""
    from tgad.models.integrator.defect_safe import DefectSafe
    from tgad.models.integrator.scorers import view_bank
    from tgad.models.integrator.selection import select_diverse

    features = detector_features()
    bank = view_bank(features, shots, config.views, seed)
    safe = DefectSafe(
        features,
        bank,
        shots,
        config.defect_count,
        config.defect_weight,
        config.outlier_weight,
        config.radius_quantile,
        seed,
    )
    region = config.defect_rule == "region_z"
    parts, vectors = safe.score_parts_and_pooled(candidates, region)  # vectors (C, channels): mean features
    if region:
        parts["region_z"] = _standardised(parts["novelty"] - config.outlier_weight * parts["implausible"])
        parts["region_z"] -= config.region_weight * _standardised(parts["region_cover"])
    anchors = features(shots).mean(1)  # (k, C) image-level features of the shots
    chosen = select_diverse(parts[config.score_part], vectors, n, config.pass_fraction, anchors)
    return chosen.kept, parts


def _standardised(values: torch.Tensor) -> torch.Tensor:
    """z-scores over the pool (a constant pool: zeros)."""
    return (values - values.mean()) / values.std().clamp_min(1e-12) if len(values) > 1 else values * 0


def make_selected_set(
    out_dir: str | Path,
    shot_paths: Sequence[str | Path],
    shot_ids: Sequence[str],
    *,
    n: int,
    seed: int,
    dataset: str,
    category: str,
    image_size: int,
    generated: str | Path | None = None,
    config: SelectConfig = SelectConfig(),
    key: str | None = None,
) -> Path:
    """Write the ``n`` selected candidates as an ExtraSet (kind ``aug_select``, or ``tgad_select`` when a
    ``generated`` ExtraSet folder adds its images to the pool)."""
    start = time.perf_counter()
    shots = read_resized(shot_paths, image_size)
    generated = Path(generated) if generated else None
    candidates, records = _candidates(shots, shot_ids, n, seed, config, generated, image_size)
    kept, parts = select_candidates(shots, candidates, n, config, seed)
    out_records = []
    for i in kept.tolist():
        values = {name: round(float(v[i]), 6) for name, v in parts.items()}
        out_records.append({**records[i], "score": values[config.score_part], "parts": values})
    sources = [r["source"] for r in out_records]
    extra = {"kept_by_source": {s: sources.count(s) for s in dict.fromkeys(r["source"] for r in records)}}
    extra["pool_by_source"] = {s: [r["source"] for r in records].count(s) for s in extra["kept_by_source"]}
    extra["pool_mean"] = {name: float(v.mean()) for name, v in parts.items()}
    kind = "tgad_select" if generated else "aug_select"
    source = None
    weights = None
    if generated:
        manifest = load_manifest(generated)
        source = {
            "path": str(generated),
            "cache_key": manifest.get("cache_key"),
            "scorer": manifest.get("scorer"),
        }
        weights = manifest.get("weights")
    return write_extra_set(
        out_dir,
        (candidates[i] for i in kept.tolist()),
        out_records,
        kind=kind,
        dataset=dataset,
        category=category,
        shot_ids=shot_ids,
        shot_paths=shot_paths,
        seed=seed,
        config={
            "select": config.recorded(),
            "augment": asdict(PlainAugConfig()),
            "image_size": image_size,
            "source": source,
            "selection": extra,
        },
        weights=weights,
        timings={"select_seconds": time.perf_counter() - start},
        key=key,
    )
