"""The ``tgad`` console script."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table
from rich.text import Text

import tgad
from tgad.cli.errors import report_errors
from tgad.cli.lightning import SUBCOMMANDS
from tgad.cli.preflight import threads_from_env

console = Console()
err_console = Console(stderr=True)


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (exit code 2) like every other tgad error; ``--help`` is unchanged.
    Sub-command parsers inherit the class."""

    def error(self, message: str):
        self.exit(2, f"error: {self.prog}: {message} (`{self.prog} --help` lists the options)\n")


def _parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="tgad",
        description="Few-shot industrial anomaly detection with text-guided generated normal images.",
        epilog="fit/validate/test/predict take Lightning CLI arguments, e.g. `tgad fit --config conf/<x>.yaml`; "
        "`tgad fit --help` lists them.",
    )
    parser.add_argument("--version", action="version", version=f"tgad {tgad.__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMANDS:
        sub.add_parser(
            name,
            help=f"Lightning CLI `{name}` for any tgad model and datamodule (--config conf/...)",
            add_help=False,
        )
    data = sub.add_parser(
        "data", help="dataset tools: validate a category folder (the embedded dataset is built on demand)"
    )
    data_sub = data.add_subparsers(dest="data_command", metavar="DATA_COMMAND", required=True)
    check = data_sub.add_parser("check", help="validate a dataset category folder and print its inventory")
    check.add_argument("--dataset", required=True, choices=["embedded", "mvtec", "btad", "loco"])
    check.add_argument(
        "--root",
        default=None,
        help="dataset root holding the category folders "
        "(default: $TGAD_<DATASET>_ROOT, or the tgad cache for embedded)",
    )
    check.add_argument(
        "--category", required=True, help="category folder name, e.g. bottle, 01, hazelnut_256"
    )
    check.add_argument("--shots", type=int, default=None, help="also show the shots this k would draw")
    check.add_argument("--seed", type=int, default=0, help="shot seed for --shots")
    from tgad.cli.generate import add_generate_parser

    add_generate_parser(sub)
    from tgad.cli.benchmark import add_benchmark_parser

    add_benchmark_parser(sub)
    from tgad.cli.vqgan import add_vqgan_parser

    add_vqgan_parser(sub)
    return parser


def _data_check(args: argparse.Namespace) -> int:
    from tgad.data import DATAMODULES
    from tgad.data.deep_check import decode_all
    from tgad.data.inventory import inventory

    dm = DATAMODULES[args.dataset](
        root=args.root, category=args.category, shots=args.shots, shot_seed=args.seed, download=False
    )
    if args.dataset == "embedded":
        dm.prepare_data()
    samples = dm.index()
    decode_all(samples)  # every image and mask decoded in full; an empty mask of a defect is an error
    inv = inventory(samples, args.dataset, args.category)
    console.print(f"[bold]{args.dataset} / {args.category}[/bold]: {inv.path}", highlight=False)
    table = Table()
    table.add_column("split")
    table.add_column("type")
    table.add_column("images", justify="right")
    for (split, defect), n in inv.counts.items():
        table.add_row(split, defect, str(n))
    console.print(table)
    console.print(f"images: {inv.total}   sizes: " + ", ".join(f"{s} ({n})" for s, n in inv.sizes.items()))
    console.print(
        f"defective test images with masks: {inv.masks_matched}/{inv.defective} ({inv.mask_files} mask files)"
    )
    if args.shots is not None:
        dm.setup()
        console.print(f"shots (k={args.shots}, seed={args.seed}): {dm.shot_ids}")
    for warning in inv.warnings:
        console.print(f"[yellow]warning:[/yellow] {warning}")
    console.print("[green]OK[/green]")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in SUBCOMMANDS:

        def lightning() -> int:
            from tgad.cli.lightning import run_lightning_cli
            from tgad.cli.preflight import preflight_lightning

            preflight_lightning(argv[1:])
            run_lightning_cli(argv)
            return 0

        return report_errors(lightning, err_console)
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    if not args.verbose and args.command in ("generate", "benchmark"):
        _quiet_libraries()
    if args.command is None:
        _parser().print_help()
        return 0
    if args.command == "data" and args.data_command == "check":
        return report_errors(lambda: _data_check(args), err_console)
    if args.command == "generate":
        return report_errors(lambda: _in_own_tempdir("generate", lambda: _generate(args)), err_console)
    if args.command == "vqgan":
        from tgad.cli.vqgan import run_import_check

        return report_errors(lambda: run_import_check(args, console), err_console)
    if args.command == "benchmark":
        from tgad.cli.benchmark import run_benchmark_cli

        def benchmark() -> int:
            return run_benchmark_cli(args, console, err_console)

        return report_errors(lambda: _in_own_tempdir("benchmark", benchmark), err_console)
    return 1


def _in_own_tempdir(command: str, run) -> int:
    """``run()`` with its temporaries in the tgad cache, removed even after a kill (``tgad.cli.scratch``)."""
    from tgad.cli.scratch import command_tempdir

    with command_tempdir(command):
        return run()


def _generate(args: argparse.Namespace) -> int:
    from tgad.benchmark.results_repair import is_environment_error, located
    from tgad.cli.errors import Stopped, stop_on_signals
    from tgad.cli.generate import run_generate
    from tgad.cli.preflight import preflight_generate

    threads_from_env()
    preflight_generate(args)
    try:
        with stop_on_signals():
            return run_generate(args, console, err_console)
    except OSError as err:  # a full disk: name the folder being written (write() names no file)
        if is_environment_error(err):
            raise located(err, Path(args.out)) from err
        raise
    except Stopped as stop:  # the ExtraSet folder appears only when complete: nothing half-written stays
        line = f"stopped by {stop}; --out {args.out} holds no partial ExtraSet; run the same command again"
        err_console.print(Text.assemble(("stopped:", "red"), " ", line), highlight=False, soft_wrap=True)
        return stop.exit_code


def _quiet_libraries() -> None:
    """Keep the console to tgad's own progress: Lightning's per-fit banners, timm's expected "unexpected keys"
    of a features-only backbone and known deprecation chatter are hidden unless ``-v`` is given."""
    import warnings

    quiet = ("lightning", "lightning_fabric", "anomalib.engine", "timm.models._builder")

    def keep(record: logging.LogRecord) -> bool:
        return record.levelno >= logging.ERROR or not record.name.startswith(quiet)

    # A filter on the console handlers, not logger levels: Lightning sets its loggers' levels as it runs.
    for handler in logging.getLogger().handlers:
        handler.addFilter(keep)
    for pattern in (
        ".*configure_optimizers.*returned `None`.*",
        ".*module\\(s\\) in eval mode.*",
        ".*isinstance\\(treespec, LeafSpec\\).*",
        ".*does not have many workers.*",
        ".*validation_step.*val_dataloader.*",
    ):
        warnings.filterwarnings("ignore", message=pattern)
    warnings.filterwarnings("ignore", category=FutureWarning)


if __name__ == "__main__":
    sys.exit(main())
