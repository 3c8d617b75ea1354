"""Extra sets for the benchmark's conditions: plain augmentation, ``tgad generate`` (one per scorer), or the
generated set plainly augmented (``tgad_aug``), cached by request.

An ExtraSet lives under ``<results>/extra_sets/<kind>/<category>/k<shots>_seed<seed>_<key>`` (kind
``tgad_<scorer>`` / ``tgad_aug_<scorer>`` for the generated conditions), where the key is a hash of the
arguments that make it (shots and their file hashes and the tgad version included), so a re-run reuses a
complete folder and an interrupted one (never renamed into place) is made again. Every condition's folder is
checked against its key before reuse, so a changed setting or tgad version rebuilds instead of silently reusing
stale images. A generated set's key is the chain's own (``artifact.extra_set_key`` of one ``ExtraSetRequest``). Fitted generators are kept under
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
from tgad.generate import chain
from tgad.generate.artifact import (
    ChosenShots,
    ExtraSetRequest,
    cache_key,
    extra_set_dir,
    extra_set_key,
    is_complete,
    load_manifest,
)
from tgad.generate.augment import PlainAugConfig, make_plain_aug_set, make_tgad_aug_set
from tgad.generate.select import SelectConfig, make_selected_set
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


def _set_settings(config: BenchmarkConfig, dm, seed: int) -> dict[str, Any]:
    """What a plain-augmentation or selected set is made with, besides its shots and key."""
    return {
        "n": config.grid.n_gen,
        "seed": seed,
        "dataset": config.grid.dataset,
        "category": dm.category,
        "image_size": config.detectors.image_size,
    }


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
    key, path, request = extra_set_request(config, condition, dm, shots, seed, scorer)
    start = time.perf_counter()
    if request is not None:  # the chain checks the folder against the same key and says if it reused it
        reporter = _StageText(show)
        made = chain.generate_extra_set(
            request, path, reporter=reporter, generator_cache=_generator_cache(config), threads=config.threads
        )
        seconds = 0.0 if made.reused else time.perf_counter() - start
        return ExtraSet(made.path, seconds, load_manifest(made.path))
    if is_complete(path, key):
        return ExtraSet(path, 0.0, load_manifest(path))
    make_plain_aug_set(path, dm.shot_paths, dm.shot_ids, **_set_settings(config, dm, seed), key=key)
    return ExtraSet(path, time.perf_counter() - start, load_manifest(path))


def _generator_cache(config: BenchmarkConfig) -> Path:
    """Fitted generators: the scorers of one (category, shots, seed) share one fit."""
    return config.out_dir / "extra_sets" / "generator"


def _with_scorer(recipe: Recipe, scorer: str | None) -> Recipe:
    """The run's recipe with a generated condition's scorer (one set per scorer)."""
    if not scorer:
        return recipe
    return dataclasses.replace(recipe, integrator=dataclasses.replace(recipe.integrator, scorer=scorer))


def _request_base(config: BenchmarkConfig, condition: str, dm, seed: int) -> dict[str, Any]:
    """What the key of a set the chain does not make holds: the kind, the shots (names and file hashes), seed,
    N and size."""
    return {
        "kind": condition,
        "dataset": config.grid.dataset,
        "category": dm.category,
        "shot_ids": list(dm.shot_ids),
        "shot_sha256": [sha256_file(p) for p in dm.shot_paths],
        "seed": seed,
        "n": config.grid.n_gen,
        "image_size": config.detectors.image_size,
        "tgad_version": tgad.__version__,
    }


class SetRequest(NamedTuple):
    """A set's key, its folder, and for a generated set the chain's request (None for ``plain_aug``)."""

    key: str
    path: Path
    request: ExtraSetRequest | None


def tgad_request(config: BenchmarkConfig, dm, seed: int, scorer: str = "") -> ExtraSetRequest:
    """The chain's request for the datamodule's shots: the run's recipe with ``scorer`` and the CLIP
    settings, the category's keyword and the run's hardware."""
    recipe = chain.with_clip(
        _with_scorer(config.recipe, scorer), config.generator.clip_weights, config.generator.allow_random_clip
    )
    chosen = ChosenShots.from_datamodule(config.grid.dataset, dm)
    return chain.make_request(
        chosen, seed, config.grid.n_gen, recipe, config.generator.keywords.get(dm.category), config.hardware
    )


def extra_set_request(
    config: BenchmarkConfig, condition: str, dm, shots: int | None, seed: int, scorer: str = ""
) -> SetRequest:
    """The key and folder of a ``plain_aug`` or ``tgad`` ExtraSet: the key hashes every argument that makes
    its images (``plain_aug``: shots and their file hashes, seed, N, size and the augmentation; ``tgad``:
    ``artifact.extra_set_key`` of the chain's request), so a changed request gets a new folder."""
    if condition == "plain_aug":
        key, request = (
            cache_key(_request_base(config, condition, dm, seed) | {"augment": asdict(PlainAugConfig())}),
            None,
        )
    else:
        request = tgad_request(config, dm, seed, scorer)
        key = extra_set_key(request)
    kind = f"{condition}_{scorer}" if scorer else condition
    return SetRequest(
        key, extra_set_dir(config.out_dir / "extra_sets", kind, dm.category, shots, seed, key), request
    )


def _tgad_aug(config: BenchmarkConfig, dm, shots: int | None, seed: int, show, scorer: str) -> ExtraSet:
    """The ``tgad`` set of ``scorer``, each image passed through plain_aug's transform of the same index."""
    start = time.perf_counter()
    source = ensure_extra_set(config, "tgad", dm, shots, seed, show, scorer)
    arguments = {
        "kind": "tgad_aug",
        "source_key": source.manifest["cache_key"],
        "source": source.path.name,
        "seed": seed,
        "image_size": config.detectors.image_size,
        "augment": asdict(PlainAugConfig()),
    }
    key = cache_key(arguments)
    path = extra_set_dir(config.out_dir / "extra_sets", f"tgad_aug_{scorer}", dm.category, shots, seed, key)
    if is_complete(path, key):
        return ExtraSet(path, source.seconds, load_manifest(path))
    show("augmenting the generated set")
    make_tgad_aug_set(path, source.path, seed=seed, image_size=config.detectors.image_size, key=key)
    return ExtraSet(path, time.perf_counter() - start, load_manifest(path))


def _selected(
    config: BenchmarkConfig, condition: str, dm, shots: int | None, seed: int, show, scorer: str
) -> ExtraSet:
    """``aug_select`` (augmentation candidates) or ``tgad_select`` (+ the ``tgad`` set of ``scorer`` and its
    augmented images), kept by ``defect_safe`` (``tgad.generate.select``)."""
    start = time.perf_counter()
    source = (
        ensure_extra_set(config, "tgad", dm, shots, seed, show, scorer)
        if condition == "tgad_select"
        else None
    )
    arguments = _request_base(config, condition, dm, seed) | {
        "select": SelectConfig().recorded(),
        "augment": asdict(PlainAugConfig()),
        "source_key": source.manifest["cache_key"] if source else None,
    }
    key = cache_key(arguments)
    kind = f"{condition}_{scorer}" if scorer else condition
    path = extra_set_dir(config.out_dir / "extra_sets", kind, dm.category, shots, seed, key)
    if is_complete(path, key):
        return ExtraSet(path, source.seconds if source else 0.0, load_manifest(path))
    show(f"{condition}: scoring candidates")
    generated = source.path if source else None
    make_selected_set(
        path, dm.shot_paths, dm.shot_ids, **_set_settings(config, dm, seed), generated=generated, key=key
    )
    return ExtraSet(path, time.perf_counter() - start, load_manifest(path))
