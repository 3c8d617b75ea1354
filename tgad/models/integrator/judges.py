"""The Integrator's judges, one object passed in: CLIP and its tokenizer (P*, the text score), the ImageNet
feature network (diversity features, shot fidelity, defect_safe, the perceptual update loss) and the scorer
built from them for given shots.

A plain object, not an ``nn.Module``: the judges are frozen and never enter a checkpoint. Whoever already holds
the networks builds it (the chain shares one with the PromptSelector and the VarianceVQGAN); a module built from
a config gets one from :meth:`Judges.resolve`, which reads weights through ``tgad.assets`` by name.
"""

from __future__ import annotations

import logging
from typing import Any, NamedTuple

import torch
from torch import nn

from tgad.assets import create_backbone
from tgad.assets.clip import resolve_clip
from tgad.assets.weights import ResolvedWeights
from tgad.models.prompt_selector import PromptSelection, PromptSelectorConfig, select_prompt
from tgad.models.variance_vqgan.loss import PERCEPTUAL_OUT_INDICES, PerceptualLoss
from tgad.text.clip_embed import encode_text
from tgad.text.keywords import resolve_keyword

from .config import IntegratorConfig
from .defect_safe import PARTS as SAFE_PARTS
from .scorers import (
    ClipText,
    DefectSafe,
    PatchFeatures,
    Scorer,
    ShotFidelity,
    resolve_scorer,
    scorer_description,
)
from .torch_model import clip_image_embeddings, feature_vectors, vectors_from_maps

logger = logging.getLogger(__name__)


def needs_features(cfg: IntegratorConfig, perceptual_weight: float, diversity_space: str) -> bool:
    """Whether an Integrator needs the feature network: diversity in its space, shot fidelity and defect_safe
    scoring, tau calibration, or the generator's perceptual loss (``perceptual_weight``)."""
    return (
        diversity_space == "perceptual"
        or perceptual_weight > 0
        or cfg.scorer != "clip_text"
        or cfg.calibration.calibrate_tau
    )


def needs_clip(cfg: IntegratorConfig, diversity_space: str, clip_is_random: bool) -> bool:
    """Whether the judges must build CLIP: a scorer that reads it (``clip_text``, ``combined``, ``auto`` with
    real weights) or CLIP-space diversity. Otherwise P* guides nothing, and a random ViT-B/32 built for it cost
    28 s of a 299 s generated set (issue 24's profile)."""
    name, _ = resolve_scorer(cfg.scorer, clip_is_random)
    return name in ("clip_text", "combined") or diversity_space == "clip"


class _BuiltScorer(NamedTuple):
    key: tuple  # (prompt, IntegratorConfig, seed)
    shots: torch.Tensor
    scorer: Scorer
    provenance: dict[str, Any]


class Judges:
    """CLIP + tokenizer and (optionally) a timm ``features_only`` backbone, with the weights each was resolved
    from; the backbone is fed the normalisation its weights record.

    Args:
        clip, tokenizer, clip_weights: an open_clip model, its tokenizer and its ``ResolvedWeights``; all None
            when nothing reads CLIP (:func:`needs_clip`): then no P* is chosen and ``auto`` scores without it.
        backbone, backbone_weights: the feature network (strides 4/8/16, ``PERCEPTUAL_OUT_INDICES``); None
            when no scorer or loss needs it (``clip_text`` scoring with CLIP-space diversity).
    """

    def __init__(
        self,
        clip: nn.Module | None,
        tokenizer: Any,
        clip_weights: ResolvedWeights | None,
        backbone: nn.Module | None = None,
        backbone_weights: ResolvedWeights | None = None,
    ) -> None:
        if backbone is not None and backbone_weights is None:
            raise ValueError("Judges: a backbone needs its ResolvedWeights (provenance and normalisation)")
        if clip is None and backbone is None:
            raise ValueError("Judges: need CLIP, a feature network or both")
        self.clip, self.tokenizer, self.clip_weights = clip, tokenizer, clip_weights
        self.backbone_weights = backbone_weights
        self.perceptual = (
            PerceptualLoss(backbone, backbone_weights.mean, backbone_weights.std)
            if backbone is not None
            else None
        )
        self._scorer: _BuiltScorer | None = None

    @classmethod
    def resolve(
        cls,
        clip_model: str,
        clip_weights: str | None = None,
        *,
        allow_random_clip: bool = False,
        seed: int = 0,
        backbone: str | None = None,
        backbone_weights: str | None = None,
        clip: bool = True,
    ) -> Judges:
        """Build the judges from names (``tgad.assets``): CLIP unless ``clip=False``, and the backbone when
        ``backbone`` is given. Random CLIP weights (allowed explicitly) are a function of ``seed``, so `fit`
        and `test` runs agree."""
        clip_net, tokenizer, clip_resolved = None, None, None
        if clip:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                clip_net, tokenizer, clip_resolved = resolve_clip(
                    clip_model, clip_weights, allow_random=allow_random_clip
                )
        net, net_resolved = None, None
        if backbone:
            net, net_resolved = create_backbone(
                backbone, features_only=True, out_indices=PERCEPTUAL_OUT_INDICES, local_file=backbone_weights
            )
        return cls(clip_net, tokenizer, clip_resolved, net, net_resolved)

    @property
    def clip_is_random(self) -> bool:
        """True for random CLIP weights and for no CLIP at all: either way its text score guides nothing."""
        return self.clip_weights is None or self.clip_weights.is_random

    @property
    def device(self) -> torch.device:
        net = self.clip if self.clip is not None else self.perceptual
        return next(iter([*net.parameters(), *net.buffers()])).device

    def to(self, device: torch.device | str) -> Judges:
        """Move the networks; a scorer built on another device is dropped."""
        if torch.device(device) == self.device:
            return self
        if self.clip is not None:
            self.clip.to(device)
        if self.perceptual is not None:
            self.perceptual.to(device)
        self._scorer = None
        return self

    @property
    def provenance(self) -> dict[str, Any]:
        """``{"clip", "perceptual"}``: each weights' record plus its short form (None without a backbone)."""

        def record(weights: ResolvedWeights | None) -> dict[str, Any] | None:
            return None if weights is None else weights.to_dict() | {"describe": weights.describe()}

        return {"clip": record(self.clip_weights), "perceptual": record(self.backbone_weights)}

    # ----- CLIP -----
    def _needs_clip(self, what: str) -> nn.Module:
        if self.clip is None:
            raise ValueError(f"Judges: {what} needs CLIP; build the judges with clip=True")
        return self.clip

    def text(self, prompt: str) -> torch.Tensor:
        """P*'s unit text embedding (D,) (``encode_text`` caches it per model, device and prompt)."""
        return encode_text(self._needs_clip("P*'s text embedding"), self.tokenizer, [prompt])[0]

    def choose_prompt(
        self, shots: torch.Tensor, category: str | None, keyword: str | None, config: PromptSelectorConfig
    ) -> PromptSelection:
        """P* for ``shots`` with this CLIP: ``config``'s words and templates (the recipe's ``prompt``, whole;
        its CLIP fields named the CLIP these judges hold) for the object named by ``keyword``, else by
        ``category``."""
        return select_prompt(
            self._needs_clip("choosing P*"),
            self.tokenizer,
            shots,
            resolve_keyword(category, keyword),
            self.clip_weights,
            config.num_words,
            config.templates,
            config.text_batch_size,
        )

    # ----- features -----
    def _needs_backbone(self, what: str) -> PerceptualLoss:
        if self.perceptual is None:
            raise ValueError(f"Judges: {what} needs the feature network; build the judges with a backbone")
        return self.perceptual

    def patch_features(self) -> PatchFeatures:
        net = self._needs_backbone("patch features")
        return PatchFeatures(net.backbone, net.mean, net.std)

    @torch.no_grad()
    def features(self, images: torch.Tensor, space: str = "perceptual") -> torch.Tensor:
        """(B, F) vectors for the diversity term: squared distance = perceptual distance, or CLIP space."""
        if space == "clip" or self.perceptual is None:
            return clip_image_embeddings(self._needs_clip("CLIP-space diversity"), images)
        return feature_vectors(self.perceptual, images)

    @torch.no_grad()
    def parts_and_features(
        self, scorer: Scorer, images: torch.Tensor, space: str = "perceptual"
    ) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """``scorer``'s parts of ``images`` and their (B, F) diversity vectors (:meth:`features`), from one
        backbone pass where the scorer's patch features run this feature network (``Scorer.parts_and_vectors``)."""
        net = scorer.patch_features
        shares = space == "perceptual" and self.perceptual is not None and net is not None
        shares = shares and net.backbone is self.perceptual.backbone
        parts, vectors = scorer.parts_and_vectors(images, vectors_from_maps if shares else None)
        return parts, vectors if vectors is not None else self.features(images, space)

    # ----- the scorer -----
    def scorer(self, shots: torch.Tensor, prompt: str | None, cfg: IntegratorConfig, seed: int) -> Scorer:
        """The ``cfg.scorer`` scorer of ``shots`` (built on first use, rebuilt when shots or settings change);
        :meth:`scorer_provenance` says what it resolved to and why."""
        key = (prompt, cfg, seed)
        built = self._scorer
        if built is not None and built.key == key and torch.equal(built.shots, shots):
            return built.scorer
        name, why = resolve_scorer(cfg.scorer, self.clip_is_random)
        weights = cfg.scoring
        if name in ("clip_text", "combined") and prompt is None:
            raise ValueError(f"Integrator: the {name} scorer needs P*; pass prompt= or let a round choose it")
        clip = ClipText(self.clip, self.text(prompt)) if name in ("clip_text", "combined") else None
        fidelity, safe = None, None
        if self.perceptual is not None:
            features = self.patch_features()
            fidelity = ShotFidelity(features, shots, weights.fidelity_views, weights.fidelity_tail, seed)
            if name == "defect_safe":
                safe = self.defect_safe(shots, cfg, seed, features, fidelity.bank)
        scorer = Scorer(name, clip, fidelity, weights.combined_clip_weight, safe)
        safe_settings = (weights.defect_weight, weights.outlier_weight, weights.defect_count)
        provenance = {
            "requested": cfg.scorer,
            "resolved": name,
            "why": why,
            "formula": scorer_description(
                name,
                weights.combined_clip_weight,
                weights.fidelity_tail,
                weights.fidelity_views,
                safe_settings,
            ),
            "parts_recorded": (["clip_text"] if clip else [])
            + (["shot_fidelity"] if fidelity else [])
            + ([*SAFE_PARTS, "defect_safe"] if safe else []),
        }
        self._scorer = _BuiltScorer(key, shots.detach().clone(), scorer, provenance)
        return scorer

    @property
    def scorer_provenance(self) -> dict[str, Any] | None:
        return None if self._scorer is None else self._scorer.provenance

    def defect_safe(
        self,
        shots: torch.Tensor,
        cfg: IntegratorConfig,
        seed: int,
        features: PatchFeatures | None = None,
        bank: torch.Tensor | None = None,
    ) -> DefectSafe:
        """A ``defect_safe`` judge of ``shots`` (the scorer's, and tau calibration's whatever the scorer)."""
        weights = cfg.scoring
        if features is None:
            features = self.patch_features()
        if bank is None:
            bank = ShotFidelity(features, shots, weights.fidelity_views, weights.fidelity_tail, seed).bank
        return DefectSafe(
            features,
            bank,
            shots,
            n_defects=weights.defect_count,
            defect_weight=weights.defect_weight,
            outlier_weight=weights.outlier_weight,
            seed=seed,
        )
