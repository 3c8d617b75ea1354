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
    from jsonargparse import ArgumentError

    with warnings.catch_warnings():
        # The console script passes sys.argv[1:] as ``args``; Lightning warns about "both" being given.
        warnings.filterwarnings("ignore", message=".*args parameter is intended to run from within Python.*")
        try:
            cli = _cli(args)
        except (ArgumentError, ValueError) as err:  # jsonargparse's usage (~60 lines) as one line
            from tgad.cli.errors import UsageError
            from tgad.models.presets import SettingError

            if isinstance(err, SettingError):
                raise
            if isinstance(err, ArgumentError) or "Does not validate against" in str(err):
                raise UsageError(config_error(args[0], err)) from err  # a class's refusal is in the text
            raise
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


# jsonargparse's lines that repeat what every Union error says; the rest names the key and the problem
_NOISE = (
    "Does not validate against any",
    "Subtypes:",
    "Errors:",
    "Expected a <class 'NoneType'>",
    "Given value",
)


def config_error(subcommand: str, err: Exception) -> str:
    """A LightningCLI parse error as one line: the key, the problem, where to see the options."""
    lines = [line.strip() for line in str(err).splitlines()]
    kept = [line.lstrip("- ") for line in lines if line and not line.lstrip("- ").startswith(_NOISE)]
    text = " ".join(kept)
    text = text if len(text) <= 400 else text[:397] + "..."
    return f"tgad {subcommand}: {text} (`tgad {subcommand} --help` lists the options)"


def _cli(args: list[str]) -> LightningCLI:
    # exit_on_error=False on the main and every subcommand parser: a bad key or value raises, not exit(2)
    parser_kwargs = {"parser_mode": "omegaconf", "exit_on_error": False}
    return LightningCLI(
        LightningModule,
        LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        args=args,
        parser_kwargs=parser_kwargs | {name: {"exit_on_error": False} for name in SUBCOMMANDS},
        save_config_kwargs={"overwrite": True},
        auto_configure_optimizers=False,
    )
