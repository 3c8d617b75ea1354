"""PromptSelector: picks the class prompt P* from the k shots of a datamodule (``tgad test --config ...``).

Design: the selection depends only on the shots, not on any loader batch, so it runs once in ``setup`` for
the ``test`` / ``predict`` stages, after the datamodule's own ``setup`` has chosen ``shot_paths``. The configs
set ``limit_test_batches: 0`` so that no test image (defects included) is even loaded; with 0 batches
Lightning skips ``on_test_start`` and ``test_step`` (checked), but ``setup`` still runs. Shots are read at
full resolution from ``datamodule.shot_paths`` (not through the train loader, which would also hold any
extra normal images); a datamodule without ``shot_paths`` falls back to its train loader.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from pathlib import Path

import torch
from lightning.pytorch import LightningModule
from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.utilities import rank_zero_info, rank_zero_only

import tgad
from tgad.assets.clip import resolve_clip
from tgad.assets.weights import ResolvedWeights
from tgad.data.images import read_rgb
from tgad.models.presets import from_plain
from tgad.models.prompt_selector.config import PRESETS, PromptSelectorConfig
from tgad.models.prompt_selector.selector import (
    TABLE_COLUMNS,
    PromptSelection,
    format_top,
    save_selection,
    select_prompt,
)
from tgad.text.keywords import resolve_keyword

log = logging.getLogger(__name__)


class PromptSelector(LightningModule):
    """Keyword -> WordNet words -> candidate prompts -> P* by CLIP similarity to the shots.

    Args:
        config: the words, templates and CLIP, whole (``config.py``; ``PRESETS["tiny" | "cpu" | "paper"]``, the
            recipe's prompt stage). A LightningCLI YAML spells it as ``init_args: {config: {...}}``; a checkpoint
            keeps it as plain data (the form it also accepts).
        category: dataset category (``hazelnut``, ``hazelnut_256``, ``01``); default: the datamodule's.
        keyword: object word or WordNet synset name (``metal nut``, ``nut.n.03``); overrides the class table.
        output_dir: where ``prompt_selection.json`` and ``prompt_table.csv`` go; default: the run's log dir
            (the W&B run's files folder with a WandbLogger, so they sync with the run).
    """

    def __init__(
        self,
        config: PromptSelectorConfig = PRESETS["cpu"],
        category: str | None = None,
        keyword: str | None = None,
        output_dir: str | None = None,
    ) -> None:
        super().__init__()
        self.config = from_plain(PromptSelectorConfig, config)
        self.save_hyperparameters(ignore="config")
        # the config as plain data: a checkpoint loads with weights_only=True and rebuilds this module
        self.save_hyperparameters({"config": dataclasses.asdict(self.config)})
        self.category, self.keyword, self.output_dir = category, keyword, output_dir
        self.clip: torch.nn.Module | None = None
        self.tokenizer = None
        self.clip_resolved: ResolvedWeights | None = None
        self.selection: PromptSelection | None = None
        self.output_files: tuple[Path, Path] | None = None

    def configure_clip(self) -> None:
        """Resolve CLIP once (local file > cache > download > random if allowed); raises AssetError otherwise."""
        if self.clip is None:
            cfg = self.config
            self.clip, self.tokenizer, self.clip_resolved = resolve_clip(
                cfg.clip_model, cfg.clip_weights, allow_random=cfg.allow_random_clip
            )

    def select(
        self, images: torch.Tensor | Sequence[torch.Tensor], category: str | None = None
    ) -> PromptSelection:
        """P* for [0, 1] RGB shots, without a Trainer."""
        self.configure_clip()
        sense = resolve_keyword(category or self.category, self.keyword)
        self.clip.to(self._trainer.strategy.root_device if self._trainer is not None else self.device)
        cfg = self.config
        return select_prompt(
            self.clip,
            self.tokenizer,
            images,
            sense,
            self.clip_resolved,
            cfg.num_words,
            cfg.templates,
            cfg.text_batch_size,
        )

    # Lightning hooks ------------------------------------------------------------------------------------
    def setup(self, stage: str) -> None:
        if stage in ("fit", "validate"):
            raise ValueError(
                "PromptSelector has nothing to fit or validate; run `tgad test --config conf/prompt_selector/...`"
            )
        datamodule = self.trainer.datamodule
        if datamodule is None:
            raise ValueError("PromptSelector needs a datamodule with the shots (`data:` in the config)")
        category = self.category or getattr(datamodule, "category", None)
        images, paths = _shot_images(datamodule)
        self.selection = self.select(images, category)
        self._record(category, paths, datamodule)

    def test_step(self, batch, batch_idx):  # the work is done in setup (see the module docstring)
        return None

    def predict_step(self, batch, batch_idx):
        return None

    def configure_optimizers(self):
        return None

    # outputs -----------------------------------------------------------------------------------------------
    @rank_zero_only
    def _record(self, category: str | None, shot_paths: list[str], datamodule) -> None:
        sel, trainer = self.selection, self.trainer
        wandb = next((lg for lg in trainer.loggers if isinstance(lg, WandbLogger)), None)
        # a W&B run's files folder is uploaded with the run; other loggers have a per-version log_dir
        run_dir = wandb.experiment.dir if wandb is not None else trainer.log_dir
        out_dir = Path(self.output_dir or run_dir or trainer.default_root_dir)
        meta = {
            "category": category,
            "keyword": self.keyword,
            "datamodule": type(datamodule).__name__,
            "shots": shot_paths,
            "num_words": self.config.num_words,
            "templates": list(self.config.templates),
            "clip_model": self.config.clip_model,
            "clip_weights_detail": self.clip_resolved.to_dict(),
            "tgad_version": tgad.__version__,
        }
        self.output_files = save_selection(sel, out_dir, **meta)
        rank_zero_info(format_top(sel) + f"\nsaved: {self.output_files[0]}, {self.output_files[1]}")
        if sel.random_clip:
            log.warning(
                "P* was chosen with RANDOM CLIP weights (%s); it is not text guidance", sel.clip_weights
            )
        for logger in trainer.loggers:
            logger.log_metrics({"prompt_selector/best_score": sel.best_score})
            if isinstance(logger, WandbLogger):
                rows = [
                    [i, r.prompt, r.word, r.template, r.score, sel.clip_weights]
                    for i, r in enumerate(sel.table, 1)
                ]
                logger.log_table(key="prompt_selector/table", columns=list(TABLE_COLUMNS), data=rows)
                logger.experiment.summary.update(
                    {"best_prompt": sel.best_prompt, "clip_weights": sel.clip_weights}
                )


def _shot_images(datamodule) -> tuple[list[torch.Tensor], list[str]]:
    """The shots as [0, 1] RGB tensors (3, H, W), and where they came from."""
    paths = list(getattr(datamodule, "shot_paths", None) or [])
    if paths:
        return [read_rgb(p) for p in paths], [str(p) for p in paths]
    images, names = [], []
    for batch in datamodule.train_dataloader():
        image = (
            batch.image if hasattr(batch, "image") else batch["image"] if isinstance(batch, dict) else batch
        )
        images += list(image)
        names += [
            str(p)
            for p in (
                getattr(batch, "image_path", None) or [f"train[{len(names) + i}]" for i in range(len(image))]
            )
        ]
    if not images:
        raise ValueError(
            f"{type(datamodule).__name__} has no shots: shot_paths is empty and its train loader yields nothing"
        )
    return images, names
