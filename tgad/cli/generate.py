"""``tgad generate``: the whole chain for one class, with one progress bar per stage."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from tgad.cli.hardware_args import add_hardware_arguments, hardware_from_args
from tgad.cli.overrides import add_override_arguments, parse_overrides
from tgad.models.integrator.names import SCORERS
from tgad.recipe import PRESETS

STAGE_LABELS = {
    "data": "data: index and shots",
    "prompt": "PromptSelector: P*",
    "generator": "VarianceVQGAN fit (iterations)",
    "integrator": "Integrator (rounds)",
    "final": "final images",
    "write": "write ExtraSet",
}


def add_generate_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "generate",
        help="generate N normal images of one class from k shots (PromptSelector -> VarianceVQGAN -> Integrator)",
        description="Writes an ExtraSet folder: train/good/*.png at the preset's resolution, manifest.json, "
        "grid.png and scores_per_round.png. Re-running with the same arguments reuses a complete folder. "
        "Threads: $TGAD_THREADS (torch.set_num_threads), recorded in the manifest.",
    )
    p.add_argument("--dataset", required=True, choices=["embedded", "mvtec", "btad", "loco"])
    p.add_argument(
        "--root", default=None, help="dataset root (default: $TGAD_<DATASET>_ROOT or the tgad cache)"
    )
    p.add_argument("--category", required=True, help="category folder name, e.g. hazelnut, brick")
    p.add_argument("--shots", type=int, default=1, metavar="K", help="real normal shots (default 1)")
    p.add_argument("--seed", type=int, default=0, metavar="S", help="shot choice and generation seed")
    p.add_argument("--n", type=int, default=64, metavar="N", help="images to write (default 64)")
    p.add_argument("--preset", choices=PRESETS, default="cpu")
    p.add_argument("--out", required=True, metavar="DIR", help="the ExtraSet folder to write")
    p.add_argument(
        "--clip-weights", default=None, metavar="FILE_OR_TAG", help="CLIP checkpoint file or open_clip tag"
    )
    p.add_argument(
        "--allow-random-clip",
        action="store_true",
        help="run with random CLIP weights when none are available (outputs are marked RANDOM)",
    )
    p.add_argument(
        "--scorer",
        default=None,
        choices=list(SCORERS),
        help="how samples are selected (default: the preset's; cpu: defect_safe with tau calibrated from "
        "the shots): auto (combined with real CLIP, shot_fidelity with random CLIP), "
        "clip_text (the paper), shot_fidelity, combined, defect_safe (variation that leaves synthetic "
        "defects of the shots visible), none (random selection)",
    )
    p.add_argument(
        "--keyword", default=None, help="object word or WordNet synset for a category the class table lacks"
    )
    p.add_argument(
        "--prior",
        default=None,
        metavar="none|other_categories|FILE",
        help="where the generator fit starts: none (default: pure k-shot), other_categories (a VarianceVQGAN "
        "fitted once on the train/good images of the dataset's OTHER categories, then fine-tuned on the "
        "shots: the auxiliary-normal-data protocol, not pure k-shot) or FILE (a tgad VarianceVQGAN weight file, or a taming-transformers VQGAN "
        "checkpoint such as vqgan_imagenet_f16_1024/last.ckpt, whose architecture the generator then takes)",
    )
    add_override_arguments(p)
    add_hardware_arguments(p)


class RichStages:
    """A ``tgad.generate.stages.StageReporter`` drawing one rich progress bar per stage."""

    def __init__(self, progress: Progress) -> None:
        self.progress, self.tasks = progress, {}

    def start(self, stage: str, total: int | None = None) -> None:
        self.tasks[stage] = self.progress.add_task(STAGE_LABELS.get(stage, stage), total=total or 1)

    def advance(self, stage: str, amount: int = 1) -> None:
        if stage in self.tasks:
            self.progress.advance(self.tasks[stage], amount)

    def finish(self, stage: str, seconds: float) -> None:
        task = self.tasks.get(stage)
        if task is not None:
            total = self.progress.tasks[task].total
            self.progress.update(
                task, completed=total, description=f"{STAGE_LABELS.get(stage, stage)} ({seconds:.1f} s)"
            )


def run_generate(args: argparse.Namespace, console: Console, err_console: Console) -> int:
    """Run the chain; errors reach ``tgad.cli.errors.report_errors`` (one red line, exit code 2)."""
    from tgad.generate.artifact import load_manifest
    from tgad.generate.chain import generate_extra_set, request_from_flags

    threads = int(os.environ["TGAD_THREADS"]) if os.environ.get("TGAD_THREADS") else None
    overrides = parse_overrides(args.overrides)  # checked by the preflight already
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=False) as progress:
        request = request_from_flags(
            args.dataset,
            args.root,
            args.category,
            args.shots,
            args.seed,
            args.n,
            args.preset,
            clip_weights=args.clip_weights,
            allow_random_clip=args.allow_random_clip,
            keyword=args.keyword,
            vqgan_iterations=args.vqgan_iterations,
            integrator_overrides={**overrides, "scorer": args.scorer},  # None: the preset's
            hardware=hardware_from_args(args),  # checked by the preflight already
            prior=args.prior,
        )
        out = generate_extra_set(request, args.out, reporter=RichStages(progress), threads=threads).path
    manifest = load_manifest(out)
    _summary(console, Path(out), manifest)
    return 0


def _summary(console: Console, out: Path, manifest: dict) -> None:
    table = Table(show_header=False, title=f"tgad generate: {manifest['dataset']} / {manifest['category']}")
    table.add_column("field", style="bold")
    table.add_column("value")
    random = manifest.get("random_clip", False)
    table.add_row("ExtraSet", str(out))
    table.add_row("images", f"{manifest['n']} x {manifest['image_size']} px in {out / 'train' / 'good'}")
    table.add_row("shots", ", ".join(manifest["shot_ids"]))
    if manifest.get("best_prompt") is None:
        table.add_row("P*", f"none: {manifest.get('prompt_skipped', 'not chosen')}")
    else:
        table.add_row("P*", f"{manifest['best_prompt']!r} ({manifest.get('best_prompt_score', 0):.4f})")
    clip = manifest.get("clip_weights", "?")
    table.add_row(
        "CLIP", f"[bold red]{clip} (random weights: no text guidance)[/bold red]" if random else clip
    )
    scorer = manifest.get("scorer") or {}
    if scorer:
        table.add_row("scorer", f"{scorer.get('resolved')} ({scorer.get('why')}): {scorer.get('formula')}")
    summary = manifest.get("score_summary", {})
    if summary:
        table.add_row(
            "scores", f"mean {summary['mean']:.4f}  min {summary['min']:.4f}  max {summary['max']:.4f}"
        )
    collapse = manifest.get("collapse", {})
    if manifest.get("collapsed"):
        table.add_row("generator", f"[bold red]COLLAPSED: {collapse.get('reason')}[/bold red]")
    elif collapse.get("near_copies"):
        table.add_row(
            "generator",
            f"[bold yellow]near-copies of the shot: mean |difference| {collapse['mean_abs_diff_to_shot']:.4f} "
            "(< 2/255)[/bold yellow]",
        )
    else:
        table.add_row(
            "generator", f"ok (mean |difference| to the shot {collapse.get('mean_abs_diff_to_shot', 0):.4f})"
        )
    figures = manifest.get("figures", {})
    table.add_row("grid", str(out / figures.get("grid", "grid.png")))
    timings = manifest.get("timings", {})
    table.add_row("timings", ", ".join(f"{k.removesuffix('_seconds')} {v:.1f}s" for k, v in timings.items()))
    console.print(table)
