"""Stop a VarianceVQGAN fit when its reconstruction stops improving.

The fit is the costly part of a generated set (minutes on a CPU), and on a few shots its reconstruction loss
flattens well before a fixed iteration budget: the last iterations polish what the residual decoding throws
away anyway (x' = x + D(q(z')) - D(q(z)) keeps the shot's own detail). The per-step loss is noisy (random
crops, jittered views), so the rule reads an exponential moving average of it.
"""

from __future__ import annotations

import logging
import math

from lightning.pytorch import Callback, LightningModule, Trainer

from .config import VQGANConfig

logger = logging.getLogger(__name__)


class ReconstructionPlateau(Callback):
    """Stops training once the smoothed reconstruction loss improved by less than ``min_improvement``
    (relative) over each of the last ``patience`` windows of ``window`` iterations, never before
    ``min_iterations``.

    Reads ``train/l1`` and ``train/perceptual`` (weighted as in the loss) from the module's logged metrics,
    once per iteration (one batch = the shots = one iteration). ``stopped_at`` records where it stopped.
    """

    def __init__(
        self,
        min_improvement: float,
        window: int = 25,
        patience: int = 2,
        min_iterations: int = 100,
        smoothing: float = 0.1,
    ) -> None:
        if not (min_improvement > 0 and math.isfinite(min_improvement)):
            raise ValueError(f"vqgan_plateau must be a finite number > 0, got {min_improvement}")
        self.min_improvement, self.window, self.patience = min_improvement, window, patience
        self.min_iterations, self.smoothing = min_iterations, smoothing
        self.ema: float | None = None
        self.checkpoints: list[float] = []  # the EMA at the end of each window
        self.stopped_at: int | None = None

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, *args) -> None:
        metrics = trainer.callback_metrics
        if "train/l1" not in metrics:
            return
        config = getattr(pl_module, "config", None)
        weight = config.loss.perceptual_weight if isinstance(config, VQGANConfig) else 0.0
        loss = float(metrics["train/l1"]) + weight * float(metrics.get("train/perceptual", 0.0))
        self.ema = loss if self.ema is None else (1 - self.smoothing) * self.ema + self.smoothing * loss
        iteration = trainer.global_step // 2  # two optimiser steps per iteration
        if iteration % self.window:
            return
        self.checkpoints.append(self.ema)
        if iteration < self.min_iterations or len(self.checkpoints) <= self.patience:
            return
        recent = self.checkpoints[-self.patience - 1 :]
        gains = [(a - b) / max(abs(a), 1e-12) for a, b in zip(recent[:-1], recent[1:], strict=True)]
        if all(g < self.min_improvement for g in gains):
            self.stopped_at = iteration
            trainer.should_stop = True
            logger.info(
                "VarianceVQGAN fit: reconstruction plateau at iteration %d (gains %s < %g per %d iterations)",
                iteration,
                [round(g, 4) for g in gains],
                self.min_improvement,
                self.window,
            )
