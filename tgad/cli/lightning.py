"""``tgad fit|validate|test|predict``: Lightning's CLI over every tgad LightningModule and datamodule.

Subclass mode lets one YAML name any model (``tgad.models.*``) and any datamodule (``tgad.data.*``) by
``class_path``; the omegaconf parser allows ``${...}`` interpolation in ``conf/*.yaml``.
"""

from __future__ import annotations

import warnings

from lightning.pytorch import LightningDataModule, LightningModule
from lightning.pytorch.cli import LightningCLI

SUBCOMMANDS = ("fit", "validate", "test", "predict")


def run_lightning_cli(args: list[str]) -> LightningCLI:
    """Run one Lightning subcommand; ``args`` starts with the subcommand, e.g. ``["fit", "--config", "x.yaml"]``."""
    with warnings.catch_warnings():
        # The console script passes sys.argv[1:] as ``args``; Lightning warns about "both" being given.
        warnings.filterwarnings("ignore", message=".*args parameter is intended to run from within Python.*")
        return _cli(args)


def _cli(args: list[str]) -> LightningCLI:
    return LightningCLI(
        LightningModule,
        LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        args=args,
        parser_kwargs={"parser_mode": "omegaconf"},
        save_config_kwargs={"overwrite": True},
        auto_configure_optimizers=False,
    )
