"""``tgad benchmark`` (= ``make benchmark``): shots vs plain augmentation vs tgad vs tgad + plain augmentation,
per category and scorer, with a report."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from rich.console import Console
from rich.markdown import Markdown
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.text import Text

from tgad.benchmark.plan import CONDITIONS, DEFAULT_CONDITIONS, BenchmarkConfig, BenchmarkError
from tgad.cli.errors import Stopped, stop_on_signals
from tgad.cli.hardware_args import add_hardware_arguments
from tgad.cli.overrides import add_override_arguments, parse_overrides
from tgad.cli.preflight import preflight_benchmark, threads_from_env
from tgad.data.embedded_builder import EMBEDDED_CATEGORIES
from tgad.hardware import Hardware
from tgad.models.integrator.names import SCORERS
from tgad.recipe import PRESETS


def _shots(value: str) -> int | None:
    if value == "full":
        return None
    try:
        shots = int(value)
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"--shots {value!r}: a positive number or 'full'") from err
    if shots < 1:
        raise argparse.ArgumentTypeError(f"--shots {value!r}: a positive number or 'full'")
    return shots


def add_benchmark_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "benchmark",
        help="fit anomalib detectors on the shots alone, + plain augmentation, + tgad images, + augmented tgad "
        "images; CSV and report",
        description="For each category x shots x seed x model, evaluates the conditions on the same test "
        "split and appends one row per run to results/<dataset>/<name>/results.csv (rows already there are "
        "skipped, so an interrupted run resumes). Writes summary.md and plots beside it.",
    )
    _add_grid_arguments(p)
    _add_weight_arguments(p)
    _add_output_arguments(p)
    _add_executor_arguments(p)
    add_override_arguments(p)
    add_hardware_arguments(p)


def _add_grid_arguments(p: argparse.ArgumentParser) -> None:
    """What the grid spans: dataset, categories, models, shots, seeds, conditions, scorers, preset, N."""
    p.add_argument("--dataset", default="embedded", choices=["embedded", "mvtec", "btad", "loco"])
    p.add_argument(
        "--root", default=None, help="dataset root (default: $TGAD_<DATASET>_ROOT or the tgad cache)"
    )
    p.add_argument(
        "--categories",
        nargs="+",
        default=None,
        help="category folders (default: every embedded category; for real datasets the known ones under --root)",
    )
    p.add_argument("--models", nargs="+", default=["patchcore"], help="registry names (default patchcore)")
    p.add_argument("--shots", nargs="+", type=_shots, default=[1], help="k real shots per row, or 'full'")
    p.add_argument(
        "--seeds", nargs="+", type=int, default=[0], help="shot/generation seeds (protocol: 0 1 2 3 4)"
    )
    p.add_argument(
        "--conditions",
        nargs="+",
        default=list(DEFAULT_CONDITIONS),
        choices=list(CONDITIONS),
        help="default: all (tgad_aug = the tgad images through plain_aug's transforms; aug_select / "
        "tgad_select = augmentation (+ generated) candidates kept by defect_safe)",
    )
    p.add_argument(
        "--scorers",
        nargs="+",
        default=[],
        choices=list(SCORERS),
        help="how the Integrator selects, one tgad/tgad_aug row each (default: the preset's; cpu: "
        "defect_safe): auto (combined with real CLIP, shot_fidelity with random CLIP), clip_text (the "
        "paper), shot_fidelity, combined, defect_safe, none (random)",
    )
    p.add_argument("--preset", default="cpu", choices=PRESETS)
    p.add_argument("--n-gen", type=int, default=64, help="extra images per extra set (default 64)")
    p.add_argument("--image-size", type=int, default=None, help="override the recipe's detector image side")
    p.add_argument(
        "--prior",
        default="none",
        metavar="none|other_categories|FILE",
        help="where the generator fit starts: none (default: pure k-shot), other_categories (a VarianceVQGAN "
        "fitted once on the train/good images of the dataset's OTHER categories, then fine-tuned on the "
        "shots: the auxiliary-normal-data protocol, not pure k-shot) or FILE (a tgad VarianceVQGAN weight file, or a taming-transformers VQGAN "
        "checkpoint such as vqgan_imagenet_f16_1024/last.ckpt, whose architecture the generator then takes)",
    )


def _add_output_arguments(p: argparse.ArgumentParser) -> None:
    """Where results go and what is shown or logged."""
    p.add_argument(
        "--name", default=None, help="results folder name under results/<dataset>/ (default: the preset)"
    )
    p.add_argument(
        "--results-dir",
        default="results",
        help="results root: rows go to <it>/<dataset>/<name>/ (default results)",
    )
    p.add_argument(
        "--no-wandb", action="store_true", help="no W&B run (default: offline unless WANDB_MODE set)"
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument(
        "--no-validate",
        action="store_true",
        help="skip the synthetic-defect validation columns (held-out train normals; analysis only)",
    )


def _add_weight_arguments(p: argparse.ArgumentParser) -> None:
    """Backbone and CLIP weights, keywords, and the explicit opt-ins to random weights."""
    p.add_argument("--backbone", default=None, help="timm backbone for every model (default: each model's)")
    p.add_argument(
        "--backbone-weights",
        default=None,
        metavar="FILE",
        help="a local timm state dict (.pth/.safetensors) for --backbone, e.g. DINOv2 for anomaly_dino",
    )
    p.add_argument(
        "--clip-weights", default=None, help="CLIP checkpoint file or open_clip tag (tgad condition)"
    )
    p.add_argument(
        "--keywords",
        nargs="+",
        default=[],
        metavar="CATEGORY=WORD",
        help="object word (or WordNet synset) for categories the class table lacks, e.g. widget='metal nut'",
    )
    p.add_argument(
        "--allow-random-clip", action="store_true", help="tgad condition may use random CLIP weights"
    )
    p.add_argument(
        "--allow-random-backbone",
        action="store_true",
        help="models may use random backbone weights when none are found (rows say RANDOM)",
    )


def _add_executor_arguments(p: argparse.ArgumentParser) -> None:
    """Sequential in this process, or Ray tasks locally or on a cluster."""
    p.add_argument(
        "--executor",
        default="sequential",
        choices=["sequential", "ray"],
        help="sequential (default: rows in order, in this process) or ray (one task per extra set and per row, "
        "on a local Ray with this machine's cores, or on the cluster at --ray-address; needs tgad[ray])",
    )
    p.add_argument(
        "--ray-address",
        default=None,
        metavar="ADDRESS",
        help="join this Ray cluster (e.g. ray://head:10001 or auto); results folder and data root must be "
        "on a filesystem every node sees",
    )


def _categories(args: argparse.Namespace) -> tuple[str, ...]:
    if args.categories:
        return tuple(args.categories)
    from tgad.data import DATAMODULES  # lazy: the datamodules import anomalib (~1400 modules, 4 s)

    if args.dataset == "embedded":
        return tuple(EMBEDDED_CATEGORIES)
    dm_class = DATAMODULES[args.dataset]
    root = Path(args.root or os.environ.get(dm_class.root_env) or dm_class.default_root).expanduser()
    found = tuple(c for c in dm_class.categories if (root / c).is_dir())
    if not found:
        raise BenchmarkError(
            f"no {args.dataset} categories found under {root}; pass --root (or set {dm_class.root_env}) and/or "
            f"--categories (data: {dm_class.where_to_get})"
        )
    return found


def _keywords(pairs: list[str]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        category, sep, word = pair.partition("=")
        if not sep or not category or not word:
            raise BenchmarkError(f"--keywords {pair!r}: write CATEGORY=WORD, e.g. widget='metal nut'")
        out[category] = word
    return out


class RichGrid:
    """A ``tgad.benchmark.runner.GridProgress`` drawing the heading and one rich bar counting rows."""

    def __init__(self, console: Console, enabled: bool = True) -> None:
        self.console, self.enabled, self.bar, self.task = console, enabled, None, None
        self.todo, self.done, self.where = 0, 0, "the preflight"  # what a stop message says

    def start(self, todo: int, total: int, heading: str, work: int | None = None) -> None:
        self.todo, self.where = todo, "the first row"
        # soft_wrap: one line however long the path (a log read by a script must find "rows to run" whole)
        self.console.print(
            f"{heading}: {todo} of {total} rows to run", highlight=False, style="bold", soft_wrap=True
        )
        # The bar fills by work (a generated set weighs ~10 rows), so the ETA holds; the count is of rows.
        columns = (TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[rows]}"),
                   TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn())  # fmt: skip
        self.bar = Progress(*columns, console=self.console, disable=not self.enabled)
        self.task = self.bar.add_task("rows", total=work or todo, rows=f"0/{todo} rows")
        self.bar.start()

    def status(self, text: str) -> None:
        self.where = text
        if self.bar is not None:
            self.bar.update(self.task, description=text)

    def advance(self, work: int = 1) -> None:
        self.done += 1
        if self.bar is not None:
            self.bar.update(self.task, advance=work, rows=f"{self.done}/{self.todo} rows")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()
            self.bar = None


def run_benchmark_cli(args: argparse.Namespace, console: Console, err_console: Console) -> int:
    """``tgad benchmark``: the config from the arguments, the preflight (which also heals the results folder
    and plans, once), the grid, the summary. Errors reach ``tgad.cli.errors.report_errors`` (one red line,
    exit code 2); SIGTERM or SIGINT ends it with 143 or 130 and one line saying where it stopped and how to
    resume."""
    # lazy: the runner imports anomalib (~2700 modules, 11 s on the 2-core dev machine), which this module's
    # parser (`tgad --help`) does not need
    from tgad.benchmark.runner import run_benchmark

    grid = RichGrid(Console(stderr=True), enabled=not args.no_progress)
    results = Path(args.results_dir) / args.dataset / (args.name or args.preset) / "results.csv"
    try:
        with stop_on_signals():
            config = config_from_args(args)
            prepared = preflight_benchmark(config, args.executor, args.ray_address)  # before any model
            result = run_benchmark(
                config, progress=grid, executor=args.executor, ray_address=args.ray_address, prepared=prepared
            )
    except Stopped as stop:
        grid.close()
        where = f"{grid.done} of {grid.todo} rows" if grid.todo else "no rows"
        line = (
            f"stopped by {stop} during {grid.where}: {where} finished this run, kept in {results}; run the same "
            "command again to resume (finished rows are skipped)"
        )
        err_console.print(Text.assemble(("stopped:", "red"), " ", line), highlight=False, soft_wrap=True)
        return stop.exit_code
    console.print(Markdown(result.summary.read_text()))
    console.print(f"\n{result.new_rows} new rows in {result.seconds:.0f} s; summary: {result.summary}")
    for failure in result.failures:
        console.print(f"[red]failed:[/red] {failure}", highlight=False, soft_wrap=True)
    return 1 if result.failures else 0


def config_from_args(args: argparse.Namespace) -> BenchmarkConfig:
    """The ``BenchmarkConfig`` of the command line (``$TGAD_THREADS`` for the threads)."""
    return BenchmarkConfig.of(
        dataset=args.dataset,
        categories=_categories(args),
        root=args.root,
        models=tuple(args.models),
        shots=tuple(args.shots),
        seeds=tuple(args.seeds),
        conditions=tuple(dict.fromkeys(args.conditions)),
        scorers=tuple(dict.fromkeys(args.scorers)),
        preset=args.preset,
        n_gen=args.n_gen,
        name=args.name,
        results_dir=args.results_dir,
        backbone=args.backbone,
        backbone_weights=args.backbone_weights,
        image_size=args.image_size,
        clip_weights=args.clip_weights,
        keywords=_keywords(args.keywords),
        allow_random_clip=args.allow_random_clip,
        allow_random_backbone=args.allow_random_backbone,
        wandb=not args.no_wandb,
        threads=threads_from_env(),
        integrator_overrides=parse_overrides(args.overrides),  # a UsageError: one line, exit 2
        vqgan_iterations=args.vqgan_iterations,
        prior=args.prior,
        defect_check=not args.no_validate,
        hardware=Hardware(args.accelerator, args.devices, args.precision),
    )
