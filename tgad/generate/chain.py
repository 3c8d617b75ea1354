"""The whole generation chain for one class (the ``tgad`` condition of the benchmark, and ``tgad generate``):

    datamodule k shots -> PromptSelector (P*) -> fit VarianceVQGAN -> Integrator (R rounds) -> N images

written as an ExtraSet folder (``tgad.generate.artifact``): ``train/good/*.png`` at the preset's resolution
(``Recipe.run.generator_image_size``; the shots are resized to it first), ``manifest.json``, and beside them
``grid.png`` (shots, then the written images with score / round / shot), ``scores_per_round.png`` and the
prompt table. The folder appears only when complete; the same request finds it complete and reuses it.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from pathlib import Path
from typing import Any, NamedTuple

import lightning as L
import torch
from torch.utils.data import DataLoader, TensorDataset

from tgad.assets import LITE0
from tgad.assets.cache import scratch_dir
from tgad.assets.clip import clip_weights_available
from tgad.data import DATAMODULES
from tgad.data.images import read_resized
from tgad.generate.artifact import ChosenShots, ExtraSetRequest, extra_set_key, is_complete
from tgad.generate.chain_writer import check_out_dir, collapse_report, write_generated_set
from tgad.generate.fit_cache import fit_cache_file, load_fit, save_fit
from tgad.generate.prior import describe_prior, start_shot_fit_from_prior, with_prior_architecture
from tgad.generate.stages import (
    Stage,
    StageReporter,
    advance_callback,
    generator_malloc,
    make_trainer,
    quiet_lightning,
)
from tgad.hardware import Hardware
from tgad.models.integrator.judges import Judges, needs_clip
from tgad.models.variance_vqgan import VarianceVQGAN
from tgad.models.variance_vqgan.plateau import ReconstructionPlateau
from tgad.recipe import Recipe

logger = logging.getLogger(__name__)

STAGES = ("data", "prompt", "generator", "integrator", "final", "write")
__all__ = [
    "ChosenShots",
    "ExtraSetRequest",
    "Made",
    "generate_extra_set",
    "make_request",
    "request_from_flags",
]


class Made(NamedTuple):
    """What ``generate_extra_set`` hands back: the complete ExtraSet and whether it was reused untouched."""

    path: Path
    reused: bool


def with_clip(recipe: Recipe, clip_weights: str | None, allow_random_clip: bool) -> Recipe:
    """``recipe`` with the request's CLIP weights (a file or open_clip tag) and its opt-in to random ones."""
    prompt = dataclasses.replace(
        recipe.prompt, clip_weights=clip_weights, allow_random_clip=allow_random_clip
    )
    return dataclasses.replace(recipe, prompt=prompt)


def choose_shots(dataset: str, root: str | Path | None, category: str, shots: int, seed: int) -> ChosenShots:
    """The ``shots`` training images a datamodule with ``shot_seed=seed`` chooses (as the benchmark's does)."""
    dm = DATAMODULES[dataset](
        root=str(root) if root else None, category=category, shots=shots, shot_seed=seed, download=False
    )
    if dataset == "embedded":
        dm.prepare_data()
    dm.setup()
    return ChosenShots.from_datamodule(dataset, dm)


def make_request(
    chosen: ChosenShots,
    seed: int,
    n: int,
    recipe: Recipe,
    keyword: str | None = None,
    hardware: Hardware | None = None,
) -> ExtraSetRequest:
    """The request for ``n`` images from ``chosen`` (a benchmark's datamodule's or ``choose_shots``'), with the
    recipe's prior described for these shots; ``hardware`` default ``auto`` (a GPU when present)."""
    recipe = with_prior_architecture(recipe)  # a taming checkpoint brings its own architecture
    prior = describe_prior(recipe, chosen.dataset, chosen.root, chosen.category).request
    return ExtraSetRequest(chosen, seed, n, recipe, hardware or Hardware(), keyword, prior)


def request_from_flags(
    dataset: str,
    root: str | Path | None,
    category: str,
    shots: int,
    seed: int,
    n: int,
    preset: str | Recipe = "cpu",
    *,
    clip_weights: str | None = None,
    allow_random_clip: bool = False,
    keyword: str | None = None,
    vqgan_iterations: int | None = None,
    integrator_overrides: dict[str, Any] | None = None,
    prior: str | None = None,
    hardware: Hardware | None = None,
) -> ExtraSetRequest:
    """The request of ``tgad generate``'s flags: a preset name plus overrides (or a resolved ``Recipe``), the
    shots a datamodule with ``shot_seed=seed`` chooses, CLIP from the flags."""
    if dataset not in DATAMODULES:
        raise ValueError(f"--dataset {dataset!r}: choose one of {sorted(DATAMODULES)}")
    if n < 1 or shots < 1:
        raise ValueError(f"--n ({n}) and --shots ({shots}) must be >= 1")
    if isinstance(preset, Recipe):
        if vqgan_iterations is not None or integrator_overrides or prior is not None:
            raise ValueError(
                "give overrides in the Recipe, not beside it (vqgan_iterations, integrator_overrides, prior)"
            )
        recipe = preset
    else:
        run = {"vqgan_iterations": vqgan_iterations, "prior": prior}
        recipe = Recipe.build(preset, run=run, integrator=integrator_overrides or {})
    recipe = with_clip(recipe, clip_weights, allow_random_clip)
    return make_request(
        choose_shots(dataset, root, category, shots, seed), seed, n, recipe, keyword, hardware
    )


def _reuse(out_dir: Path, key: str, reporter: StageReporter) -> bool:
    if not is_complete(out_dir, key):
        return False
    logger.info("%s: complete ExtraSet for this request (key %s); reusing it", out_dir, key)
    for stage in STAGES[1:]:
        reporter.start(stage, 0)
        reporter.finish(stage, 0.0)
    return True


def generate_extra_set(
    request: ExtraSetRequest,
    out_dir: str | Path,
    *,
    reporter: StageReporter | None = None,
    generator_cache: str | Path | None = None,
    threads: int | None = None,
) -> Made:
    """Generate ``request.n`` normal images from the request's shots and write them as an ExtraSet.

    Args:
        request: what determines the images (``make_request`` / ``request_from_flags``); its key
            (``artifact.extra_set_key``) goes into the manifest.
        out_dir: the ExtraSet folder; a complete one made by the same request is reused as it is.
        generator_cache: a folder of fitted generators keyed by what the fit depends on, so requests that
            differ only after the fit (scorer, tau, N) share one fit; None fits every time.
        threads: ``torch.set_num_threads`` for the run (recorded either way).

    Returns:
        ``Made(out_dir, reused)``: a complete ExtraSet, and whether it was there already.
    """
    out_dir = Path(out_dir)
    check_out_dir(out_dir)
    if threads:
        torch.set_num_threads(threads)
    recipe, hw, chosen = request.recipe, request.hardware, request.shots
    reporter = reporter or StageReporter()
    timings: dict[str, float] = {}
    started, load_start = time.perf_counter(), os.getloadavg()

    with Stage(reporter, timings, "data", 1):
        images = read_resized(list(chosen.paths), recipe.run.generator_image_size)  # (k, 3, S, S)
        reporter.advance("data")
    arguments, key = request.arguments, extra_set_key(request)
    if _reuse(out_dir, key, reporter):
        return Made(out_dir, True)

    # the fits' working folder lies beside --out, named like its temporaries: a killed run's is healed with them
    with scratch_dir(out_dir.parent, f"{out_dir.name}.work") as work:
        run = _generate(request, images, generator_cache, reporter, timings, work)
    with Stage(reporter, timings, "write", 1):
        meta = {
            "arguments": arguments,
            **run._asdict(),
            "vqgan_config": run.vqgan.config.flat(),
            "iterations": recipe.run.vqgan_iterations,
            "recipe": recipe.to_dict(),
            "hardware": hw.describe(),
            "prior": arguments["prior"] or {"label": "none"},
            "load_start": load_start,
            "started": started,
        }
        shot_paths, shot_ids = list(chosen.paths), list(chosen.ids)
        write_generated_set(out_dir, images, run.final, shot_ids, shot_paths, timings, meta, key)
        reporter.advance("write")
    return Made(out_dir, False)


class Generated(NamedTuple):
    """What the stages after the data made: the judges and P*, the fitted generator, the integrated one, the
    final N and the collapse report."""

    judges: Judges
    selection: Any
    vqgan: Any
    integrator: Any
    final: Any
    collapse: dict[str, Any]


def _generate(request: ExtraSetRequest, images, generator_cache, reporter, timings, work) -> Generated:
    """The prompt, generator, integrator and final stages on the shots ``images`` (k, 3, S, S); the fits
    write their logs under ``work``."""
    recipe, seed, n, hw, arguments = (
        request.recipe,
        request.seed,
        request.n,
        request.hardware,
        request.arguments,
    )
    category, keyword = request.shots.category, request.keyword
    with generator_malloc():
        L.seed_everything(seed, verbose=False)
        with Stage(reporter, timings, "prompt", 1):
            judges, selection = _select_prompt(recipe, images, category, keyword, seed)
            reporter.advance("prompt")
        with Stage(reporter, timings, "generator", recipe.run.vqgan_iterations):
            vqgan, note = _fit_generator(
                recipe, images, judges, arguments, generator_cache, hw, work, reporter
            )
        # a fitted and a cached generator continue from the same random state
        L.seed_everything(seed + 1, verbose=False)
        with Stage(reporter, timings, "integrator", recipe.integrator.rounds):
            prompt = selection.best_prompt if selection is not None else None
            integrator = _integrate(recipe, images, judges, prompt, vqgan, note, seed, hw, work, reporter)
        with Stage(reporter, timings, "final", 1):
            final = integrator.generate(n, images)
            reporter.advance("final")
        collapse = _warn_collapse(integrator, final, images, f"{request.shots.dataset}/{category}")
    return Generated(judges, selection, vqgan, integrator, final, collapse)


def _select_prompt(
    recipe: Recipe, images: torch.Tensor, category: str, keyword: str | None, seed: int
) -> tuple[Judges, Any]:
    """The judges every later stage shares (the perceptual backbone; CLIP only when the scorer reads it, its
    random weights, if allowed, a function of the seed) and P* for the shots (a ``PromptSelection``; None
    without CLIP), chosen as the recipe's prompt config says."""
    cfg = recipe.prompt
    real_clip = clip_weights_available(cfg.clip_model, cfg.clip_weights)
    judges = Judges.resolve(
        cfg.clip_model,
        cfg.clip_weights,
        allow_random_clip=cfg.allow_random_clip,
        seed=seed,
        backbone=LITE0,
        clip=needs_clip(recipe.integrator, "perceptual", not real_clip),
    )
    if judges.clip is None:
        logger.info("no CLIP built: the %s scorer reads none, so no P* is chosen", recipe.integrator.scorer)
        return judges, None
    selection = judges.choose_prompt(images, category, keyword, cfg)
    logger.info(
        "P* = %r (score %.4f, clip %s)", selection.best_prompt, selection.best_score, selection.clip_weights
    )
    return judges, selection


def _fit_generator(recipe, images, judges, arguments, generator_cache, hw, work, reporter):
    """The VarianceVQGAN (the recipe's config, whole) fitted on the shots (or loaded from
    ``generator_cache``), and a note on how."""
    iterations = recipe.run.vqgan_iterations
    fit_file = fit_cache_file(generator_cache, arguments, judges.backbone_weights)
    vqgan = VarianceVQGAN(config=recipe.vqgan, perceptual_backbone=LITE0)
    vqgan.attach_perceptual(judges.perceptual.backbone, judges.backbone_weights)
    fit_note = f"VarianceVQGAN {recipe.preset} fitted for {iterations} iterations"
    if fit_file is not None and fit_file.is_file():
        fit_note += load_fit(vqgan, fit_file)
        reporter.advance("generator", iterations)
    else:
        if arguments.get("prior"):
            fit_note += start_shot_fit_from_prior(recipe, vqgan, images, judges, arguments, hw, work)
        loader = DataLoader(TensorDataset(images), batch_size=len(images))
        with quiet_lightning():
            # DDP (devices > 1) spawns processes: the progress callback stays in this one
            callbacks = [advance_callback(reporter, "generator")] if hw.devices == 1 else []
            plateau = ReconstructionPlateau(recipe.run.vqgan_plateau) if recipe.run.vqgan_plateau else None
            trainer = make_trainer(work, callbacks + [plateau] * bool(plateau), hw, max_steps=2 * iterations)
            trainer.fit(vqgan, train_dataloaders=loader)
            done = trainer.global_step // 2
            if done < iterations:  # stopped at the plateau: the bar still ends full
                fit_note = (
                    f"VarianceVQGAN {recipe.preset} fitted for {done} of {iterations} iterations (plateau)"
                )
            reporter.advance("generator", iterations - done if hw.devices == 1 else iterations)
        if fit_file is not None:
            fit_note += save_fit(vqgan, fit_file)
    if vqgan.registration is None:  # a cached fit, or one fitted in other processes: the record is recomputed
        vqgan.register(images)
    return vqgan.eval(), fit_note


def _integrate(recipe, images, judges, prompt, vqgan, fit_note, seed, hw, work, reporter):
    """The Integrator's R rounds (sample, score, keep, update) on one device in float32."""
    from torch.utils.data import DataLoader, TensorDataset

    from tgad.models.integrator import Integrator

    integrator = Integrator(
        recipe.integrator, recipe.vqgan, recipe.prompt, prompt=prompt, seed=seed, judges=judges
    )
    integrator.attach_generator(vqgan, fit_note)
    if recipe.integrator.rounds > 0:
        loader = DataLoader(TensorDataset(images), batch_size=len(images))
        with quiet_lightning():
            # float32: the judges compare feature distances a bf16 autocast would blur
            judged = dataclasses.replace(hw, devices=1, precision="32-true")
            trainer = make_trainer(
                work, [advance_callback(reporter, "integrator")], judged, max_epochs=recipe.integrator.rounds
            )
            trainer.fit(integrator.train(), train_dataloaders=loader)
    integrator.eval()
    if hw.accelerator != "cpu":  # Lightning hands a fitted module back on the CPU: draw on the device
        integrator.to(torch.device(hw.accelerator))
        judges.to(integrator.device)
    return integrator


def _warn_collapse(integrator, final, images: torch.Tensor, name: str) -> dict[str, Any]:
    collapse = collapse_report(integrator, final, images)
    if collapse["collapsed"]:
        logger.warning("%s: COLLAPSED generator: %s", name, collapse["reason"])
    elif collapse["near_copies"]:
        logger.warning(
            "%s: the images differ from their shot by %.4f on average (< 2/255): near-copies; "
            "a larger tau (integrator_overrides) gives more variety",
            name,
            collapse["mean_abs_diff_to_shot"],
        )
    return collapse
