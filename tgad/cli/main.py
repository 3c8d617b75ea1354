"""The ``tgad`` console script."""

from __future__ import annotations

import argparse
import logging
import sys

from rich.console import Console
from rich.table import Table

import tgad
from tgad.cli.lightning import SUBCOMMANDS

console = Console()
err_console = Console(stderr=True)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
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
    return parser


def _data_check(args: argparse.Namespace) -> int:
    from tgad.data import DATAMODULES
    from tgad.data.inventory import inventory

    dm = DATAMODULES[args.dataset](
        root=args.root, category=args.category, shots=args.shots, shot_seed=args.seed, download=False
    )
    if args.dataset == "embedded":
        dm.prepare_data()
    samples = dm.index()
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
        from tgad.cli.lightning import run_lightning_cli

        run_lightning_cli(argv)
        return 0
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    if args.command is None:
        _parser().print_help()
        return 0
    from tgad.assets.weights import AssetError
    from tgad.data.errors import DataError

    try:
        if args.command == "data" and args.data_command == "check":
            return _data_check(args)
    except (DataError, AssetError) as err:
        err_console.print(f"[red]error:[/red] {err}", highlight=False, soft_wrap=True)
        return 2
    return 1


if __name__ == "__main__":
    sys.exit(main())
