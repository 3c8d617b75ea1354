"""What a benchmark runs: categories x shots x seeds x conditions x models, minus rows already in the CSV.

A row is identified by the values of ``KEY_COLUMNS`` only, so a re-run with the same arguments finds its
finished rows in the results CSV and runs the rest; a wider grid (more seeds, another model, another scorer)
in the same results folder adds only the new rows.

The generated conditions (``tgad``, ``tgad_aug``, ``tgad_select``) have one row per scorer; ``auto`` is resolved when the
plan is made (``combined`` when real CLIP weights are found, ``shot_fidelity`` otherwise), so the CSV holds
the scorer that ran. ``shots``, ``plain_aug`` and ``aug_select`` rows have no scorer and are shared by every
scorer.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from tgad.assets.clip import clip_weights_available
from tgad.data.names import folder_name_problem
from tgad.data.shots import MAX_SEED
from tgad.generate.prior import prior_label
from tgad.hardware import Hardware
from tgad.models.integrator.names import SCORERS
from tgad.models.integrator.scorers import resolve_scorer
from tgad.recipe import MAX_IMAGE_SIZE, MIN_IMAGE_SIZE, PRESETS, Recipe

MIB = 1 << 20
CONDITIONS = ("shots", "plain_aug", "tgad", "tgad_aug", "aug_select", "tgad_select")
DEFAULT_CONDITIONS = ("shots", "plain_aug", "tgad", "tgad_aug", "aug_select", "tgad_select")
GENERATED = ("tgad", "tgad_aug", "tgad_select")  # conditions made with the generator: one row per scorer
KEY_COLUMNS = (
    "dataset",
    "category",
    "model",
    "backbone",
    "shots",
    "seed",
    "condition",
    "scorer",
    "n_gen",
    "preset",
    "image_size",
    # where the generator fit started: ``none``, ``other_categories:<names>`` or ``file:<sha12>``
    # (``tgad.generate.prior``); ``none`` for rows without a generator and for CSVs before the column
    "prior",
)


class BenchmarkError(RuntimeError):
    """A benchmark cannot run as asked; the message says which setting to change."""


@dataclass(frozen=True)
class BenchmarkConfig:
    """Everything a benchmark run depends on (the CLI's arguments)."""

    dataset: str = "embedded"
    categories: tuple[str, ...] = ()
    root: str | None = None
    models: tuple[str, ...] = ("patchcore",)
    shots: tuple[int | None, ...] = (1,)  # None = the full train set
    seeds: tuple[int, ...] = (0,)
    conditions: tuple[str, ...] = DEFAULT_CONDITIONS
    # for the generated conditions (``none`` = random selection); empty: the recipe's scorer (cpu: defect_safe)
    scorers: tuple[str, ...] = ()
    preset: str = "cpu"
    n_gen: int = 64
    name: str | None = None  # results/<dataset>/<name>; default: the preset
    results_dir: str = "results"
    backbone: str | None = None  # None: each model's default
    backbone_weights: str | None = None  # a local timm state dict for that backbone (e.g. DINOv2)
    # the detectors' image side; None on construction: the preset's (resolved then, so it always holds the side)
    image_size: int | None = None
    clip_weights: str | None = None  # CLIP checkpoint file or open_clip tag for the tgad condition
    keywords: Mapping[str, str] = field(default_factory=dict)  # category -> object word (tgad condition)
    allow_random_clip: bool = False
    allow_random_backbone: bool = False
    wandb: bool = True
    threads: int | None = None
    n_examples: int = 4  # test images per anomaly-map overlay
    model_overrides: Mapping[str, Mapping[str, object]] = field(default_factory=dict)
    # Generator settings over the preset (IntegratorConfig fields, e.g. tau, patch_fraction, rounds) and the
    # VarianceVQGAN fit's iterations; both enter the generated ExtraSets' keys.
    integrator_overrides: Mapping[str, object] = field(default_factory=dict)
    vqgan_iterations: int | None = None
    # the generated conditions' generator prior: none | other_categories | a VarianceVQGAN weight file
    prior: str = "none"
    defect_check: bool = True  # the synthetic-defect check columns (val_*), where the train split allows them
    # Where the generator and the detectors run: resolved where the work runs (a Ray worker may have a GPU
    # its driver lacks); detectors use one device in float32, the generator fit all ``devices``.
    hardware: Hardware = field(default_factory=Hardware)

    def __post_init__(self) -> None:
        # a value given twice (``--seeds 0 0``) would plan one row twice: each grid axis keeps its first
        for axis in ("categories", "models", "shots", "seeds", "conditions", "scorers"):
            object.__setattr__(self, axis, tuple(dict.fromkeys(getattr(self, axis))))
        self._check_names()
        if self.preset not in PRESETS:
            raise BenchmarkError(f"--preset {self.preset!r}: choose one of {list(PRESETS)}")
        unknown = [c for c in self.conditions if c not in CONDITIONS]
        if unknown or not self.conditions:
            raise BenchmarkError(f"--conditions {list(self.conditions)}: choose from {list(CONDITIONS)}")
        bad = [s for s in self.scorers if s not in SCORERS]
        if bad:
            raise BenchmarkError(f"--scorers {list(self.scorers)}: choose from {list(SCORERS)}")
        if self.n_gen < 1 and any(c != "shots" for c in self.conditions):
            raise BenchmarkError(f"--n-gen {self.n_gen}: extra-set conditions need at least one image")
        if self.vqgan_iterations is not None and self.vqgan_iterations < 1:
            raise BenchmarkError(f"--vqgan-iterations {self.vqgan_iterations}: must be >= 1")
        bad_seeds = [s for s in self.seeds if not 0 <= s <= MAX_SEED]
        if bad_seeds:
            raise BenchmarkError(
                f"--seeds {' '.join(map(str, bad_seeds))}: seeds are whole numbers in 0 .. {MAX_SEED}, e.g. 0 1 2"
            )
        if self.image_size is not None and not MIN_IMAGE_SIZE <= self.image_size <= MAX_IMAGE_SIZE:
            raise BenchmarkError(
                f"--image-size {self.image_size}: an image side in pixels in {MIN_IMAGE_SIZE} .. {MAX_IMAGE_SIZE} "
                "(e.g. 256), or leave it out for the preset's"
            )
        try:
            self.recipe  # noqa: B018 (built once here: a bad --set fails before any work)
        except (TypeError, ValueError) as err:
            raise BenchmarkError(f"--{'prior' if 'prior' in str(err) else 'set'}: {err}") from err
        if not self.categories:
            raise BenchmarkError("no categories: pass --categories (or a root holding category folders)")
        object.__setattr__(self, "image_size", self.recipe.run.detector_image_size)

    def _check_names(self) -> None:
        """Categories and ``--name`` are folder names joined under the dataset root and ``--results-dir``:
        a path there would read or write outside them."""
        for category in self.categories:
            if problem := folder_name_problem(category):
                raise BenchmarkError(
                    f"--categories {category!r} {problem}; a category is a folder name under the dataset root "
                    "(e.g. hazelnut), not a path"
                )
        if self.name is not None and (problem := folder_name_problem(self.name)):
            raise BenchmarkError(
                f"--name {self.name!r} {problem}; --name is a folder name under <results-dir>/<dataset>/ "
                "(e.g. --name run1); put the path in --results-dir"
            )

    @property
    def out_dir(self) -> Path:
        return Path(self.results_dir) / self.dataset / (self.name or self.preset)

    @functools.cached_property
    def recipe(self) -> Recipe:
        """The preset with this run's overrides, resolved once; the chain gets it as is (the scorer of a
        generated condition is set per row)."""
        return Recipe.build(
            self.preset,
            run={
                "vqgan_iterations": self.vqgan_iterations,
                "detector_image_size": self.image_size,
                "prior": self.prior,
            },
            integrator=dict(self.integrator_overrides),
        )


@dataclass(frozen=True)
class Row:
    """One result line to compute: a pure function of these values (and the data on disk)."""

    dataset: str
    category: str
    model: str
    backbone: str
    shots: int | None
    seed: int
    condition: str
    scorer: str  # the resolved scorer of a generated condition, "" for shots and plain_aug
    n_gen: int  # extra images of this row (0 for the ``shots`` condition)
    preset: str
    image_size: int
    prior: str = "none"  # the generated conditions' prior label; none for the others

    def key(self) -> tuple[str, ...]:
        return row_key(self.as_columns())

    def as_columns(self) -> dict[str, object]:
        values = {name: getattr(self, name) for name in KEY_COLUMNS}
        values["shots"] = "full" if self.shots is None else self.shots
        return values


def row_key(values: Mapping[str, object]) -> tuple[str, ...]:
    """The identity of a row, as strings (so rows read back from the CSV compare equal)."""
    return tuple(str(values[name]) for name in KEY_COLUMNS)


def default_backbone(model: str) -> str:
    # lazy: the registry imports anomalib (~2700 modules, 11 s of `tgad --help` on the 2-core dev machine)
    from tgad.baselines.registry import MODELS

    if model not in MODELS:
        raise BenchmarkError(f"--models {model!r}: choose from {sorted(MODELS)}")
    return MODELS[model].default_backbone


@functools.cache
def _real_clip(clip_model: str, clip_weights: str | None) -> bool:
    return clip_weights_available(clip_model, clip_weights)


def plan_scorers(config: BenchmarkConfig) -> tuple[str, ...]:
    """The resolved scorers of the generated conditions, in order, without repeats (``auto`` answered)."""
    if not set(config.conditions) & set(GENERATED):
        return ()
    scorers = config.scorers or (config.recipe.integrator.scorer,)
    needs_clip = "auto" in scorers
    random_clip = not _real_clip(config.recipe.prompt.clip_model, config.clip_weights) if needs_clip else True
    return tuple(dict.fromkeys(resolve_scorer(s, random_clip)[0] for s in scorers))


def full_plan(config: BenchmarkConfig) -> list[Row]:
    """Every row of the grid, once, grouped so each (category, shots, seed) builds its extra sets once."""
    rows: dict[Row, None] = {}  # ordered and without repeats (two backbones resolved alike, say)
    scorers = plan_scorers(config)
    for category in config.categories:
        generated = set(config.conditions) & set(GENERATED)
        prior = prior_label(config.prior, config.dataset, config.root, category) if generated else "none"
        for shots in config.shots:
            for seed in config.seeds:
                for condition in config.conditions:
                    for scorer in scorers if condition in GENERATED else ("",):
                        for model in config.models:
                            rows.setdefault(
                                Row(
                                    dataset=config.dataset,
                                    category=category,
                                    model=model,
                                    backbone=config.backbone or default_backbone(model),
                                    shots=shots,
                                    seed=seed,
                                    condition=condition,
                                    scorer=scorer,
                                    n_gen=0 if condition == "shots" else config.n_gen,
                                    preset=config.preset,
                                    image_size=config.image_size,
                                    prior=prior if condition in GENERATED else "none",
                                )
                            )
    return list(rows)


def make_plan(config: BenchmarkConfig, done: Iterable[tuple[str, ...]] = ()) -> list[Row]:
    """The rows of the grid whose key is not in ``done`` (keys of rows already in the results CSV)."""
    done = set(done)
    return [row for row in full_plan(config) if row.key() not in done]


def image_bytes(n: int, side: int) -> int:
    """Room for ``n`` PNGs of ``side`` px (uncompressed, the worst case) and a manifest and grid beside them."""
    return n * side * side * 3 + 2 * MIB


def benchmark_bytes(config: BenchmarkConfig, rows: list[Row]) -> int:
    """About how much the remaining ``rows`` write: their extra sets' images, plots and CSV lines."""
    side = max(config.image_size, config.recipe.run.generator_image_size)
    sets = {(r.category, r.shots, r.seed, r.condition, r.scorer) for r in rows if r.condition != "shots"}
    return len(sets) * image_bytes(config.n_gen, side) + len(rows) * MIB + MIB
