"""Integrator as a LightningModule: R rounds of {sample M, score, keep, update}, then the final N images
(METHOD.md section 3); the score is chosen by ``scorer`` (``scorers.py``).

One training step is one round: the batch's images are the shots (set ``train_batch_size >= shots``); after
``rounds`` rounds the module stops the trainer (configs set ``trainer.max_epochs: -1``). The generator is a
fitted VarianceVQGAN from ``generator_checkpoint`` or :meth:`attach_generator`. CLIP and the feature network
are the frozen :class:`~tgad.models.integrator.judges.Judges`, passed in (``judges=``) or resolved from
``tgad.assets`` by name in ``setup``; they never enter a checkpoint.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from typing import Any, Literal

import torch
from lightning.pytorch import LightningModule

from tgad.assets.clip import clip_weights_available
from tgad.models.batches import batch_images
from tgad.models.prompt_selector.config import PromptSelectorConfig
from tgad.models.variance_vqgan.config import VQGANConfig
from tgad.models.variance_vqgan.torch_model import VarianceVQGANModel
from tgad.seeds import KEEP_OFFSET, seed_for

from . import records
from .calibration import calibrate_tau
from .config import IntegratorConfig
from .judges import PERCEPTUAL_OUT_INDICES, Judges, needs_clip, needs_features
from .loss import update_generator
from .records import (
    FinalSet,
    KeptBank,
    RoundRecord,
    choose,
    choose_final,
    pool_statistics,
    round_logs,
    round_record,
    usable,
)
from .scorers import Parts, Scorer, fidelity_gate, resolve_scorer
from .selection import PoolCheck, check_pool
from .torch_model import Pool, draw_pool, load_generator_state

logger = logging.getLogger(__name__)

__all__ = ["PERCEPTUAL_OUT_INDICES", "Integrator", "Judges"]

# What a checkpoint restores besides the round history and the kept bank (a fresh module's values otherwise).
_ROUND_STATE = ("prompt", "round_index", "tau", "tau_calibration")


class Integrator(LightningModule):
    """Text-guided knowledge integration over a fitted VarianceVQGAN.

    Args:
        config: every Integrator setting (``config.py``; a recipe's ``integrator``).
        generator: the generator's architecture (a recipe's ``vqgan``; must match the checkpoint).
        prompt_selector: the CLIP judge and how P* is chosen (a recipe's ``prompt``; the CLIP that chose P* is
            the one that scores it). None: ``PromptSelectorConfig()``.
        generator_checkpoint: a VarianceVQGAN Lightning checkpoint, loaded in ``setup`` (weights_only).
        prompt: P*; None = chosen from the shots with the PromptSelector (``category``/``keyword``).
        sample_mode: ``residual`` (default) or ``direct`` decoding of the samples.
        diversity_space: ``perceptual`` (ImageNet features of ``perceptual_backbone``) or ``clip`` embeddings.
        seed: seeds every draw through its named stream (``tgad/seeds.py``).
        test_samples: images of the fresh batch ``test`` scores (default: samples_per_round).
        judges: CLIP and the feature network already built (the chain's); None = resolved in ``setup`` from
            ``prompt_selector`` and ``perceptual_backbone``/``perceptual_weights``.
    """

    def __init__(
        self,
        config: IntegratorConfig,
        generator: VQGANConfig,
        prompt_selector: PromptSelectorConfig | None = None,
        generator_checkpoint: str | None = None,
        prompt: str | None = None,
        category: str | None = None,
        keyword: str | None = None,
        sample_mode: Literal["residual", "direct"] = "residual",
        diversity_space: Literal["perceptual", "clip"] = "perceptual",
        perceptual_backbone: str = "tf_efficientnet_lite0",
        perceptual_weights: str | None = None,
        seed: int = 0,
        test_samples: int | None = None,
        judges: Judges | None = None,
    ) -> None:
        super().__init__()
        self.config, self.prompt_selector = config, prompt_selector or PromptSelectorConfig()
        # plain values only, so a checkpoint loads with weights_only=True
        self.save_hyperparameters(ignore=["config", "generator", "prompt_selector", "judges"])
        given = {"config": config, "generator": generator, "prompt_selector": self.prompt_selector}
        self.hparams.update({name: dataclasses.asdict(value) for name, value in given.items()})
        self.generator = VarianceVQGANModel(generator)
        self.generator.quantizer.train(False)
        self.automatic_optimization = False
        self.prompt = prompt
        self.tau = config.tau  # calibrate_tau replaces it from the shots before the first round
        self.tau_calibration: list[dict[str, float]] = []
        self.round_index = 0
        self.history: list[RoundRecord] = []
        self.test_stats: dict[str, float] = {}
        self._judges = judges  # a plain object: outside the module tree, never in a checkpoint
        self._generator_note: str | None = None  # where the generator came from (None: no generator yet)
        self._optimizer: torch.optim.Optimizer | None = None  # rounds run without a Trainer
        self.selection = None  # PromptSelection when P* was chosen here
        self._bank = KeptBank()  # kept images of every round, with their raw scorer parts
        self._shots: torch.Tensor | None = None

    def train(self, mode: bool = True) -> Integrator:
        super().train(mode)
        self.generator.quantizer.train(False)  # the codebook stays as fitted: no EMA updates, no restarts
        return self

    # ----- setup: weights are resolved here, never in __init__ -----
    def setup(self, stage: str) -> None:
        hp, clip = self.hparams, self.prompt_selector
        if hp.generator_checkpoint and self._generator_note is None:
            self._generator_note = load_generator_state(self.generator, hp.generator_checkpoint)
        if self._generator_note is None:
            raise ValueError(
                "Integrator has no generator: set generator_checkpoint (fit one with "
                "`tgad fit --config conf/variance_vqgan/tiny.yaml`) or call attach_generator()"
            )
        if self._judges is None:
            features_for = (self.config, self.generator.config.loss.perceptual_weight, hp.diversity_space)
            real_clip = clip_weights_available(clip.clip_model, clip.clip_weights)
            self._judges = Judges.resolve(
                clip.clip_model,
                clip.clip_weights,
                allow_random_clip=clip.allow_random_clip,
                seed=hp.seed,
                backbone=hp.perceptual_backbone if needs_features(*features_for) else None,
                backbone_weights=hp.perceptual_weights,
                clip=needs_clip(self.config, hp.diversity_space, not real_clip),
            )
        self._judges.to(self.device)

    def on_fit_start(self) -> None:
        self.judges.to(self.device)  # ``setup`` runs before the strategy moves the module to its device

    def attach_generator(self, generator: torch.nn.Module, provenance: str = "in memory") -> None:
        """Use a fitted ``VarianceVQGANModel`` (or a ``VarianceVQGAN`` module: its ``.model``)."""
        model = getattr(generator, "model", generator)
        if not isinstance(model, VarianceVQGANModel):
            raise TypeError(
                f"attach_generator: expected a VarianceVQGAN(Model), got {type(generator).__name__}"
            )
        self.generator = model
        self.generator.quantizer.train(False)
        self._generator_note = provenance

    @property
    def judges(self) -> Judges:
        if self._judges is None:
            raise ValueError("Integrator has no judges yet: pass judges= or let `setup` resolve them")
        return self._judges

    @property
    def provenance(self) -> dict[str, Any]:
        """Where everything used came from: CLIP, the feature network, the generator, the resolved scorer."""
        judges = self._judges.provenance if self._judges is not None else {"clip": None, "perceptual": None}
        scorer = self._judges.scorer_provenance if self._judges is not None else None
        return judges | {"generator": self._generator_note, "scorer": scorer}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["integrator"] = {
            **{name: getattr(self, name) for name in _ROUND_STATE},
            "provenance": {k: str(v) for k, v in self.provenance.items()},
            # the final draw chooses among every round's kept images too
            **records.rounds_to_checkpoint(self.history, self._bank),
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Everything a round leaves behind, so a fit resumed after round r ends as an uninterrupted one."""
        saved = checkpoint.get("integrator", {})
        for name in _ROUND_STATE:
            setattr(self, name, saved.get(name, getattr(self, name)))
        self.history, self._bank = records.rounds_from_checkpoint(saved)
        # the checkpoint's state dict holds the integrated generator
        self._generator_note = self._generator_note or "restored from an Integrator checkpoint"

    def _draw(self, shots: torch.Tensor, n: int, seed: int, tau: float | None = None) -> Pool:
        g, cfg, levers = torch.Generator().manual_seed(seed), self.config, self.config.levers.sample_keywords
        tau = self.tau if tau is None else tau
        return draw_pool(
            self.generator, shots, n, tau, cfg.patch_fraction, g, self.hparams.sample_mode, **levers
        )

    def _draw_checked(self, shots: torch.Tensor, n: int, seed: int, what: str) -> tuple[Pool, PoolCheck]:
        """A draw and its guards (NaN raises; a collapse is logged, named by ``what``)."""
        pool = self._draw(shots, n, seed)
        check = check_pool(pool.images, shots, pool.shot_index)
        if check.collapsed:
            logger.warning("Integrator %s: generator collapsed: %s", what, check.reason)
        return pool, check

    # ----- one round -----
    def training_step(self, batch: Any, batch_idx: int) -> None:
        del batch_idx
        if self.round_index >= self.config.rounds:
            self.trainer.should_stop = True
            return
        self.run_round(batch_images(batch))
        if self.round_index >= self.config.rounds:
            self.trainer.should_stop = True

    def run_round(self, shots: torch.Tensor) -> RoundRecord:
        """Sample M, score, keep (gate + diversity; random with ``none``), update; appended to ``history``."""
        start, cfg, r = time.perf_counter(), self.config, self.round_index
        self.generator.quantizer.train(False)  # whoever switched modes: the codebook must not move
        shots = shots.detach().float().to(self.device)
        self._shots = shots
        self._ensure_prompt(shots)
        scorer = self.scorer(shots)
        if r == 0 and cfg.calibration.calibrate_tau and not self.tau_calibration:
            self._calibrate_tau(shots)
        seed = self.hparams.seed
        draw_seed = seed_for(seed, "draw", r)
        pool, check = self._draw_checked(shots, cfg.samples_per_round, draw_seed, f"round {r}")
        parts, features = self._parts_and_features(scorer, pool.images)
        scores = scorer.combine(parts)
        eligible = usable(check)
        anchors = self.features(shots)
        random_g = torch.Generator().manual_seed(seed_for(seed, "keep", r)) if scorer.random else None
        chosen = choose(scores, features, anchors, eligible, cfg.keep, cfg.pass_fraction, random_g)
        self._bank.add(pool, chosen[0], parts)
        kept = pool.images[chosen[0]].to(self.device)
        losses = self._update(kept, shots, parts, self._gate(parts), r)
        novelty = torch.cdist(features, anchors).min(dim=1).values
        seconds = time.perf_counter() - start
        record = round_record(
            r, pool, check, scores, parts, chosen, eligible, novelty, losses, seconds, scorer.name
        )
        self.history.append(record)
        self.round_index += 1
        if self._trainer is not None:
            logs = round_logs(record, float(scores.mean()), parts)
            self.log_dict(logs, on_step=True, on_epoch=False, batch_size=len(shots))
        pool_mean = float(scores.mean())
        logger.info(
            "Integrator round %d (%s): kept %.4f, pool %.4f", r, scorer.name, record.kept_mean, pool_mean
        )
        return record

    def _calibrate_tau(self, shots: torch.Tensor) -> None:
        """tau from the shots alone: the largest on the ladder within the limits (``calibration.py``)."""
        safe = self.scorer(shots).safe or self.judges.defect_safe(shots, self.config, self.hparams.seed)
        seed, limits = seed_for(self.hparams.seed, "calibrate"), self.config.calibration
        self.tau, self.tau_calibration = calibrate_tau(
            lambda tau, n: self._draw(shots, n, seed, tau).images,
            safe,
            limits.max_defect_cover,
            limits.max_implausible,
        )
        logger.info("Integrator: calibrated tau = %g (%s)", self.tau, self.tau_calibration)

    def _update(
        self, kept: torch.Tensor, shots: torch.Tensor, pool_parts: Parts, gate: float | None, r: int
    ) -> dict[str, float]:
        if self.config.update.update_steps == 0:
            return {}
        scorer = self.scorer(shots)
        guidance = None if scorer.random else (lambda samples: scorer.guidance(samples, pool_parts, gate))
        if self._trainer is None and self._optimizer is None:  # rounds run without a Trainer
            self._optimizer = self.configure_optimizers()
        opt = self.optimizers() if self._trainer is not None else self._optimizer

        def step(loss: torch.Tensor) -> None:
            opt.zero_grad()
            self.manual_backward(loss) if self._trainer is not None else loss.backward()
            opt.step()

        return update_generator(
            self.generator,
            kept,
            shots,
            guidance,
            self.config,
            self.tau,
            step,
            perceptual=self.judges.perceptual,
            mode=self.hparams.sample_mode,
            # shot fidelity rewards closeness to the shots: it must not shrink the learned spread
            # defect_safe rewards added variation: its gradient may widen the learned spread
            variance_grad=scorer.name in ("clip_text", "defect_safe"),
            generator=torch.Generator().manual_seed(seed_for(self.hparams.seed, "update", r)),
        )

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(
            self.generator.parameters(), lr=self.config.update.learning_rate, betas=(0.5, 0.9)
        )

    # ----- scoring: the judges, for this module's shots, P* and settings -----
    def _ensure_prompt(self, shots: torch.Tensor) -> None:
        """P* is chosen from ``shots`` with the PromptSelector when none was given and the judges have CLIP
        (without it the scorer reads no text, so P* would guide nothing)."""
        if self.prompt is None and self.judges.clip is not None:
            datamodule = getattr(self._trainer, "datamodule", None) if self._trainer is not None else None
            category = self.hparams.category or getattr(datamodule, "category", None)
            self.selection = self.judges.choose_prompt(
                shots, category, self.hparams.keyword, self.prompt_selector
            )
            self.prompt = self.selection.best_prompt
            logger.info("Integrator: P* = %r (score %.4f)", self.prompt, self.selection.best_score)

    @property
    def scorer_name(self) -> str:
        """The resolved scorer (``auto`` answered by whether CLIP's weights are real)."""
        return resolve_scorer(self.config.scorer, self.judges.clip_is_random)[0]

    def scorer(self, shots: torch.Tensor | None = None) -> Scorer:
        """The scorer for ``shots`` (default: the last round's), built by the judges."""
        shots = self._shots if shots is None else shots
        if shots is None:
            raise ValueError("Integrator: no shots to score against; run a round first or pass shots=")
        return self.judges.scorer(shots, self.prompt, self.config, self.hparams.seed)

    @torch.no_grad()
    def score(self, images: torch.Tensor) -> torch.Tensor:
        """(B,) scores of [0, 1] images by the resolved scorer (``combined``: z-scored within ``images``)."""
        return self.scorer().score(images.to(self.device)).cpu()

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """(B, F) diversity vectors (``diversity_space``), on the CPU."""
        return self.judges.features(images.to(self.device), self.hparams.diversity_space).cpu()

    def _parts_and_features(self, scorer: Scorer, images: torch.Tensor) -> tuple[Parts, torch.Tensor]:
        """``scorer``'s parts and the diversity vectors of ``images`` (one backbone pass where they share it)."""
        space = self.hparams.diversity_space
        parts, features = self.judges.parts_and_features(scorer, images.to(self.device), space)
        return parts, features.cpu()

    def _gate(self, parts: Parts) -> float | None:
        """The shot-fidelity hinge of the guidance: the first round's gate distance (this round's in round 0)."""
        first = self.history[0].parts.get("shot_fidelity") if self.history else None
        values = torch.tensor(first) if first else parts.get("shot_fidelity")
        return None if values is None else fidelity_gate(values, self.config.pass_fraction)

    # ----- the final N images -----
    @torch.no_grad()
    def generate(self, n: int, shots: torch.Tensor | None = None, seed: int | None = None) -> FinalSet:
        """The final N: a fresh draw from the integrated generator plus every round's kept images, gated by
        score and chosen for diversity (uniformly at random with ``none``); exact copies of a shot and
        constant images only if nothing else is left. ``combined`` z-scores over all these candidates.

        Raises:
            FloatingPointError: NaN/inf in the draw. ValueError: fewer than ``n`` usable candidates.
        """
        cfg = self.config
        rounds_shots, shots = self._shots, (shots if shots is not None else self._shots)
        if shots is None:
            raise ValueError("Integrator.generate: no shots; run a round first or pass shots=")
        shots = self._shots = shots.float().to(self.device)
        scorer = self.scorer(shots)
        # the rounds' kept images compete when they came from these shots (or a resumed fit's bank)
        same = rounds_shots is None or torch.equal(rounds_shots.cpu(), shots.cpu())
        bank = self._bank if same else KeptBank()
        fresh = max(n, math.ceil(cfg.final_pool_factor * n) - bank.images)
        seed = seed_for(self.hparams.seed, "final") if seed is None else seed
        pool, check = self._draw_checked(shots, fresh, seed, "final draw")
        fresh_parts, fresh_features = self._parts_and_features(scorer, pool.images)
        candidates, rounds, parts = bank.candidates(pool, fresh_parts, self.round_index)
        random_g = torch.Generator().manual_seed(seed + KEEP_OFFSET) if scorer.random else None
        kept_before = candidates.images[len(pool.images) :]  # the rounds' kept images follow the fresh draw
        features = (
            torch.cat([fresh_features, self.features(kept_before)]) if len(kept_before) else fresh_features
        )
        scores, anchors = scorer.combine(parts), self.features(shots)
        return choose_final(
            candidates, rounds, scores, features, shots, anchors, n, cfg.pass_fraction, check, parts, random_g
        )

    # ----- test: score statistics of a fresh batch -----
    def on_test_start(self) -> None:
        self.judges.to(self.device)
        datamodule = self.trainer.datamodule
        if datamodule is None:
            raise ValueError("Integrator test needs a datamodule with the shots (`data:` in the config)")
        shots = [batch_images(batch, normal_only=True) for batch in datamodule.train_dataloader()]
        self._shots = torch.cat(shots).float().to(self.device)

    def test_step(self, batch: Any, batch_idx: int) -> None:
        del batch
        if batch_idx > 0:
            return
        n = self.hparams.test_samples or self.config.samples_per_round
        pool, check = self._draw_checked(self._shots, n, seed_for(self.hparams.seed, "test"), "test")
        scorer = self.scorer(self._shots)
        parts, features = self._parts_and_features(scorer, pool.images)
        stats = pool_statistics(scorer.combine(parts), parts, features, check)
        self.test_stats = {k: float(v) for k, v in stats.items()}
        self.log_dict(stats, batch_size=n)
