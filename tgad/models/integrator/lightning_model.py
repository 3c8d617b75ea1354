"""Integrator as a LightningModule: R rounds of {sample M, score, keep, update}, then the final N images
(METHOD.md section 3); the score is chosen by ``scorer`` (``scorers.py``).

One training step is one round: the batch's images are the shots (set ``train_batch_size >= shots``); after
``rounds`` rounds the module stops the trainer (configs set ``trainer.max_epochs: -1``). The generator is a
fitted VarianceVQGAN from ``generator_checkpoint`` or :meth:`attach_generator`; CLIP and the feature network
are frozen judges kept out of the checkpoint and rebuilt from ``tgad.assets`` by name.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any, Literal

import torch
from lightning.pytorch import LightningModule

from tgad.models.variance_vqgan.config import VQGANConfig
from tgad.models.variance_vqgan.torch_model import VarianceVQGANModel

from . import records
from .calibration import calibrate_tau
from .config import IntegratorConfig
from .judges import JudgesMixin
from .loss import integrator_loss
from .names import ScorerName
from .records import FinalSet, RoundRecord, choose_final, pool_candidates, pool_statistics, round_logs
from .scorers import Parts, Scorer, random_choice
from .selection import check_pool, select_diverse
from .torch_model import Pool, draw_pool, load_generator_state

logger = logging.getLogger(__name__)

PERCEPTUAL_OUT_INDICES = (1, 2, 3)  # as the VarianceVQGAN's perceptual loss: strides 4, 8, 16


def _images(batch: Any) -> torch.Tensor:
    if isinstance(batch, torch.Tensor):
        return batch
    return batch.image if hasattr(batch, "image") else batch[0]


class Integrator(JudgesMixin, LightningModule):
    """Text-guided knowledge integration over a fitted VarianceVQGAN.

    Args:
        preset: defaults of every Integrator setting (``config.py``); ``None`` arguments keep them.
        generator_checkpoint: a VarianceVQGAN Lightning checkpoint, loaded in ``setup`` (weights_only).
        generator_preset, generator_codebook_size: the generator's architecture (must match the checkpoint).
        prompt: P*; None = chosen from the shots with the PromptSelector (``category``/``keyword``).
        clip_model, clip_weights, allow_random_clip: the CLIP judge (must be the one that chose P*).
        scorer: ``auto`` (default: combined with real CLIP, shot_fidelity with random CLIP), ``clip_text``,
            ``shot_fidelity``, ``combined``, ``defect_safe`` or ``none`` (random selection); see ``scorers.py``.
        defect_weight, outlier_weight, defect_count: ``defect_safe``'s weights and synthetic defects.
        calibrate_tau, max_defect_cover, max_implausible: choose tau from the shots before the rounds.
        target_block, code_neighbors, self_similar: generator levers (``VarianceVQGANModel.sample``): square
            target patches; one of the nearest codes; the latent of one of the most similar positions.
        sample_mode: ``residual`` (default) or ``direct`` decoding of the samples.
        diversity_space: ``perceptual`` (ImageNet features of ``perceptual_backbone``) or ``clip`` embeddings.
        seed: seeds every draw; round r uses seed * 1000 + r.
        test_samples: images of the fresh batch ``test`` scores (default: samples_per_round).
    """

    def __init__(
        self,
        preset: Literal["tiny", "cpu", "paper"] = "cpu",
        generator_checkpoint: str | None = None,
        generator_preset: Literal["tiny", "cpu", "paper"] | None = None,
        generator_codebook_size: int | None = None,
        prompt: str | None = None,
        category: str | None = None,
        keyword: str | None = None,
        clip_model: str | None = None,
        clip_weights: str | None = None,
        allow_random_clip: bool = False,
        rounds: int | None = None,
        samples_per_round: int | None = None,
        keep_fraction: float | None = None,
        pass_fraction: float | None = None,
        update_steps: int | None = None,
        learning_rate: float | None = None,
        tau: float | None = None,
        patch_fraction: float | None = None,
        reconstruction_weight: float | None = None,
        guidance_weight: float | None = None,
        fidelity_weight: float | None = None,
        guidance_samples: int | None = None,
        final_pool_factor: float | None = None,
        scorer: ScorerName | None = None,
        combined_clip_weight: float | None = None,
        fidelity_tail: float | None = None,
        fidelity_views: int | None = None,
        defect_weight: float | None = None,
        outlier_weight: float | None = None,
        defect_count: int | None = None,
        calibrate_tau: bool | None = None,
        max_defect_cover: float | None = None,
        max_implausible: float | None = None,
        target_block: int | None = None,
        code_neighbors: int | None = None,
        self_similar: int | None = None,
        sample_mode: Literal["residual", "direct"] = "residual",
        diversity_space: Literal["perceptual", "clip"] = "perceptual",
        perceptual_backbone: str = "tf_efficientnet_lite0",
        perceptual_weights: str | None = None,
        seed: int = 0,
        test_samples: int | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        fields = set(IntegratorConfig.__dataclass_fields__)
        self.config = IntegratorConfig.preset(
            preset, **{k: v for k, v in self.hparams.items() if k in fields}
        )
        gen_overrides = {"codebook_size": generator_codebook_size} if generator_codebook_size else {}
        self.generator = VarianceVQGANModel(VQGANConfig.preset(generator_preset or preset, **gen_overrides))
        self.generator.quantizer.train(False)
        self.automatic_optimization = False
        self.prompt = prompt
        self.tau = self.config.tau  # calibrate_tau replaces it from the shots before the first round
        self.tau_calibration: list[dict[str, float]] = []
        self.round_index = 0
        self.history: list[RoundRecord] = []
        self.test_stats: dict[str, float] = {}
        # Frozen helpers out of the module tree (not in checkpoints), and provenance of everything used.
        self._aux: dict[str, Any] = {"clip": None, "tokenizer": None, "text": None, "perceptual": None}
        self.provenance: dict[str, Any] = dict.fromkeys(("clip", "perceptual", "generator", "scorer"))
        self.selection = None  # PromptSelection when P* was chosen here
        self._bank: list[Pool] = []  # kept images of every round
        self._bank_parts: list[Parts] = []  # their raw scorer parts
        self._scorer: Scorer | None = None
        self._scorer_shots: torch.Tensor | None = None
        self._shots: torch.Tensor | None = None
        self._generator_ready = False

    def train(self, mode: bool = True) -> Integrator:
        super().train(mode)
        self.generator.quantizer.train(False)  # the codebook stays as fitted: no EMA updates, no restarts
        return self

    # ----- setup: weights are resolved here, never in __init__ -----
    def setup(self, stage: str) -> None:
        if self.hparams.generator_checkpoint and not self._generator_ready:
            self._load_generator(self.hparams.generator_checkpoint)
        if not self._generator_ready:
            raise ValueError(
                "Integrator has no generator: set generator_checkpoint (fit one with "
                "`tgad fit --config conf/variance_vqgan/tiny.yaml`) or call attach_generator()"
            )
        self.resolve_judges(PERCEPTUAL_OUT_INDICES)

    def _load_generator(self, path: str) -> None:
        preset = self.hparams.generator_preset or self.hparams.preset
        self.provenance["generator"] = load_generator_state(self.generator, path, preset)
        self._generator_ready = True

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["integrator"] = {
            "prompt": self.prompt,
            "round_index": self.round_index,
            "tau": self.tau,
            "tau_calibration": self.tau_calibration,
            "provenance": {k: str(v) for k, v in self.provenance.items()},
            # the final draw chooses among every round's kept images too
            **records.rounds_to_checkpoint(self.history, self._bank, self._bank_parts),
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Everything a round leaves behind, so a fit resumed after round r ends as an uninterrupted one."""
        saved = checkpoint.get("integrator", {})
        self.prompt = saved.get("prompt", self.prompt)
        self.round_index = saved.get("round_index", 0)
        self.tau = saved.get("tau", self.tau)
        self.tau_calibration = saved.get("tau_calibration", [])
        self.history, self._bank, self._bank_parts = records.rounds_from_checkpoint(saved)
        self._generator_ready = True  # the checkpoint's state dict holds the integrated generator

    def _draw(self, shots: torch.Tensor, n: int, seed: int, tau: float | None = None) -> Pool:
        g = torch.Generator().manual_seed(seed)
        cfg = self.config
        return draw_pool(
            self.generator,
            shots,
            n,
            self.tau if tau is None else tau,
            cfg.patch_fraction,
            g,
            self.hparams.sample_mode,
            cfg.target_block,
            cfg.code_neighbors,
            cfg.self_similar,
        )

    # ----- one round -----
    def training_step(self, batch: Any, batch_idx: int) -> None:
        del batch_idx
        if self.round_index >= self.config.rounds:
            self.trainer.should_stop = True
            return
        self.run_round(_images(batch))
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
        if r == 0 and cfg.calibrate_tau and not self.tau_calibration:
            self._calibrate_tau(shots)
        pool = self._draw(shots, cfg.samples_per_round, self.hparams.seed * 1000 + r)
        check = check_pool(pool.images, shots, pool.shot_index)
        if check.collapsed:
            logger.warning("Integrator round %d: generator collapsed: %s", r, check.reason)
        parts = scorer.parts(pool.images.to(self.device))
        scores = scorer.combine(parts)
        eligible = ~check.constant & ~check.copies
        if not eligible.any():
            eligible = ~check.constant
        features, anchors = self.features(pool.images), self.features(shots)
        if scorer.random:
            g = torch.Generator().manual_seed(self.hparams.seed * 1000 + r + 250)
            kept_index = random_choice(len(scores), cfg.keep, eligible, g)
            passed, threshold = eligible.clone(), math.nan
        else:
            sel = select_diverse(scores, features, cfg.keep, cfg.pass_fraction, anchors, eligible)
            kept_index, passed, threshold = sel.kept, sel.passed, sel.threshold
        kept = pool.images[kept_index]
        self._bank.append(Pool(kept.cpu(), pool.shot_index[kept_index], pool.changed[kept_index]))
        self._bank_parts.append({k: v[kept_index] for k, v in parts.items()})
        losses = self._update(kept.to(self.device), shots, parts, self._gate(parts), r)
        rejected = scores[~passed & eligible]  # failed the gate (excluded images never competed)
        record = RoundRecord(
            round=r,
            scores=scores.tolist(),
            kept=kept_index.tolist(),
            passed=passed.tolist(),
            excluded=(~eligible).tolist(),
            threshold=threshold,
            kept_mean=float(scores[kept_index].mean()),
            rejected_mean=float(rejected.mean()) if len(rejected) else math.nan,
            changed_mean=float(pool.changed.mean()),
            pixel_spread=check.pixel_spread,
            novelty_mean=float(torch.cdist(features, anchors).min(dim=1).values.mean()),
            collapsed=check.collapsed,
            losses=losses,
            seconds=time.perf_counter() - start,
            scorer=scorer.name,
            parts={k: v.tolist() for k, v in parts.items()},
        )
        self.history.append(record)
        self.round_index += 1
        if self._trainer is not None:
            logs = round_logs(record, float(scores.mean()), parts)
            self.log_dict(logs, on_step=True, on_epoch=False, batch_size=len(shots))
        logger.info(
            "Integrator round %d (%s): kept %.4f, pool %.4f",
            r,
            scorer.name,
            record.kept_mean,
            float(scores.mean()),
        )
        return record

    def _calibrate_tau(self, shots: torch.Tensor) -> None:
        """tau from the shots alone: the largest on the ladder within the limits (``calibration.py``)."""
        safe = self.scorer(shots).safe or self.defect_safe(shots)
        seed = self.hparams.seed * 1000 + 333
        self.tau, self.tau_calibration = calibrate_tau(
            lambda tau, n: self._draw(shots, n, seed, tau).images,
            safe,
            self.config.max_defect_cover,
            self.config.max_implausible,
        )
        logger.info("Integrator: calibrated tau = %g (%s)", self.tau, self.tau_calibration)

    def _update(
        self, kept: torch.Tensor, shots: torch.Tensor, pool_parts: Parts, gate: float | None, r: int
    ) -> dict[str, float]:
        cfg, gcfg = self.config, self.generator.config
        if cfg.update_steps == 0:
            return {}
        scorer = self.scorer(shots)
        guidance = None if scorer.random else (lambda samples: scorer.guidance(samples, pool_parts, gate))
        opt = self.optimizers() if self._trainer is not None else self._standalone_optimizer()
        g = torch.Generator().manual_seed(self.hparams.seed * 1000 + r + 500)
        sums: dict[str, float] = {}
        with torch.enable_grad():
            for _ in range(cfg.update_steps):
                out = integrator_loss(
                    self.generator,
                    kept,
                    shots,
                    guidance,
                    reconstruction_weight=cfg.reconstruction_weight,
                    guidance_weight=cfg.guidance_weight,
                    fidelity_weight=cfg.fidelity_weight,
                    guidance_samples=cfg.guidance_samples,
                    tau=self.tau,
                    patch_fraction=cfg.patch_fraction,
                    perceptual=self.perceptual,
                    perceptual_weight=gcfg.perceptual_weight,
                    crop_size=gcfg.crop_size,
                    mode=self.hparams.sample_mode,
                    generator=g,
                    # shot fidelity rewards closeness to the shots: it must not shrink the learned spread
                    # defect_safe rewards added variation: its gradient may widen the learned spread
                    variance_grad=scorer.name in ("clip_text", "defect_safe"),
                    block=cfg.target_block,
                    self_similar=cfg.self_similar,
                )
                opt.zero_grad()
                if self._trainer is not None:
                    self.manual_backward(out.total)
                else:
                    out.total.backward()
                opt.step()
                for k, v in out._asdict().items():
                    sums[k] = sums.get(k, 0.0) + float(v.detach()) / cfg.update_steps
        return sums

    def _standalone_optimizer(self) -> torch.optim.Optimizer:
        if "optimizer" not in self._aux:
            self._aux["optimizer"] = self.configure_optimizers()
        return self._aux["optimizer"]

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.generator.parameters(), lr=self.config.learning_rate, betas=(0.5, 0.9))

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
        shots = shots if shots is not None else self._shots
        if shots is None:
            raise ValueError("Integrator.generate: no shots; run a round first or pass shots=")
        shots = self._shots = shots.float().to(self.device)
        scorer = self.scorer(shots)
        bank, bank_parts = (
            (self._bank, self._bank_parts) if torch.equal(self._scorer_shots, shots) else ([], [])
        )
        banked = sum(len(b.images) for b in bank)
        fresh = max(n, math.ceil(cfg.final_pool_factor * n) - banked)
        seed = self.hparams.seed * 1000 + 999 if seed is None else seed
        pool = self._draw(shots, fresh, seed)
        check = check_pool(pool.images, shots, pool.shot_index)
        if check.collapsed:
            logger.warning("Integrator: the final draw collapsed: %s", check.reason)
        fresh_parts = scorer.parts(pool.images.to(self.device))
        candidates, rounds, parts = pool_candidates(pool, fresh_parts, self.round_index, bank, bank_parts)
        anchors = self.features(shots)
        random_g = torch.Generator().manual_seed(seed + 250) if scorer.random else None
        return choose_final(
            candidates,
            rounds,
            scorer.combine(parts),
            self.features(candidates.images),
            shots,
            anchors,
            n,
            cfg.pass_fraction,
            check,
            parts=parts,
            random_generator=random_g,
        )

    # ----- test: score statistics of a fresh batch -----
    def on_test_start(self) -> None:
        datamodule = self.trainer.datamodule
        if datamodule is None:
            raise ValueError("Integrator test needs a datamodule with the shots (`data:` in the config)")
        shots = []
        for batch in datamodule.train_dataloader():
            images, labels = _images(batch), getattr(batch, "gt_label", None)
            shots.append(images if labels is None else images[labels.view(-1) == 0])
        self._shots = torch.cat(shots).float().to(self.device)

    def test_step(self, batch: Any, batch_idx: int) -> None:
        del batch
        if batch_idx > 0:
            return
        n = self.hparams.test_samples or self.config.samples_per_round
        pool = self._draw(self._shots, n, self.hparams.seed * 1000 + 777)
        check = check_pool(pool.images, self._shots, pool.shot_index)
        parts = self.scorer(self._shots).parts(pool.images.to(self.device))
        scores = self.scorer().combine(parts)
        stats = pool_statistics(scores, parts, self.features(pool.images), check)
        self.test_stats = {k: float(v) for k, v in stats.items()}
        self.log_dict(stats, batch_size=n)
        if check.collapsed:
            logger.warning("Integrator test: generator collapsed: %s", check.reason)
