"""The whole generation chain for one class (the ``tgad`` condition of the benchmark, and ``tgad generate``):

    datamodule k shots -> PromptSelector (P*) -> fit VarianceVQGAN -> Integrator (R rounds) -> N images

written as an ExtraSet folder (``tgad.generate.artifact``): ``train/good/*.png`` at the preset's resolution
(``CHAIN_PRESETS[preset].image_size``; the shots are resized to it first), ``manifest.json``, and beside them
``grid.png`` (shots, then the written images with score / round / shot), ``scores_per_round.png`` and the
prompt table. The folder appears only when complete; the same request finds it complete and reuses it.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import torch

import tgad
from tgad.generate.artifact import MANIFEST, cache_key, is_complete
from tgad.generate.chain_writer import collapse_report, write_generated_set
from tgad.generate.fit_cache import fit_cache_file, load_fit, save_fit
from tgad.generate.stages import (
    Stage,
    StageReporter,
    advance_callback,
    generator_malloc,
    make_trainer,
    quiet_lightning,
)
from tgad.hardware import Hardware

logger = logging.getLogger(__name__)

STAGES = ("data", "prompt", "generator", "integrator", "final", "write")


@dataclass(frozen=True)
class ChainPreset:
    image_size: int  # side of the shots as the generator sees them, and of the written images
    vqgan_iterations: int  # generator + discriminator steps of the VarianceVQGAN fit


CHAIN_PRESETS: dict[str, ChainPreset] = {
    "tiny": ChainPreset(image_size=32, vqgan_iterations=60),
    "cpu": ChainPreset(image_size=256, vqgan_iterations=600),  # as conf/variance_vqgan/cpu.yaml
    "paper": ChainPreset(image_size=256, vqgan_iterations=5000),
}


def _file_stamp(path: str | None) -> list[int] | None:
    """Size and mtime of a weight file, so a replaced file is not mistaken for the same request."""
    if path and Path(path).expanduser().is_file():
        stat = Path(path).expanduser().stat()
        return [stat.st_size, stat.st_mtime_ns]
    return None


def generation_key(arguments: dict[str, Any]) -> str:
    """Cache key of a generation request (``artifact.cache_key`` of its arguments, shots and tgad version)."""
    return cache_key({**arguments, "kind": "tgad", "tgad_version": tgad.__version__})


class ChosenShots(NamedTuple):
    """Shots chosen by the caller's datamodule: the files, their IDs and the dataset root they came from."""

    paths: list[Path]
    ids: list[str]
    root: Path


def _check_out_dir(out_dir: Path) -> None:
    """Refuse to replace a folder that is not an ExtraSet: ``--out .`` must never delete a working tree."""
    if out_dir.exists() and (
        not out_dir.is_dir() or (any(out_dir.iterdir()) and not (out_dir / MANIFEST).is_file())
    ):
        raise FileExistsError(
            f"--out {out_dir}: exists and is not an ExtraSet folder (no {MANIFEST}); choose a new or empty folder"
        )


def generate_extra_set(
    dataset: str,
    root: str | Path | None,
    category: str,
    shots: int,
    seed: int,
    n: int,
    preset: str,
    out_dir: str | Path,
    clip_weights: str | None = None,
    allow_random_clip: bool = False,
    *,
    keyword: str | None = None,
    vqgan_iterations: int | None = None,
    integrator_overrides: dict[str, Any] | None = None,
    threads: int | None = None,
    reporter: StageReporter | None = None,
    generator_cache: str | Path | None = None,
    hardware: Hardware | None = None,
    chosen: ChosenShots | None = None,
) -> Path:
    """Generate ``n`` normal images of ``category`` from ``shots`` real ones and write them as an ExtraSet.

    Args:
        dataset: ``embedded``, ``mvtec``, ``btad`` or ``loco``; root: its root folder (None: default/env).
        seed: chooses the shots (``shot_seed``) and seeds every random draw.
        preset: ``tiny``, ``cpu`` or ``paper`` for every stage (CLIP, generator, integrator, image size).
        clip_weights: CLIP checkpoint file or open_clip tag; allow_random_clip: the explicit opt-in to random
            CLIP weights (everything is then marked RANDOM).
        keyword: object word or synset for categories the class table lacks.
        vqgan_iterations, integrator_overrides: override the preset (``IntegratorConfig`` field names).
        threads: ``torch.set_num_threads`` for the run (recorded either way).
        generator_cache: a folder for fitted VarianceVQGAN weights, keyed by everything the fit depends on
            (shots, seed, preset, iterations): requests that differ only after the fit (scorer, tau, N) reuse
            one fit. None fits every time.
        hardware: accelerator, devices and precision (default ``auto``: a GPU when present); ``devices`` > 1
            fits the generator with DDP. Anything but one CPU in float32 is part of the key.
        chosen: the shots a caller already chose with the same (dataset, root, category, shots, seed), e.g. the
            benchmark's datamodule: the chain then builds no datamodule of its own (same images, same key).

    Returns:
        ``out_dir``, a complete ExtraSet (reused as is when the same request already wrote it).
    """
    import lightning as L
    from torch.utils.data import DataLoader, TensorDataset

    from tgad.assets import LITE0, create_backbone, sha256_file
    from tgad.assets.clip import resolve_clip
    from tgad.data import DATAMODULES, read_resized
    from tgad.models.integrator import Integrator, IntegratorConfig
    from tgad.models.integrator.lightning_model import PERCEPTUAL_OUT_INDICES
    from tgad.models.prompt_selector import PromptSelectorConfig, select_prompt
    from tgad.models.variance_vqgan import VarianceVQGAN
    from tgad.text.keywords import resolve_keyword

    if dataset not in DATAMODULES:
        raise ValueError(f"--dataset {dataset!r}: choose one of {sorted(DATAMODULES)}")
    if preset not in CHAIN_PRESETS:
        raise ValueError(f"--preset {preset!r}: choose one of {sorted(CHAIN_PRESETS)}")
    if n < 1 or shots < 1:
        raise ValueError(f"--n ({n}) and --shots ({shots}) must be >= 1")
    out_dir = Path(out_dir)
    _check_out_dir(out_dir)
    if threads:
        torch.set_num_threads(threads)
    hw = (hardware or Hardware()).resolved()
    reporter = reporter or StageReporter()
    chain = CHAIN_PRESETS[preset]
    iterations = vqgan_iterations or chain.vqgan_iterations
    integrator_cfg = IntegratorConfig.preset(preset, **(integrator_overrides or {}))
    selector_cfg = PromptSelectorConfig.preset(
        preset, clip_weights=clip_weights, allow_random_clip=allow_random_clip
    )
    timings: dict[str, float] = {}
    started = time.perf_counter()
    load_start = os.getloadavg()

    with Stage(reporter, timings, "data", 1):
        if chosen is None:  # choose the shots here; a benchmark hands over the ones it chose
            dm = DATAMODULES[dataset](
                root=str(root) if root else None,
                category=category,
                shots=shots,
                shot_seed=seed,
                download=False,
            )
            if dataset == "embedded":
                dm.prepare_data()
            dm.setup()
            chosen = ChosenShots([Path(p) for p in dm.shot_paths], list(dm.shot_ids), Path(dm.root))
        elif len(chosen.paths) != shots or len(chosen.ids) != shots:
            raise ValueError(f"chosen shots: {len(chosen.paths)} files for --shots {shots}")
        shot_paths, shot_ids = list(chosen.paths), list(chosen.ids)
        images = read_resized(shot_paths, chain.image_size)  # (k, 3, S, S)
        reporter.advance("data")
    arguments = {
        "dataset": dataset,
        "root": str(Path(chosen.root).resolve()),
        "category": category,
        "shot_ids": shot_ids,
        "shot_sha256": [sha256_file(p) for p in shot_paths],
        "seed": seed,
        "n": n,
        "preset": preset,
        "clip_weights": clip_weights,
        "clip_weights_file": _file_stamp(clip_weights),
        "allow_random_clip": allow_random_clip,
        "keyword": keyword,
        "vqgan_iterations": iterations,
        "integrator": dataclasses.asdict(integrator_cfg),
    }
    if not hw.is_default_cpu:  # keys of sets made on one CPU in float32 (all earlier ones) stay valid
        arguments["hardware"] = dataclasses.asdict(hw)
    key = generation_key(arguments)
    if is_complete(out_dir, key):
        logger.info("%s: complete ExtraSet for this request (key %s); reusing it", out_dir, key)
        for stage in STAGES[1:]:
            reporter.start(stage, 0)
            reporter.finish(stage, 0.0)
        return out_dir

    with generator_malloc():
        L.seed_everything(seed, verbose=False)
        with Stage(reporter, timings, "prompt", 1):
            # random CLIP weights (if allowed) are a function of the seed
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                clip, tokenizer, clip_resolved = resolve_clip(
                    selector_cfg.clip_model, clip_weights, allow_random=allow_random_clip
                )
            sense = resolve_keyword(category, keyword)
            selection = select_prompt(
                clip, tokenizer, images, sense, clip_resolved, selector_cfg.num_words, selector_cfg.templates
            )
            logger.info(
                "P* = %r (score %.4f, clip %s)",
                selection.best_prompt,
                selection.best_score,
                selection.clip_weights,
            )
            reporter.advance("prompt")

        backbone, backbone_resolved = create_backbone(
            LITE0, features_only=True, out_indices=PERCEPTUAL_OUT_INDICES
        )
        loader = DataLoader(TensorDataset(images), batch_size=len(images))
        fit_file = fit_cache_file(
            generator_cache, arguments, CHAIN_PRESETS[preset].image_size, backbone_resolved
        )
        with tempfile.TemporaryDirectory(prefix="tgad-generate-") as work:
            with Stage(reporter, timings, "generator", iterations):
                vqgan = VarianceVQGAN(preset=preset, perceptual_backbone=LITE0)
                vqgan.attach_perceptual(backbone, backbone_resolved.describe())
                fit_note = f"VarianceVQGAN {preset} fitted for {iterations} iterations"
                if fit_file is not None and fit_file.is_file():
                    fit_note += load_fit(vqgan, fit_file)
                    reporter.advance("generator", iterations)
                else:
                    with quiet_lightning():
                        # DDP (devices > 1) spawns processes: the progress callback stays in this one
                        progress = [advance_callback(reporter, "generator")] if hw.devices == 1 else []
                        trainer = make_trainer(work, progress, hw, max_steps=2 * iterations)
                        trainer.fit(vqgan, train_dataloaders=loader)
                        if hw.devices > 1:
                            reporter.advance("generator", iterations)
                    if fit_file is not None:
                        fit_note += save_fit(vqgan, fit_file)
                vqgan.eval()

            # a fitted and a cached generator continue from the same random state
            L.seed_everything(seed + 1, verbose=False)
            with Stage(reporter, timings, "integrator", integrator_cfg.rounds):
                integrator = Integrator(
                    preset=preset,
                    generator_preset=preset,
                    prompt=selection.best_prompt,
                    clip_model=selector_cfg.clip_model,
                    seed=seed,
                    **{k: v for k, v in (integrator_overrides or {}).items() if k != "clip_model"},
                )
                integrator.attach_clip(clip, tokenizer, clip_resolved)
                integrator.attach_perceptual(backbone, backbone_resolved)
                integrator.attach_generator(vqgan, fit_note)
                if integrator_cfg.rounds > 0:
                    cb = [advance_callback(reporter, "integrator")]
                    with quiet_lightning():
                        # float32: the judges compare feature distances a bf16 autocast would blur
                        judged = dataclasses.replace(hw, devices=1, precision="32-true")
                        trainer = make_trainer(work, cb, judged, max_epochs=integrator_cfg.rounds)
                        trainer.fit(integrator.train(), train_dataloaders=loader)
                integrator.eval()
                if (
                    hw.accelerator != "cpu"
                ):  # Lightning hands a fitted module back on the CPU: draw on the device
                    integrator.to(torch.device(hw.accelerator))
                    integrator.resolve_judges(PERCEPTUAL_OUT_INDICES)

        with Stage(reporter, timings, "final", 1):
            final = integrator.generate(n, images)
            reporter.advance("final")

        collapse = collapse_report(integrator, final, images)
        if collapse["collapsed"]:
            logger.warning("%s/%s: COLLAPSED generator: %s", dataset, category, collapse["reason"])
        elif collapse["near_copies"]:
            logger.warning(
                "%s/%s: the images differ from their shot by %.4f on average (< 2/255): near-copies; "
                "a larger tau (integrator_overrides) gives more variety",
                dataset,
                category,
                collapse["mean_abs_diff_to_shot"],
            )

    with Stage(reporter, timings, "write", 1):
        meta = {
            "arguments": arguments,
            "selection": selection,
            "clip_resolved": clip_resolved,
            "backbone_resolved": backbone_resolved,
            "integrator": integrator,
            "vqgan_config": dataclasses.asdict(vqgan.config),
            "iterations": iterations,
            "collapse": collapse,
            "hardware": hw.describe(),
            "load_start": load_start,
            "started": started,
        }
        write_generated_set(out_dir, images, final, shot_ids, shot_paths, timings, meta, key)
        reporter.advance("write")
    return out_dir
