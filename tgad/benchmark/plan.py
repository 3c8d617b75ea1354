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

import dataclasses
import functools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
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
class Grid:
    """Which rows: the axes of the grid and the values every row's key shares (``full_plan``)."""

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

    def __post_init__(self) -> None:
        # a value given twice (``--seeds 0 0``) would plan one row twice: each axis keeps its first
        for axis in ("categories", "models", "shots", "seeds", "conditions", "scorers"):
            object.__setattr__(self, axis, tuple(dict.fromkeys(getattr(self, axis))))


@dataclass(frozen=True)
class Detectors:
    """How the detectors (``tgad.baselines``) are built: backbone, its weights, the image side."""

    backbone: str | None = None  # None: each model's default
    backbone_weights: str | None = None  # a local timm state dict for that backbone (e.g. DINOv2)
    allow_random_backbone: bool = False
    # the detectors' image side; None on construction: the preset's (resolved by ``BenchmarkConfig``, so a
    # built config always holds the side)
    image_size: int | None = None
    model_overrides: Mapping[str, Mapping[str, object]] = field(default_factory=dict)  # model -> its settings


@dataclass(frozen=True)
class GeneratorSettings:
    """The generated conditions' settings over the preset; all enter the generated ExtraSets' keys."""

    # IntegratorConfig fields (e.g. tau, patch_fraction, rounds) and the VarianceVQGAN fit's iterations
    integrator_overrides: Mapping[str, object] = field(default_factory=dict)
    vqgan_iterations: int | None = None
    # where the generator fit starts: none | other_categories | a VarianceVQGAN weight file or taming checkpoint
    prior: str = "none"
    clip_weights: str | None = None  # CLIP checkpoint file or open_clip tag
    allow_random_clip: bool = False
    keywords: Mapping[str, str] = field(default_factory=dict)  # category -> object word


@dataclass(frozen=True)
class Output:
    """Where and what a run writes beside the rows' metrics."""

    name: str | None = None  # results/<dataset>/<name>; default: the preset
    results_dir: str = "results"
    wandb: bool = True
    n_examples: int = 4  # test images per anomaly-map overlay
    defect_check: bool = True  # the synthetic-defect check columns (val_*), where the train split allows them


GROUPS = {"grid": Grid, "detectors": Detectors, "generator": GeneratorSettings, "output": Output}


@dataclass(frozen=True)
class BenchmarkConfig:
    """Everything a benchmark run depends on (the CLI's arguments), in groups that each have one reader:
    the plan reads ``grid``, the rows ``detectors``, the extra sets ``generator``, the runner ``output``.
    ``BenchmarkConfig.of(dataset=..., seeds=...)`` builds one from the flat names."""

    grid: Grid = field(default_factory=Grid)
    detectors: Detectors = field(default_factory=Detectors)
    generator: GeneratorSettings = field(default_factory=GeneratorSettings)
    output: Output = field(default_factory=Output)
    # Where the generator and the detectors run: resolved where the work runs (a Ray worker may have a GPU
    # its driver lacks); detectors use one device in float32, the generator fit all ``devices``.
    hardware: Hardware = field(default_factory=Hardware)
    threads: int | None = None

    @classmethod
    def of(cls, **flat: object) -> BenchmarkConfig:
        """The config from flat names (``dataset=``, ``seeds=``, ``backbone=``, ``hardware=``, ...), each
        sorted into its group; an unknown name is a TypeError, as for a constructor."""
        parts: dict[str, dict[str, object]] = {group: {} for group in GROUPS}
        top = {}
        for name, value in flat.items():
            group = _GROUP_OF.get(name)
            if group is None and name not in ("hardware", "threads"):
                raise TypeError(f"BenchmarkConfig.of() got an unexpected keyword argument {name!r}")
            (parts[group] if group else top)[name] = value
        return cls(**{group: GROUPS[group](**values) for group, values in parts.items()}, **top)

    def flat(self) -> dict[str, object]:
        """Every setting by its flat name (the inverse of ``of``; the W&B run config)."""
        out: dict[str, object] = {}
        for group in GROUPS:
            out |= {f.name: getattr(getattr(self, group), f.name) for f in fields(GROUPS[group])}
        return out | {"hardware": self.hardware, "threads": self.threads}

    def replace(self, **flat: object) -> BenchmarkConfig:
        """This config with some settings changed, by flat name (checked again)."""
        return BenchmarkConfig.of(**(self.flat() | flat))

    def __post_init__(self) -> None:
        grid, generator = self.grid, self.generator
        self._check_names()
        if grid.preset not in PRESETS:
            raise BenchmarkError(f"--preset {grid.preset!r}: choose one of {list(PRESETS)}")
        unknown = [c for c in grid.conditions if c not in CONDITIONS]
        if unknown or not grid.conditions:
            raise BenchmarkError(f"--conditions {list(grid.conditions)}: choose from {list(CONDITIONS)}")
        bad = [s for s in grid.scorers if s not in SCORERS]
        if bad:
            raise BenchmarkError(f"--scorers {list(grid.scorers)}: choose from {list(SCORERS)}")
        if grid.n_gen < 1 and any(c != "shots" for c in grid.conditions):
            raise BenchmarkError(f"--n-gen {grid.n_gen}: extra-set conditions need at least one image")
        if generator.vqgan_iterations is not None and generator.vqgan_iterations < 1:
            raise BenchmarkError(f"--vqgan-iterations {generator.vqgan_iterations}: must be >= 1")
        bad_seeds = [s for s in grid.seeds if not 0 <= s <= MAX_SEED]
        if bad_seeds:
            raise BenchmarkError(
                f"--seeds {' '.join(map(str, bad_seeds))}: seeds are whole numbers in 0 .. {MAX_SEED}, e.g. 0 1 2"
            )
        size = self.detectors.image_size
        if size is not None and not MIN_IMAGE_SIZE <= size <= MAX_IMAGE_SIZE:
            raise BenchmarkError(
                f"--image-size {size}: an image side in pixels in {MIN_IMAGE_SIZE} .. {MAX_IMAGE_SIZE} "
                "(e.g. 256), or leave it out for the preset's"
            )
        try:
            self.recipe  # noqa: B018 (built once here: a bad --set fails before any work)
        except (TypeError, ValueError) as err:
            raise BenchmarkError(f"--{'prior' if 'prior' in str(err) else 'set'}: {err}") from err
        if not grid.categories:
            raise BenchmarkError("no categories: pass --categories (or a root holding category folders)")
        resolved = dataclasses.replace(self.detectors, image_size=self.recipe.run.detector_image_size)
        object.__setattr__(self, "detectors", resolved)

    def _check_names(self) -> None:
        """Categories and ``--name`` are folder names joined under the dataset root and ``--results-dir``:
        a path there would read or write outside them."""
        for category in self.grid.categories:
            if problem := folder_name_problem(category):
                raise BenchmarkError(
                    f"--categories {category!r} {problem}; a category is a folder name under the dataset root "
                    "(e.g. hazelnut), not a path"
                )
        name = self.output.name
        if name is not None and (problem := folder_name_problem(name)):
            raise BenchmarkError(
                f"--name {name!r} {problem}; --name is a folder name under <results-dir>/<dataset>/ "
                "(e.g. --name run1); put the path in --results-dir"
            )

    @property
    def out_dir(self) -> Path:
        return Path(self.output.results_dir) / self.grid.dataset / (self.output.name or self.grid.preset)

    @functools.cached_property
    def recipe(self) -> Recipe:
        """The preset with this run's overrides, resolved once; the chain gets it as is (the scorer of a
        generated condition is set per row)."""
        return Recipe.build(
            self.grid.preset,
            run={
                "vqgan_iterations": self.generator.vqgan_iterations,
                "detector_image_size": self.detectors.image_size,
                "prior": self.generator.prior,
            },
            integrator=dict(self.generator.integrator_overrides),
        )


_GROUP_OF = {f.name: group for group, cls in GROUPS.items() for f in fields(cls)}  # flat name -> its group


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
    if not set(config.grid.conditions) & set(GENERATED):
        return ()
    scorers = config.grid.scorers or (config.recipe.integrator.scorer,)
    needs_clip = "auto" in scorers
    random_clip = (
        not _real_clip(config.recipe.prompt.clip_model, config.generator.clip_weights) if needs_clip else True
    )
    return tuple(dict.fromkeys(resolve_scorer(s, random_clip)[0] for s in scorers))


def full_plan(config: BenchmarkConfig) -> list[Row]:
    """Every row of the grid, once, grouped so each (category, shots, seed) builds its extra sets once."""
    rows: dict[Row, None] = {}  # ordered and without repeats (two backbones resolved alike, say)
    grid, scorers = config.grid, plan_scorers(config)
    for category in grid.categories:
        generated = set(grid.conditions) & set(GENERATED)
        prior = (
            prior_label(config.generator.prior, grid.dataset, grid.root, category) if generated else "none"
        )
        for shots in grid.shots:
            for seed in grid.seeds:
                for condition in grid.conditions:
                    for scorer in scorers if condition in GENERATED else ("",):
                        for model in grid.models:
                            rows.setdefault(
                                Row(
                                    dataset=grid.dataset,
                                    category=category,
                                    model=model,
                                    backbone=config.detectors.backbone or default_backbone(model),
                                    shots=shots,
                                    seed=seed,
                                    condition=condition,
                                    scorer=scorer,
                                    n_gen=0 if condition == "shots" else grid.n_gen,
                                    preset=grid.preset,
                                    image_size=config.detectors.image_size,
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
    side = max(config.detectors.image_size, config.recipe.run.generator_image_size)
    sets = {(r.category, r.shots, r.seed, r.condition, r.scorer) for r in rows if r.condition != "shots"}
    return len(sets) * image_bytes(config.grid.n_gen, side) + len(rows) * MIB + MIB
