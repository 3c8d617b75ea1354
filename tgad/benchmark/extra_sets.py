"""Extra sets for the benchmark's conditions: plain augmentation, ``tgad generate`` (one per scorer), or the
generated set plainly augmented (``tgad_aug``), cached by request.

An ExtraSet lives under ``<results>/extra_sets/<kind>/<category>/k<shots>_seed<seed>_<key>`` (kind
``tgad_<scorer>`` / ``tgad_aug_<scorer>`` for the generated conditions), where the key is a hash of the
arguments that make it (shots and their file hashes and the tgad version included), so a re-run reuses a
complete folder and an interrupted one (never renamed into place) is made again. Every condition's folder is
checked against its key before reuse (a generated set against the chain's complete key), so a changed setting
or tgad version rebuilds instead of silently reusing stale images. Fitted generators are kept under
``extra_sets/generator``: the scorers of one (category, shots, seed) share one fit.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, NamedTuple

import tgad
from tgad.assets import sha256_file
from tgad.benchmark.plan import BenchmarkConfig
from tgad.generate.artifact import cache_key, extra_set_dir, is_complete, load_manifest
from tgad.generate.augment import PlainAugConfig, make_plain_aug_set, make_tgad_aug_set
from tgad.recipe import Recipe


class ExtraSet(NamedTuple):
    path: Path
    seconds: float  # time to make it (0 when reused)
    manifest: dict[str, Any]


class _StageText:
    """A ``tgad.generate.stages.StageReporter`` that shows the chain's current stage in the progress line."""

    def __init__(self, show) -> None:
        self.show, self.done, self.total = show, 0, None

    def start(self, stage: str, total: int | None = None) -> None:
        self.stage, self.done, self.total = stage, 0, total
        self.show(f"tgad generate: {stage}")

    def advance(self, stage: str, amount: int = 1) -> None:
        self.done += amount
        self.show(f"tgad generate: {stage} {self.done}/{self.total or '?'}")

    def finish(self, stage: str, seconds: float) -> None:
        self.show(f"tgad generate: {stage} done ({seconds:.0f} s)")


def ensure_extra_set(
    config: BenchmarkConfig,
    condition: str,
    dm,
    shots: int | None,
    seed: int,
    show=lambda text: None,
    scorer: str = "",
) -> ExtraSet:
    """The ExtraSet of ``condition`` (and ``scorer``, for the generated ones) for the datamodule's shots:
    reused when complete, else made atomically. ``tgad_aug`` first ensures its ``tgad`` set.

    The folder name carries a key of the request; ``tgad generate`` also keys and reuses its own output.
    """
    if condition == "tgad_aug":
        return _tgad_aug(config, dm, shots, seed, show, scorer)
    if condition in ("aug_select", "tgad_select"):
        return _selected(config, condition, dm, shots, seed, show, scorer)
    key, path = extra_set_request(config, condition, dm, shots, seed, scorer)
    start = time.perf_counter()
    if condition == "plain_aug":
        if is_complete(path, key):
            return ExtraSet(path, 0.0, load_manifest(path))
        make_plain_aug_set(
            path,
            dm.shot_paths,
            dm.shot_ids,
            n=config.n_gen,
            seed=seed,
            dataset=config.dataset,
            category=dm.category,
            image_size=config.image_size,
            key=key,
        )
    else:
        # The chain checks its own, complete key (every Integrator and VarianceVQGAN setting, the tgad version,
        # the CLIP file) and rebuilds a folder made by another request; a reused folder costs no time.
        from tgad.generate import chain

        before = load_manifest(path)["cache_key"] if is_complete(path) else None
        path = Path(
            chain.generate_extra_set(
                config.dataset,
                config.root,
                dm.category,
                shots or len(dm.shot_ids),
                seed,
                config.n_gen,
                _with_scorer(config.recipe, scorer),
                path,
                clip_weights=config.clip_weights,
                allow_random_clip=config.allow_random_clip,
                keyword=config.keywords.get(dm.category),
                threads=config.threads,
                reporter=_StageText(show),
                generator_cache=config.out_dir / "extra_sets" / "generator",
                hardware=config.hardware,
                chosen=chain.ChosenShots([Path(p) for p in dm.shot_paths], list(dm.shot_ids), Path(dm.root)),
            )
        )
        if load_manifest(path)["cache_key"] == before:
            return ExtraSet(path, 0.0, load_manifest(path))
    return ExtraSet(path, time.perf_counter() - start, load_manifest(path))


def _with_scorer(recipe: Recipe, scorer: str | None) -> Recipe:
    """The run's recipe with a generated condition's scorer (one set per scorer)."""
    if not scorer:
        return recipe
    return dataclasses.replace(recipe, integrator=dataclasses.replace(recipe.integrator, scorer=scorer))


def _request_base(config: BenchmarkConfig, condition: str, dm, seed: int) -> dict[str, Any]:
    """What every extra set's key holds: the kind, the shots (names and file hashes), seed, N and size."""
    return {
        "kind": condition,
        "dataset": config.dataset,
        "category": dm.category,
        "shot_ids": list(dm.shot_ids),
        "shot_sha256": [sha256_file(p) for p in dm.shot_paths],
        "seed": seed,
        "n": config.n_gen,
        "image_size": config.image_size,
        "tgad_version": tgad.__version__,
    }


def extra_set_request(
    config: BenchmarkConfig, condition: str, dm, shots: int | None, seed: int, scorer: str = ""
) -> tuple[str, Path]:
    """(cache key, folder) of a ``plain_aug`` or ``tgad`` ExtraSet: the key hashes every argument that makes
    its images (shots and their file hashes, seed, N, size; for ``tgad`` the preset, CLIP, keyword, scorer and
    the generator overrides), so a changed request gets a new folder."""
    arguments = _request_base(config, condition, dm, seed)
    if condition == "plain_aug":
        arguments["augment"] = asdict(PlainAugConfig())
    else:
        arguments |= {
            "preset": config.preset,
            "clip_weights": config.clip_weights,
            "allow_random_clip": config.allow_random_clip,
            "keyword": config.keywords.get(dm.category),
            "scorer": scorer,
        }
        hardware = config.hardware.resolved()
        if not hardware.is_default_cpu:  # keys of earlier sets (one CPU, float32) stay valid
            arguments["hardware"] = asdict(hardware)
        if config.integrator_overrides or config.vqgan_iterations:  # keys of earlier sets stay valid
            arguments |= {
                "integrator_overrides": dict(sorted(config.integrator_overrides.items())),
                "vqgan_iterations": config.vqgan_iterations,
            }
        if config.prior != "none":  # a set from a prior generator lives beside the one without (same rule)
            from tgad.generate.prior import prior_label

            arguments["prior"] = prior_label(config.prior, config.dataset, config.root, dm.category)
    key = cache_key(arguments)
    kind = f"{condition}_{scorer}" if scorer else condition
    return key, extra_set_dir(config.out_dir / "extra_sets", kind, dm.category, shots, seed, key)


def _tgad_aug(config: BenchmarkConfig, dm, shots: int | None, seed: int, show, scorer: str) -> ExtraSet:
    """The ``tgad`` set of ``scorer``, each image passed through plain_aug's transform of the same index."""
    start = time.perf_counter()
    source = ensure_extra_set(config, "tgad", dm, shots, seed, show, scorer)
    arguments = {
        "kind": "tgad_aug",
        "source_key": source.manifest["cache_key"],
        "source": source.path.name,
        "seed": seed,
        "image_size": config.image_size,
        "augment": asdict(PlainAugConfig()),
    }
    key = cache_key(arguments)
    path = extra_set_dir(config.out_dir / "extra_sets", f"tgad_aug_{scorer}", dm.category, shots, seed, key)
    if is_complete(path, key):
        return ExtraSet(path, source.seconds, load_manifest(path))
    show("augmenting the generated set")
    make_tgad_aug_set(path, source.path, seed=seed, image_size=config.image_size, key=key)
    return ExtraSet(path, time.perf_counter() - start, load_manifest(path))


def _selected(
    config: BenchmarkConfig, condition: str, dm, shots: int | None, seed: int, show, scorer: str
) -> ExtraSet:
    """``aug_select`` (augmentation candidates) or ``tgad_select`` (+ the ``tgad`` set of ``scorer`` and its
    augmented images), kept by ``defect_safe`` (``tgad.generate.select``)."""
    from tgad.generate.select import SelectConfig, make_selected_set

    start = time.perf_counter()
    source = (
        ensure_extra_set(config, "tgad", dm, shots, seed, show, scorer)
        if condition == "tgad_select"
        else None
    )
    arguments = _request_base(config, condition, dm, seed) | {
        "select": asdict(SelectConfig()),
        "augment": asdict(PlainAugConfig()),
        "source_key": source.manifest["cache_key"] if source else None,
    }
    key = cache_key(arguments)
    kind = f"{condition}_{scorer}" if scorer else condition
    path = extra_set_dir(config.out_dir / "extra_sets", kind, dm.category, shots, seed, key)
    if is_complete(path, key):
        return ExtraSet(path, source.seconds if source else 0.0, load_manifest(path))
    show(f"{condition}: scoring candidates")
    make_selected_set(
        path,
        dm.shot_paths,
        dm.shot_ids,
        n=config.n_gen,
        seed=seed,
        dataset=config.dataset,
        category=dm.category,
        image_size=config.image_size,
        generated=source.path if source else None,
        key=key,
    )
    return ExtraSet(path, time.perf_counter() - start, load_manifest(path))
