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

import torch
from torch.utils.data import DataLoader, TensorDataset

import tgad
from tgad.assets import LITE0
from tgad.assets.cache import scratch_dir
from tgad.assets.clip import clip_weights_available
from tgad.generate.artifact import cache_key, is_complete
from tgad.generate.chain_writer import check_out_dir, collapse_report, write_generated_set
from tgad.generate.fit_cache import fit_cache_file, load_fit, save_fit
from tgad.generate.prior import describe_prior, start_shot_fit_from_prior
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


def _check_request(dataset: str, n: int, shots: int, out_dir: Path) -> None:
    """A known dataset, positive counts, and an ``--out`` that may be replaced (``check_out_dir``)."""
    from tgad.data import DATAMODULES

    if dataset not in DATAMODULES:
        raise ValueError(f"--dataset {dataset!r}: choose one of {sorted(DATAMODULES)}")
    if n < 1 or shots < 1:
        raise ValueError(f"--n ({n}) and --shots ({shots}) must be >= 1")
    check_out_dir(out_dir)


def resolve_recipe(
    preset: str | Recipe,
    vqgan_iterations: int | None,
    integrator_overrides: dict[str, Any] | None,
    clip_weights: str | None,
    allow_random_clip: bool,
    prior: str | None = None,
) -> Recipe:
    """The run's recipe: a caller's resolved one (the benchmark's) or a preset name plus the CLI's overrides;
    the CLIP weights always come from the request."""
    if isinstance(preset, Recipe):
        if vqgan_iterations is not None or integrator_overrides or prior is not None:
            raise ValueError(
                "give overrides in the Recipe, not beside it (vqgan_iterations, integrator_overrides, prior)"
            )
        recipe = preset
    else:
        run = {"vqgan_iterations": vqgan_iterations, "prior": prior}
        recipe = Recipe.build(preset, run=run, integrator=integrator_overrides or {})
    prompt = dataclasses.replace(
        recipe.prompt, clip_weights=clip_weights, allow_random_clip=allow_random_clip
    )
    return dataclasses.replace(recipe, prompt=prompt)


def choose_shots(dataset: str, root: str | Path | None, category: str, shots: int, seed: int) -> ChosenShots:
    """The ``shots`` training images a datamodule with ``shot_seed=seed`` chooses (as the benchmark's does)."""
    from tgad.data import DATAMODULES

    dm = DATAMODULES[dataset](
        root=str(root) if root else None, category=category, shots=shots, shot_seed=seed, download=False
    )
    if dataset == "embedded":
        dm.prepare_data()
    dm.setup()
    return ChosenShots([Path(p) for p in dm.shot_paths], list(dm.shot_ids), Path(dm.root))


def request_arguments(
    dataset: str, category: str, chosen: ChosenShots, seed: int, n: int, recipe: Recipe, keyword: str | None,
    hw: Hardware,
) -> dict[str, Any]:  # fmt: skip
    """Everything that determines the generated images: their cache key is ``generation_key`` of this."""
    from tgad.assets import sha256_file

    arguments = {
        "dataset": dataset,
        "root": str(Path(chosen.root).resolve()),
        "category": category,
        "shot_ids": list(chosen.ids),
        "shot_sha256": [sha256_file(p) for p in chosen.paths],
        "seed": seed,
        "n": n,
        "preset": recipe.preset,
        "clip_weights": recipe.prompt.clip_weights,
        "clip_weights_file": _file_stamp(recipe.prompt.clip_weights),
        "allow_random_clip": recipe.prompt.allow_random_clip,
        "keyword": keyword,
        "vqgan_iterations": recipe.run.vqgan_iterations,
        "vqgan_plateau": recipe.run.vqgan_plateau,
        "integrator": dataclasses.asdict(recipe.integrator),
    }
    # What else shapes the images; only where it differs from the preset, so earlier keys stay valid.
    changed = recipe.overrides()
    beyond = {
        "vqgan": changed.get("vqgan", {}),
        "prompt": {k: v for k, v in changed.get("prompt", {}).items() if k not in arguments},
        "run": {k: v for k, v in changed.get("run", {}).items() if k == "generator_image_size"},
    }
    if any(beyond.values()):
        arguments["recipe"] = {part: values for part, values in beyond.items() if values}
    if not hw.is_default_cpu:
        arguments["hardware"] = dataclasses.asdict(hw)
    prior = describe_prior(recipe, dataset, chosen.root, category).request
    if prior is not None:  # only with a prior, so earlier keys stay valid
        arguments["prior"] = prior
    return arguments


def _reuse(out_dir: Path, key: str, reporter: StageReporter) -> bool:
    if not is_complete(out_dir, key):
        return False
    logger.info("%s: complete ExtraSet for this request (key %s); reusing it", out_dir, key)
    for stage in STAGES[1:]:
        reporter.start(stage, 0)
        reporter.finish(stage, 0.0)
    return True


def generate_extra_set(
    dataset: str,
    root: str | Path | None,
    category: str,
    shots: int,
    seed: int,
    n: int,
    preset: str | Recipe,
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
    prior: str | None = None,
) -> Path:
    """Generate ``n`` normal images of ``category`` from ``shots`` real ones and write them as an ExtraSet.

    Args:
        dataset, root: ``embedded``, ``mvtec``, ``btad`` or ``loco`` and its root (None: default/env).
        seed: chooses the shots (``shot_seed``) and seeds every random draw.
        preset: a preset name for every stage, or a resolved :class:`~tgad.recipe.Recipe` (the benchmark's).
        clip_weights, allow_random_clip: a CLIP file or open_clip tag; the opt-in to random (marked RANDOM).
        keyword: object word or synset for categories the class table lacks.
        vqgan_iterations, integrator_overrides: override a preset name (``IntegratorConfig`` field names).
        threads: ``torch.set_num_threads`` for the run (recorded either way).
        generator_cache: a folder of fitted generators keyed by what the fit depends on, so requests that
            differ only after the fit (scorer, tau, N) share one fit; None fits every time.
        hardware: default ``auto`` (a GPU when present); ``devices`` > 1 fits the generator with DDP.
        chosen: the shots the caller's datamodule chose with the same arguments (same images, same key).
        prior: override a preset name's ``run.prior`` (none, other_categories or a VarianceVQGAN weight file).

    Returns:
        ``out_dir``, a complete ExtraSet (reused as is when the same request already wrote it).
    """
    from tgad.data import read_resized

    out_dir = Path(out_dir)
    _check_request(dataset, n, shots, out_dir)
    recipe = resolve_recipe(
        preset, vqgan_iterations, integrator_overrides, clip_weights, allow_random_clip, prior
    )
    if threads:
        torch.set_num_threads(threads)
    hw = (hardware or Hardware()).resolved()
    reporter = reporter or StageReporter()
    timings: dict[str, float] = {}
    started, load_start = time.perf_counter(), os.getloadavg()

    with Stage(reporter, timings, "data", 1):
        chosen = chosen or choose_shots(dataset, root, category, shots, seed)  # a benchmark hands its own
        if len(chosen.paths) != shots or len(chosen.ids) != shots:
            raise ValueError(f"chosen shots: {len(chosen.paths)} files for --shots {shots}")
        images = read_resized(list(chosen.paths), recipe.run.generator_image_size)  # (k, 3, S, S)
        reporter.advance("data")
    arguments = request_arguments(dataset, category, chosen, seed, n, recipe, keyword, hw)
    key = generation_key(arguments)
    if _reuse(out_dir, key, reporter):
        return out_dir

    # the fits' working folder lies beside --out, named like its temporaries: a killed run's is healed with them
    with scratch_dir(out_dir.parent, f"{out_dir.name}.work") as work:
        run = _generate(recipe, images, category, keyword, seed, n, arguments, generator_cache, hw, reporter,
                        timings, work)  # fmt: skip
    with Stage(reporter, timings, "write", 1):
        meta = {
            "arguments": arguments,
            **run._asdict(),
            "vqgan_config": dataclasses.asdict(run.vqgan.config),
            "iterations": recipe.run.vqgan_iterations,
            "recipe": recipe.to_dict(),
            "hardware": hw.describe(),
            "prior": arguments.get("prior") or {"label": "none"},
            "load_start": load_start,
            "started": started,
        }
        shot_paths, shot_ids = list(chosen.paths), list(chosen.ids)
        write_generated_set(out_dir, images, run.final, shot_ids, shot_paths, timings, meta, key)
        reporter.advance("write")
    return out_dir


class Generated(NamedTuple):
    """What the stages after the data made: the judges and P*, the fitted generator, the integrated one, the
    final N and the collapse report."""

    judges: Judges
    selection: Any
    vqgan: Any
    integrator: Any
    final: Any
    collapse: dict[str, Any]


def _generate(
    recipe, images, category, keyword, seed, n, arguments, generator_cache, hw, reporter, timings, work
):
    """The prompt, generator, integrator and final stages on the shots ``images`` (k, 3, S, S); the fits
    write their logs under ``work``."""
    import lightning as L

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
        collapse = _warn_collapse(integrator, final, images, f"{arguments['dataset']}/{category}")
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
    fit_file = fit_cache_file(
        generator_cache, arguments, recipe.run.generator_image_size, judges.backbone_weights
    )
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

    overrides = recipe.overrides().get("integrator", {})
    integrator = Integrator(
        preset=recipe.preset,
        generator_preset=recipe.preset,
        prompt=prompt,
        clip_model=recipe.prompt.clip_model,
        seed=seed,
        judges=judges,
        **{k: v for k, v in overrides.items() if k != "clip_model"},
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
