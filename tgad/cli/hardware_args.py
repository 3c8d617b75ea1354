"""``--accelerator`` / ``--devices`` / ``--precision``, shared by ``tgad generate`` and ``tgad benchmark``."""

from __future__ import annotations

import argparse

from tgad.hardware import ACCELERATORS, PRECISIONS, Hardware


def add_hardware_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("hardware")
    group.add_argument(
        "--accelerator",
        default="auto",
        choices=ACCELERATORS,
        help="where the generator, the Integrator and the detectors run (default auto: a GPU when present)",
    )
    group.add_argument(
        "--devices",
        type=int,
        default=1,
        metavar="N",
        help="devices for the VarianceVQGAN fit (N > 1: Lightning DDP); the rest uses one (default 1)",
    )
    group.add_argument(
        "--precision",
        default="auto",
        choices=PRECISIONS,
        help="Lightning precision (default auto: bf16-mixed on a GPU that supports it, else 32-true)",
    )


def hardware_from_args(args: argparse.Namespace) -> Hardware:
    """The resolved request (raises ``HardwareError`` with the flag and the fix when it cannot be served)."""
    return Hardware(args.accelerator, args.devices, args.precision).resolved()
