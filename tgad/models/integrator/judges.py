"""The Integrator's judges as a mixin: CLIP and P*, the ImageNet feature network (diversity features and shot
fidelity) and the scorer built from them. Frozen helpers live outside the module tree, so checkpoints hold
only the generator; the caller may hand over what it already has (``attach_*``)."""

from __future__ import annotations

import logging
from typing import Any

import torch
from torch import nn

from tgad.assets.weights import ResolvedWeights
from tgad.models.variance_vqgan.loss import PerceptualLoss
from tgad.models.variance_vqgan.torch_model import VarianceVQGANModel

from .defect_safe import PARTS as SAFE_PARTS
from .scorers import (
    ClipText,
    DefectSafe,
    Parts,
    PatchFeatures,
    Scorer,
    ShotFidelity,
    fidelity_gate,
    resolve_scorer,
    scorer_description,
)
from .torch_model import clip_image_embeddings, feature_vectors

logger = logging.getLogger(__name__)


class JudgesMixin:
    """Needs ``hparams``, ``config`` (IntegratorConfig), ``generator``, ``history``, ``_aux``, ``provenance``,
    ``_shots``, ``_scorer``, ``_scorer_shots`` and ``device`` from the LightningModule."""

    # ----- explicit hooks: the caller hands over what it already has -----
    def attach_generator(self, generator: nn.Module, provenance: str = "in memory") -> None:
        """Use a fitted ``VarianceVQGANModel`` (or a ``VarianceVQGAN`` module: its ``.model`` and perceptual net)."""
        model = getattr(generator, "model", generator)
        if not isinstance(model, VarianceVQGANModel):
            raise TypeError(
                f"attach_generator: expected a VarianceVQGAN(Model), got {type(generator).__name__}"
            )
        self.generator = model
        self.generator.quantizer.train(False)
        self._generator_ready = True
        self.provenance["generator"] = provenance
        perceptual = getattr(generator, "perceptual", None)
        if perceptual is not None and self._aux["perceptual"] is None:
            self._aux["perceptual"] = perceptual

    def attach_clip(self, clip: nn.Module, tokenizer: Any, resolved: ResolvedWeights) -> None:
        self._aux.update(clip=clip, tokenizer=tokenizer, text=None)
        self.provenance["clip"] = resolved.to_dict() | {"describe": resolved.describe()}

    def attach_perceptual(self, backbone: nn.Module, resolved: ResolvedWeights) -> None:
        """A timm ``features_only`` backbone (strides 4/8/16) for the diversity features."""
        self._aux["perceptual"] = PerceptualLoss(backbone)
        self.provenance["perceptual"] = resolved.to_dict() | {"describe": resolved.describe()}

    def resolve_judges(self, out_indices: tuple[int, ...]) -> None:
        """Build CLIP and the feature network from ``tgad.assets`` unless handed over, and move them to the
        device (``setup``: weights are resolved there, never in ``__init__``)."""
        if self.clip is None:
            from tgad.assets.clip import resolve_clip

            # Seeded: random weights (allowed explicitly) are then the same in `fit` and `test` runs.
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(self.hparams.seed)
                clip, tokenizer, resolved = resolve_clip(
                    self.config.clip_model,
                    self.hparams.clip_weights,
                    allow_random=self.hparams.allow_random_clip,
                )
            self.attach_clip(clip, tokenizer, resolved)
        if self.perceptual is None and self._needs_features():
            from tgad.assets import create_backbone

            backbone, resolved = create_backbone(
                self.hparams.perceptual_backbone,
                features_only=True,
                out_indices=out_indices,
                local_file=self.hparams.perceptual_weights,
            )
            self.attach_perceptual(backbone, resolved)
        self.clip.to(self.device)
        if self.perceptual is not None:
            self.perceptual.to(self.device)

    def set_prompt(self, prompt: str) -> None:
        self.prompt, self._aux["text"] = prompt, None

    @property
    def clip(self) -> nn.Module:
        return self._aux["clip"]

    @property
    def perceptual(self) -> PerceptualLoss | None:
        return self._aux["perceptual"]

    # ----- scoring -----
    def _ensure_prompt(self, shots: torch.Tensor | None) -> torch.Tensor:
        """P*'s unit text embedding (D,); P* is chosen from ``shots`` first when none was given."""
        if self.prompt is None:
            if shots is None:
                raise ValueError("Integrator: no P*; pass prompt= or let a round choose it from the shots")
            self._choose_prompt(shots)
        if self._aux["text"] is None:
            from tgad.text.clip_embed import encode_text

            self._aux["text"] = encode_text(self.clip, self._aux["tokenizer"], [self.prompt])[0]
        return self._aux["text"]

    def _choose_prompt(self, shots: torch.Tensor) -> None:
        from tgad.assets.weights import ResolvedWeights as RW
        from tgad.models.prompt_selector import PromptSelectorConfig, select_prompt
        from tgad.text.keywords import resolve_keyword

        datamodule = getattr(self._trainer, "datamodule", None) if self._trainer is not None else None
        category = self.hparams.category or getattr(datamodule, "category", None)
        sense = resolve_keyword(category, self.hparams.keyword)
        cfg = PromptSelectorConfig.preset(self.hparams.preset)
        resolved = RW(**{k: v for k, v in self.provenance["clip"].items() if k != "describe"})
        self.selection = select_prompt(
            self.clip, self._aux["tokenizer"], shots, sense, resolved, cfg.num_words, cfg.templates
        )
        self.prompt = self.selection.best_prompt
        logger.info("Integrator: P* = %r (score %.4f)", self.prompt, self.selection.best_score)

    def _needs_features(self) -> bool:
        """The ImageNet feature network serves diversity, shot fidelity and the perceptual loss."""
        return (
            self.hparams.diversity_space == "perceptual"
            or self.generator.config.perceptual_weight > 0
            or self.config.scorer != "clip_text"
            or self.config.calibrate_tau
        )

    @property
    def scorer_name(self) -> str:
        """The resolved scorer (``auto`` answered by whether CLIP's weights are real)."""
        clip = self.provenance.get("clip") or {}
        return resolve_scorer(self.config.scorer, clip.get("source") == "random")[0]

    def scorer(self, shots: torch.Tensor | None = None) -> Scorer:
        """The scorer for ``shots`` (built on first use, rebuilt when the shots change)."""
        shots = self._shots if shots is None else shots
        if shots is None:
            raise ValueError("Integrator: no shots to score against; run a round first or pass shots=")
        if self._scorer is not None and torch.equal(self._scorer_shots, shots):
            return self._scorer
        cfg = self.config
        name, why = resolve_scorer(cfg.scorer, (self.provenance.get("clip") or {}).get("source") == "random")
        clip = ClipText(self.clip, self._ensure_prompt(shots)) if name in ("clip_text", "combined") else None
        fidelity, safe = None, None
        if self.perceptual is not None:
            features = PatchFeatures(self.perceptual.backbone, self.perceptual.mean, self.perceptual.std)
            fidelity = ShotFidelity(features, shots, cfg.fidelity_views, cfg.fidelity_tail, self.hparams.seed)
            if name == "defect_safe":
                safe = self.defect_safe(shots, features, fidelity.bank)
        self._scorer = Scorer(name, clip, fidelity, cfg.combined_clip_weight, safe)
        self._scorer_shots = shots.detach().clone()
        self.provenance["scorer"] = {
            "requested": cfg.scorer,
            "resolved": name,
            "why": why,
            "formula": scorer_description(
                name,
                cfg.combined_clip_weight,
                cfg.fidelity_tail,
                cfg.fidelity_views,
                (cfg.defect_weight, cfg.outlier_weight, cfg.defect_count),
            ),
            "parts_recorded": (["clip_text"] if clip else [])
            + (["shot_fidelity"] if fidelity else [])
            + ([*SAFE_PARTS, "defect_safe"] if safe else []),
        }
        return self._scorer

    def defect_safe(
        self, shots: torch.Tensor, features: PatchFeatures | None = None, bank: torch.Tensor | None = None
    ) -> DefectSafe:
        """A ``defect_safe`` judge of ``shots`` (the scorer's, and tau calibration's whatever the scorer)."""
        cfg = self.config
        if features is None:
            features = PatchFeatures(self.perceptual.backbone, self.perceptual.mean, self.perceptual.std)
        if bank is None:
            bank = ShotFidelity(
                features, shots, cfg.fidelity_views, cfg.fidelity_tail, self.hparams.seed
            ).bank
        return DefectSafe(
            features,
            bank,
            shots,
            n_defects=cfg.defect_count,
            defect_weight=cfg.defect_weight,
            outlier_weight=cfg.outlier_weight,
            seed=self.hparams.seed,
        )

    @torch.no_grad()
    def score(self, images: torch.Tensor) -> torch.Tensor:
        """(B,) scores of [0, 1] images by the resolved scorer (``combined``: z-scored within ``images``)."""
        return self.scorer().score(images.to(self.device)).cpu()

    @torch.no_grad()
    def features(self, images: torch.Tensor) -> torch.Tensor:
        """(B, F) vectors for the diversity term (squared distance = perceptual distance, or CLIP space)."""
        if self.hparams.diversity_space == "clip" or self.perceptual is None:
            return clip_image_embeddings(self.clip, images.to(self.device)).cpu()
        return feature_vectors(self.perceptual, images.to(self.device)).cpu()

    def _gate(self, parts: Parts) -> float | None:
        """The shot-fidelity hinge of the guidance: the first round's gate distance (this round's in round 0)."""
        first = self.history[0].parts.get("shot_fidelity") if self.history else None
        values = torch.tensor(first) if first else parts.get("shot_fidelity")
        return None if values is None else fidelity_gate(values, self.config.pass_fraction)
