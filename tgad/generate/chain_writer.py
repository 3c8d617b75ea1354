"""Writing a generated set: images and manifest through ``artifact.write_extra_set``, plus the grid, the
score histogram and the prompt table, all inside one temporary folder renamed into place at the end."""

from __future__ import annotations

import json
import math
import os
import re
import resource
import shutil
import time
from pathlib import Path
from typing import Any

import torch

from tgad.assets.cache import atomic_dir, atomic_file
from tgad.generate import figures  # the module, so a test can replace a figure writer
from tgad.generate.artifact import MANIFEST, load_manifest, validate_manifest, write_extra_set
from tgad.models.prompt_selector import save_selection
from tgad.models.prompt_selector.selector import SELECTION_JSON, TABLE_CSV

GRID_PNG = "grid.png"
HISTOGRAM_PNG = "scores_per_round.png"
_IMAGE_NAME = re.compile(r"train/good/\d{4,}\.png")  # how ``artifact.write_extra_set`` names its images


NEAR_COPY_MEAN_ABS = 2 / 255  # below this mean |image - shot| the written images add (almost) nothing new


def collapse_report(integrator, final, shots: torch.Tensor) -> dict[str, Any]:
    """Collapse (no variety at all: the final draw's guard) and near-copies (variety too small to matter)."""
    diff = (final.images - shots[final.shot_index]).abs().flatten(1).mean(1)  # (N,)
    mean_diff = float(diff.mean())
    return {
        "collapsed": bool(final.check.collapsed),
        "reason": final.check.reason or None,
        "rounds_collapsed": [r.round for r in integrator.history if r.collapsed],
        "distinct_in_final_draw": final.check.distinct,
        "pixel_spread_final_draw": final.check.pixel_spread,
        "copy_fraction_final_draw": float(final.check.copies.float().mean()),
        "written_copies": int((final.changed == 0).sum()),
        "mean_abs_diff_to_shot": mean_diff,
        "near_copies": mean_diff < NEAR_COPY_MEAN_ABS,
    }


def check_out_dir(out_dir: str | Path) -> None:
    """``--out`` is new, empty, or an ExtraSet holding only tgad's own files: a new set replaces the whole
    folder, and ``--out .`` must never delete a working tree, nor ``--out`` a note the user put there."""
    out_dir = Path(out_dir)
    if out_dir.exists() and (
        not out_dir.is_dir() or (any(out_dir.iterdir()) and not (out_dir / MANIFEST).is_file())
    ):
        raise FileExistsError(
            f"--out {out_dir}: exists and is not an ExtraSet folder (no {MANIFEST}); choose a new or empty folder"
        )
    if out_dir.is_dir() and (foreign := foreign_files(out_dir)):
        shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
        raise FileExistsError(
            f"--out {out_dir}: holds files tgad did not write ({shown}); a new ExtraSet replaces the folder "
            "and would delete them: move them out, or choose another --out"
        )


def foreign_files(folder: Path) -> list[str]:
    """Files under an ExtraSet folder that tgad did not write there (a user's notes, say), sorted: replacing the
    folder with a new set would delete them. tgad's own are the manifest, the images it lists (``NNNN.png``
    under ``train/good`` when the manifest does not load), the figures and the prompt table."""
    folder = Path(folder)
    try:
        records = json.loads((folder / MANIFEST).read_text()).get("images")
        listed = {r["file"] for r in records if isinstance(r, dict) and isinstance(r.get("file"), str)}
    except (OSError, ValueError, AttributeError, TypeError):  # unreadable: its images by their names
        listed = None
    own = {MANIFEST, GRID_PNG, HISTOGRAM_PNG, SELECTION_JSON, TABLE_CSV}
    found = []
    for path in sorted(folder.rglob("*")):
        if path.is_dir() and not path.is_symlink():
            continue
        name = path.relative_to(folder).as_posix()
        ours = name in listed if listed is not None else _IMAGE_NAME.fullmatch(name) is not None
        if name not in own and not ours:
            found.append(name)
    return found


def write_generated_set(
    out_dir: Path,
    shots: torch.Tensor,
    final,
    shot_ids: list[str],
    shot_paths: list[Path],
    timings: dict[str, float],
    meta: dict[str, Any],
    key: str,
) -> Path:
    """Images + manifest (``artifact.write_extra_set``) plus figures and the prompt table, all inside one
    temporary folder renamed into place at the end: an exception anywhere leaves no complete-looking folder."""
    selection, integrator = meta["selection"], meta["integrator"]
    records = _records(final, shot_ids, shot_paths)
    with atomic_dir(out_dir) as tmp:
        inner = write_extra_set(
            tmp / "set",
            final.images,
            records,
            kind="tgad",
            dataset=meta["arguments"]["dataset"],
            category=meta["arguments"]["category"],
            shot_ids=shot_ids,
            shot_paths=shot_paths,
            seed=meta["arguments"]["seed"],
            config=_config(meta, int(shots.shape[-1])),
            weights=_weights(meta),
            timings=timings,
            key=key,
        )
        for item in inner.iterdir():
            shutil.move(str(item), tmp / item.name)
        inner.rmdir()
        manifest = load_manifest(tmp)
        captions = [f"{r['score']:.3f} r{r['round']} s{shot_ids.index(r['source_shot'])}" for r in records]
        title = f"{manifest['category']}: " + (
            f"P* = {selection.best_prompt!r}, clip {selection.clip_weights}"
            if selection is not None
            else f"scorer {integrator.scorer_name} (no CLIP, no P*)"
        )
        figures.save_grid(tmp / GRID_PNG, shots, final.images, captions, title)
        figures.save_score_histogram(
            tmp / HISTOGRAM_PNG,
            [r._asdict() for r in integrator.history],
            {name: values.tolist() for name, values in final.parts.items()},
            title,
        )
        if selection is not None:
            save_selection(selection, tmp, category=manifest["category"])
        manifest.update(_generation_fields(meta, final))
        manifest["timings"]["total_seconds"] = round(time.perf_counter() - meta["started"], 3)
        validate_manifest(manifest, tmp)
        with atomic_file(tmp / MANIFEST) as handle:
            json.dump(_jsonable(manifest), handle, indent=2)
    return out_dir


def _records(final, shot_ids: list[str], shot_paths: list[Path]) -> list[dict[str, Any]]:
    """One record per written image: its shot, score, round, codes changed, novelty and raw score parts."""
    return [
        {
            "source_shot": shot_ids[int(s)],
            "source_shot_path": str(shot_paths[int(s)]),
            "score": float(score),
            "round": int(r),
            "codes_changed": round(float(c), 4),
            "novelty": round(float(v), 6),
            **{name: float(values[i]) for name, values in final.parts.items()},  # raw score parts
        }
        for i, (s, score, r, c, v) in enumerate(
            zip(final.shot_index, final.scores, final.rounds, final.changed, final.novelty, strict=True)
        )
    ]


def _config(meta: dict[str, Any], image_size: int) -> dict[str, Any]:
    """The settings that made the images: the recipe (preset + overrides) and every resolved config."""
    integrator = meta["integrator"]
    return {
        "preset": meta["arguments"]["preset"],
        "recipe": meta.get("recipe"),
        "image_size": image_size,
        "resolution_note": "images are written at the recipe's generator_image_size (shots resized to it)",
        "vqgan_iterations": meta["iterations"],
        "vqgan": meta["vqgan_config"],
        "integrator": integrator.config.flat(),
        "sample_mode": integrator.hparams.sample_mode,
        "diversity_space": integrator.hparams.diversity_space,
        "prompt_selector": None
        if meta["selection"] is None
        else {"num_words": len(meta["selection"].words), "clip_model": meta["judges"].clip_weights.name},
        "arguments": meta["arguments"],
    }


def _weights(meta: dict[str, Any]) -> dict[str, Any]:
    clip_w, backbone_w = meta["judges"].clip_weights, meta["judges"].backbone_weights
    return {
        # None: no scorer read CLIP, so none was built (``judges.needs_clip``)
        "clip": None
        if clip_w is None
        else clip_w.to_dict() | {"describe": clip_w.describe(), "is_random": clip_w.is_random},
        "backbone": backbone_w.to_dict()
        | {"describe": backbone_w.describe(), "is_random": backbone_w.is_random},
    }


def _generation_fields(meta: dict[str, Any], final) -> dict[str, Any]:
    """What only a generated set has in its manifest: P*, tau, scores, rounds, collapse, resources."""
    selection, integrator = meta["selection"], meta["integrator"]
    cfg, scores = integrator.config, final.scores.float()
    prompt = (
        {
            "best_prompt": selection.best_prompt,
            "best_prompt_score": selection.best_score,
            "object_name": selection.object_name,
            "synset": selection.synset,
            "clip_weights": selection.clip_weights,
        }
        if selection is not None
        else {
            "best_prompt": None,
            "prompt_skipped": f"the {integrator.scorer_name} scorer reads no CLIP, so none was built",
            "clip_weights": None,
        }
    )
    return {
        **prompt,
        "random_clip": meta["judges"].clip_is_random,
        "tau": integrator.tau,
        "tau_requested": cfg.tau,
        "tau_calibration": integrator.tau_calibration,
        "patch_fraction": cfg.patch_fraction,
        "score_summary": {
            "mean": float(scores.mean()),
            "min": float(scores.min()),
            "max": float(scores.max()),
            "threshold": final.threshold,
            "candidates": final.candidates,
        },
        "scorer": integrator.provenance.get("scorer"),
        "rounds": [r._asdict() for r in integrator.history],
        "collapse": meta["collapse"],
        "collapsed": meta["collapse"]["collapsed"],
        "generator": integrator.provenance.get("generator"),
        # where the generator fit started: none (pure k-shot), other_categories:<names> or file:<sha12>
        "prior": meta.get("prior", {"label": "none"}),
        "key_schema": meta["arguments"]["key_schema"],  # what its cache_key covers (``artifact.KEY_SCHEMA``)
        "registration": _registration(meta),
        "figures": {"grid": GRID_PNG, "histogram": HISTOGRAM_PNG},
        "resources": {
            "hardware": meta["hardware"],
            "torch_threads": torch.get_num_threads(),
            "load_average_start": list(meta["load_start"]),
            "load_average_end": list(os.getloadavg()),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        },
    }


def _registration(meta: dict[str, Any]) -> dict[str, Any] | None:
    """How the generator registered the shots to shot 0 for its cross-shot variance (k > 1), by shot ID."""
    record = meta["vqgan"].registration_record()
    if record is not None:
        ids = meta["arguments"]["shot_ids"]
        record["reference_shot"] = ids[record["reference_shot"]]
        record["shots"] = [{**r, "shot_id": ids[r["shot"]]} for r in record["shots"]]
    return record


def _jsonable(value: Any) -> Any:
    """NaN -> None (strict JSON), tuples -> lists, paths -> strings."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Path):
        return str(value)
    return value
