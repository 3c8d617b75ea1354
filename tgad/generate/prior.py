"""A generator prior from the dataset's other categories (leave-one-category-out), or from a weight file.

Pure k-shot fits the VarianceVQGAN from random weights on the shots alone. With ``Recipe.run.prior``:

- ``other_categories``: a VarianceVQGAN is first fitted on the ``train/good`` images of every OTHER category
  under the same dataset root (never one image of the target category: ``prior_corpus`` refuses), once per
  (dataset, excluded category, preset), cached under a key of those inputs and the corpus' files by content
  (names and sha256), then the shot fit starts from its weights. This is the offline analogue of starting
  from a pretrained VQGAN, and the few-shot literature's "auxiliary normal data" protocol: a different
  protocol from pure 1-shot, so rows record it (``prior`` column, the manifest's ``prior`` field);
- a file: the shot fit starts from a tgad VarianceVQGAN state dict (a cached fit or prior, ``fit_cache.py``),
  or from a taming-transformers VQGAN checkpoint (``vqgan_imagenet_f16_1024``'s ``model.ckpt`` / ``last.ckpt``,
  or any taming VQModel): the generator then takes the checkpoint's architecture, read from its tensors
  (``with_prior_architecture``), with the recipe's training and loss settings, and a new variance head.

The shot fit then runs its ``vqgan_iterations`` as before, so a generator fit with a prior costs no more than
one from scratch; the prior itself costs ``prior_iterations`` once per dataset and excluded category.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch.utils.data import DataLoader, RandomSampler

import tgad
from tgad.assets import LITE0
from tgad.assets.cache import atomic_file, cache_dir, sha256_file
from tgad.data.embedded_builder import EMBEDDED_CATEGORIES
from tgad.data.errors import DataError
from tgad.data.images import read_resized
from tgad.data.leaks import file_digest
from tgad.generate.artifact import cache_key
from tgad.generate.heal import heal_fit_file
from tgad.generate.stages import make_trainer, quiet_lightning
from tgad.recipe import PRIOR_NONE, PRIOR_OTHER, Recipe

# Imported where used, as each costs seconds that ``prior_label`` (the benchmark's plan) does not need,
# measured after ``import tgad.recipe`` with `python -X importtime` on the 2-core CPU machine under load:
# tgad.data's datamodules (anomalib + Lightning, ~25 s), tgad.data.indexing (pandas, ~1.2 s), Lightning and
# the VarianceVQGAN LightningModule (~8-15 s).

logger = logging.getLogger(__name__)

PRIOR_SEED = 0  # the prior's batches and initial weights: one prior per key, whatever the shot seed


class PriorCorpus(NamedTuple):
    """The prior's training images: the other categories' names and their train/good files, sorted."""

    root: Path
    names: list[str]
    files: list[Path]


class PriorSpec(NamedTuple):
    """A resolved ``prior`` setting: ``label`` for rows (``none``, ``other_categories:a+b``, ``file:<sha12>``)
    and ``request``, what enters the ExtraSet and fit-cache keys (None without a prior)."""

    label: str
    request: dict[str, Any] | None


TAMING, TGAD = "taming", "tgad"  # the two kinds of prior file


@functools.lru_cache(maxsize=8)
def _prior_layout(path: str, sha256: str) -> tuple[str, tuple[tuple[str, Any], ...]]:
    """(``taming`` | ``tgad``, the taming architecture's fields) of a prior file, read once per content: the
    tensors are read with ``weights_only`` (taming's Lightning 1.x bookkeeping replaced by inert stand-ins,
    ``taming_import.read_taming_checkpoint``) and only these small results are kept."""
    del sha256  # the cache key: a file rewritten in place is read again
    from tgad.models.variance_vqgan.taming_import import (
        TamingCheckpointError,
        is_taming_state,
        read_taming_checkpoint,
        taming_architecture,
    )

    try:
        state = read_taming_checkpoint(path)[0]
    except (
        TamingCheckpointError
    ):  # not readable as a taming file: the tgad loader judges it (one line) when used
        return TGAD, ()
    if not is_taming_state(state):
        return TGAD, ()
    return TAMING, tuple(taming_architecture(state, path).items())


def prior_file_format(path: str | Path) -> str:
    """``taming`` for a taming-transformers VQModel checkpoint, ``tgad`` for a VarianceVQGAN weight file."""
    path = Path(path).expanduser()
    return _prior_layout(str(path), file_sha256(path))[0]


def with_prior_architecture(recipe: Recipe) -> Recipe:
    """The recipe whose generator can start from its prior: unchanged, except for a taming checkpoint, whose
    architecture (read from the file's tensors) replaces the preset's, so the request, its key and the
    manifest record the generator that is actually fitted. Training and loss settings stay the recipe's."""
    run = recipe.run
    if run.prior in (PRIOR_NONE, PRIOR_OTHER):
        return recipe
    path = Path(run.prior).expanduser()
    kind, architecture = _prior_layout(str(path), file_sha256(path))
    if kind != TAMING:
        return recipe
    return dataclasses.replace(recipe, vqgan=recipe.vqgan.override(**dict(architecture)))


def _datamodule(dataset: str, root: str | Path | None, category: str):
    from tgad.data import DATAMODULES  # lazy: anomalib (see the imports)

    return DATAMODULES[dataset](root=str(root) if root else None, category=category, download=False)


def prior_categories(dataset: str, root: str | Path | None, category: str) -> list[str]:
    """The other categories under ``root`` (sorted folder names holding the dataset's train folder; for the
    embedded dataset, the other embedded categories). Cheap: folders only, no image is listed."""
    from tgad.data.indexing import BTAD, LOCO, MVTEC  # lazy: pandas (see the imports)

    if dataset == "embedded":
        names = [c for c in EMBEDDED_CATEGORIES if c != category]
    else:
        base = _datamodule(dataset, root, category).root
        train = {"mvtec": MVTEC, "btad": BTAD, "loco": LOCO}[dataset].train
        if not base.is_dir():
            raise DataError(
                f"{base}: dataset root not found; a {PRIOR_OTHER} prior lists its other categories"
            )
        names = sorted(
            p.name
            for p in base.iterdir()
            if p.is_dir() and not p.name.startswith(".") and p.name != category and (p / train).is_dir()
        )
    if not names:
        raise DataError(
            f"prior {PRIOR_OTHER}: no category besides {category!r} under the {dataset} root; "
            "add categories or use --prior none"
        )
    return sorted(names)


def prior_corpus(dataset: str, root: str | Path | None, category: str) -> PriorCorpus:
    """The train/good files of every other category (the datasets' indexers' train split: never a test or
    validation image), sorted; a DataError if one of them lies in the target category's folder. Images are
    listed, not opened (the shot fit's datamodule validates the target; a broken corpus file fails its read)."""
    from tgad.data.indexing import INDEXERS  # lazy: pandas (see the imports)

    target = _datamodule(dataset, root, category)
    names, files = prior_categories(dataset, root, category), []
    for name in names:
        dm = _datamodule(dataset, target.root, name)
        if dataset == "embedded":
            dm.prepare_data()  # built on demand, like the target
        samples = INDEXERS[dataset](dm.category_dir)
        files += [Path(p) for p in samples[samples.split == "train"].image_path]
    files = sorted(files)
    inside = target.category_dir.resolve()
    leaked = [f for f in files if inside in f.resolve().parents]
    if category in names or leaked:
        raise DataError(
            f"prior corpus for {category!r}: {leaked[0] if leaked else category} is of the target category; "
            "the prior never sees it (a category folder linked to the target? remove the link)"
        )
    return PriorCorpus(Path(target.root), names, files)


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a prior file or corpus image, hashed once per process while the file stays the same
    (``tgad.data.leaks.file_digest``, the leak check's cache)."""
    return file_digest(Path(path).expanduser())


def prior_label(setting: str, dataset: str, root: str | Path | None, category: str) -> str:
    """The row's ``prior`` column for the generated conditions, without listing any image."""
    if setting == PRIOR_NONE:
        return PRIOR_NONE
    if setting == PRIOR_OTHER:
        return f"{PRIOR_OTHER}:" + "+".join(prior_categories(dataset, root, category))
    return f"file:{file_sha256(setting)[:12]}"


def describe_prior(recipe: Recipe, dataset: str, root: str | Path | None, category: str) -> PriorSpec:
    """``recipe.run.prior`` resolved for one request: its label and what its keys hold."""
    run = recipe.run
    if run.prior == PRIOR_NONE:
        return PriorSpec(PRIOR_NONE, None)
    if run.prior != PRIOR_OTHER:
        sha = file_sha256(run.prior)
        request = {"label": f"file:{sha[:12]}", "kind": "file", "sha256": sha}
        if prior_file_format(run.prior) == TAMING:
            request["format"] = TAMING  # files of tgad's own format keep the request (and key) they had
        return PriorSpec(request["label"], request)
    corpus = prior_corpus(dataset, root, category)
    corpus_key = {
        "kind": "variance_vqgan_prior",
        "dataset": dataset,
        "excluded": category,
        "categories": corpus.names,
        # the files by content, not by place or stamp: a dataset copied, restored or moved (new mtimes, another
        # root) keeps its prior. Keyed by size and mtime, a re-created ../shared refitted a 62-minute prior.
        "files": [[f.relative_to(corpus.root).as_posix(), file_sha256(f)] for f in corpus.files],
        "preset": recipe.preset,
        "vqgan": recipe.vqgan.flat(),  # by flat name, as before its groups: the same key
        "iterations": run.prior_iterations,
        "batch_size": run.prior_batch_size,
        "image_size": run.generator_image_size,
        "seed": PRIOR_SEED,
        "tgad_version": tgad.__version__,
    }
    label = f"{PRIOR_OTHER}:" + "+".join(corpus.names)
    request = {
        "label": label,
        "kind": PRIOR_OTHER,
        "dataset": dataset,
        "excluded": category,
        "categories": corpus.names,
        "images": len(corpus.files),
        "iterations": run.prior_iterations,
        "key": cache_key(corpus_key),
    }
    return PriorSpec(label, request)


def prior_file(request: dict[str, Any], perceptual_sha256: str | None, hardware: Any = None) -> Path:
    """Where the other-categories prior of ``request`` is kept: the tgad cache (``priors/``), shared by every
    results folder and ``tgad generate``, keyed by the corpus key, the perceptual net and the hardware."""
    fit = {"corpus": request["key"], "perceptual": perceptual_sha256, "hardware": hardware}
    name = f"{request['excluded']}_{cache_key(fit)}.pt"
    path = cache_dir() / "priors" / name
    heal_fit_file(path)  # a file that does not load is moved aside and fitted again
    return path


class _CorpusImages(torch.utils.data.Dataset):
    """The corpus files read at the generator's side (read_resized, as the shots are)."""

    def __init__(self, files: list[Path], size: int) -> None:
        self.files, self.size = files, size

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> torch.Tensor:
        return read_resized([self.files[index]], self.size)[0]  # (3, S, S)


def fit_prior(
    recipe: Recipe, corpus: PriorCorpus, request: dict[str, Any], judges, path: Path, hw, work: Path
) -> str:
    """Fit the VarianceVQGAN (the recipe's config, whole) on random batches of the corpus for
    ``prior_iterations`` and write it to ``path`` atomically; returns a provenance note.

    The batches are unrelated images, so shot registration and the cross-shot variance are off; the variance
    head learns the within-image view spread, as on one shot. One device (no DDP: the sampler draws with
    replacement)."""
    import lightning as L  # lazy: Lightning (see the imports)

    from tgad.models.variance_vqgan.lightning_model import VarianceVQGAN

    run = recipe.run
    config = recipe.vqgan.override(register_shots="none", cross_shot_weight=0.0)
    L.seed_everything(PRIOR_SEED, verbose=False)
    vqgan = VarianceVQGAN(config=config, perceptual_backbone=LITE0)
    vqgan.attach_perceptual(judges.perceptual.backbone, judges.backbone_weights)
    images = _CorpusImages(corpus.files, run.generator_image_size)
    draws = torch.Generator().manual_seed(PRIOR_SEED)
    sampler = RandomSampler(
        images, replacement=True, num_samples=run.prior_iterations * run.prior_batch_size, generator=draws
    )
    loader = DataLoader(images, batch_size=run.prior_batch_size, sampler=sampler, drop_last=True)
    logger.info(
        "prior: fitting the VarianceVQGAN on %d images of %s (not %s) for %d iterations",
        len(corpus.files), "+".join(corpus.names), request["excluded"], run.prior_iterations,
    )  # fmt: skip
    with quiet_lightning():
        trainer = make_trainer(work, [], hw, devices=1, max_steps=2 * run.prior_iterations, max_epochs=1)
        trainer.fit(vqgan, train_dataloaders=loader)
    record = {k: request[k] for k in ("label", "excluded", "categories", "key", "iterations")}
    record["files"] = [f.relative_to(corpus.root).as_posix() for f in corpus.files]
    with atomic_file(path, "wb") as handle:
        torch.save(
            {
                "state_dict": vqgan.model.state_dict(),
                "discriminator": vqgan.discriminator.state_dict(),
                "config": dataclasses.asdict(vqgan.config),
                "batch_size": run.prior_batch_size,
                "prior": record,
            },
            handle,
        )
    return f"fitted on {len(corpus.files)} images for {run.prior_iterations} iterations"


def ensure_prior(recipe: Recipe, request: dict[str, Any], root: Path, judges, hw, work: Path, hardware=None):
    """The prior's weight file: the given file, or the other-categories prior (fitted unless cached)."""
    if request["kind"] == "file":
        return Path(recipe.run.prior).expanduser(), "given file"
    path = prior_file(request, judges.backbone_weights.sha256, hardware)
    if path.is_file():
        logger.info("prior: reusing %s", path)
        return path, "reused"
    corpus = prior_corpus(request["dataset"], root, request["excluded"])
    return path, fit_prior(recipe, corpus, request, judges, path, hw, work)


def start_from_prior(vqgan, path: Path, shots: int) -> str:
    """Load the prior's generator (encoder, codebook with its EMA statistics, decoder, variance head) and its
    discriminator into ``vqgan``; returns a provenance note. A taming checkpoint loads its encoder, codebook,
    decoder and discriminator (``taming_import``) into a ``vqgan`` of its architecture
    (``with_prior_architecture``); the variance head starts new.

    The EMA counts are scaled from the prior's batch to the shots' (k images instead of ``batch_size``), so a
    code the shots never pick decays to the dead-code threshold and is restarted from a shot latent as soon as
    in a fit from scratch: the codebook moves to the target, the rest refines what the prior learned."""
    if prior_file_format(path) == TAMING:
        from tgad.models.variance_vqgan.taming_import import import_taming_file

        report = vqgan._aux["init"] = import_taming_file(path, vqgan.model, vqgan.discriminator)
        return f", started from taming checkpoint {path} (sha256:{report.weights.sha256[:12]}, variance head new)"
    state = torch.load(path, map_location="cpu", weights_only=True)
    try:
        vqgan.model.load_state_dict(state["state_dict"], strict=True)
        if "discriminator" in state:
            vqgan.discriminator.load_state_dict(state["discriminator"], strict=True)
    except (KeyError, RuntimeError, TypeError) as err:
        raise ValueError(
            f"{path}: not a VarianceVQGAN of this preset ({str(err).splitlines()[0][:160]}); "
            "give a prior fitted with the same preset and generator settings"
        ) from err
    if state.get("batch_size"):
        quantizer = vqgan.model.quantizer
        scale = shots / float(state["batch_size"])
        quantizer.cluster_size.mul_(scale)
        quantizer.code_sum.mul_(scale)
    return f", started from prior {path} (sha256:{sha256_file(path)[:12]})"


def start_shot_fit_from_prior(
    recipe: Recipe, vqgan, images, judges, arguments: dict[str, Any], hw, work
) -> str:
    """Load the request's prior into ``vqgan`` before its shot fit (fitting the other-categories prior once,
    unless cached); the shot fit then starts from the same random state whether the prior was fitted now or
    loaded. Returns the fit note's addition."""
    import lightning as L  # lazy: Lightning (see the imports)

    path, how = ensure_prior(
        recipe, arguments["prior"], Path(arguments["root"]), judges, hw, work, arguments.get("hardware")
    )
    L.seed_everything(arguments["seed"], verbose=False)
    return start_from_prior(vqgan, path, len(images)) + f" ({how})"
