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
        cli = _cli(args)
    if getattr(cli.model, "selection", None) is not None:  # P* was chosen in this run: its top prompts
        from rich.console import Console

        Console().print(prompt_table(cli.model.selection))
    return cli


def prompt_table(selection, k: int = 10):
    """The PromptSelector's top-k prompts as a rich table; the title turns red when CLIP is random."""
    from rich.table import Table

    style = "bold red" if selection.random_clip else None
    table = Table(
        title=f"P* for {selection.object_name} — clip_weights={selection.clip_weights}", title_style=style
    )
    for column, justify in (("rank", "right"), ("score", "right"), ("prompt", "left"), ("word", "left")):
        table.add_column(column, justify=justify)
    for i, r in enumerate(selection.table[:k], 1):
        table.add_row(str(i), f"{r.score:.4f}", r.prompt, r.word)
    return table


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
