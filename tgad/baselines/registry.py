"""The anomalib detectors tgad benchmarks, with paper settings and backbones resolved by ``tgad.assets``.

``build_model(name, ...)`` returns the model with raw outputs (no post-processor, no evaluator:
``tgad.evaluation`` scores raw values), the ResolvedWeights of its backbone, and the trainer settings its
preset needs. The paper's backbones (ResNet-18, Wide-ResNet-50-2) are used when the user has their weights;
the default here is the offline ImageNet EfficientNet-Lite0, at the same strides as the ResNet layers.
Models that train (CFlow, EfficientAd, Reverse Distillation) get step budgets per preset: ``tiny`` for tests,
``cpu`` for minutes on two cores, ``paper`` for the published schedules. AnomalyDINO uses a timm DINOv2
encoder: real weights from a local file or a cache (``tgad.assets``), or seeded random ones when allowed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import torch
from anomalib.models import AnomalyDINO, Cflow, ReverseDistillation
from anomalib.models.components import AnomalibModule

from tgad.assets import LITE0, ResolvedWeights, resolve_backbone_weights, use_backbone_weights
from tgad.assets.backbones import random_weights_file
from tgad.baselines.efficient_ad import OfflineEfficientAd, teacher_weights
from tgad.baselines.padim import OneImagePadim
from tgad.baselines.patchcore import make_patchcore
from tgad.baselines.raw import normalise_like, raw_model
from tgad.recipe import PRESETS  # the one list of preset names

_RESNETS = ("resnet18", "resnet34", "resnet50", "wide_resnet50_2")


class BuiltModel(NamedTuple):
    model: AnomalibModule
    weights: ResolvedWeights  # the backbone's (EfficientAd: the teacher's)
    backbone: str
    trainer_kwargs: dict[str, Any]  # max_epochs / max_steps for Engine
    train_batch_size: int | None  # a model's own requirement (EfficientAd: 1), else None
    settings: dict[str, Any]  # what a result row records about the model


@dataclass(frozen=True)
class ModelSpec:
    """One detector: its default and paper backbones, feature layers per backbone and training budgets."""

    name: str
    default_backbone: str
    paper_backbone: str
    layers: Mapping[str, tuple[str, ...]]
    training: Mapping[str, Mapping[str, int]] = field(default_factory=dict)  # preset -> trainer kwargs
    train_batch_size: int | None = None
    backbones: tuple[str, ...] | None = None  # only these work (None: any with layers known)
    min_image_size: int = 16  # the smallest image side its network takes (checked before any row)


# PatchCore's bank rule (tgad.baselines.coreset): every patch is kept up to this many rows, the greedy coreset
# reduces a larger bank to it; the same for every condition. 131,072 rows hold 128 images of 256 px at stride 8,
# so 1-shot rows with 64 extra images keep nearly all their patches and full-shot rows stay tractable on a CPU.
BANK_BUDGET = 131_072


def _patchcore(backbone, layers, pre_trained, image_size, seed, bank_budget=BANK_BUDGET, num_neighbors=9):
    model = make_patchcore(
        backbone, list(layers), pre_trained, image_size, 0.1, num_neighbors, seed, bank_budget=bank_budget
    )
    return model, {"bank_budget": bank_budget, "num_neighbors": num_neighbors}


def _padim(backbone, layers, pre_trained, image_size, seed, n_features=100):
    model = raw_model(
        OneImagePadim,  # anomalib's PaDiM, defined for one training image too (padim.py)
        image_size,
        backbone=backbone,
        layers=list(layers),
        pre_trained=pre_trained,
        n_features=n_features,
    )
    return model, {"n_features": n_features}


def _cflow(backbone, layers, pre_trained, image_size, seed, coupling_blocks=8, condition_vector=128, lr=1e-4):
    # A training step needs one fiber batch of positions at the coarsest (stride-32) layer of one image.
    fiber_batch_size = max(1, min(64, (image_size // 32) ** 2))
    model = raw_model(
        Cflow,
        image_size,
        backbone=backbone,
        layers=list(layers),
        pre_trained=pre_trained,
        fiber_batch_size=fiber_batch_size,
        condition_vector=condition_vector,
        coupling_blocks=coupling_blocks,
        clamp_alpha=1.9,
        lr=lr,
    )
    settings = {"coupling_blocks": coupling_blocks, "condition_vector": condition_vector, "lr": lr}
    return model, {**settings, "fiber_batch_size": fiber_batch_size}


def _reverse_distillation(backbone, layers, pre_trained, image_size, seed):
    model = raw_model(
        ReverseDistillation,
        image_size,
        backbone=backbone,
        layers=list(layers),
        pre_trained=pre_trained,
    )
    return model, {"anomaly_map_mode": "add"}


def _efficient_ad(teacher, image_size, seed, model_size="small", imagenet_dir="./datasets/imagenette"):
    if image_size < 256:  # the autoencoder's encoder ends in an 8x8 convolution at stride 32
        raise ValueError(f"efficient_ad needs image_size >= 256 (got {image_size}): its autoencoder needs it")
    model = raw_model(
        OfflineEfficientAd,
        image_size,
        teacher=teacher,
        penalty_seed=seed,
        imagenet_dir=imagenet_dir,
        model_size=model_size,
        lr=1e-4,
        weight_decay=1e-5,
    )
    return model, {"model_size": model_size, "penalty_images": model.penalty_source}


def _anomaly_dino(
    backbone,
    layers,
    pre_trained,
    image_size,
    seed,
    num_neighbours=1,
    masking=False,
    coreset_subsampling=False,
):
    # anomalib always asks timm for pretrained DINOv2 weights; random ones (allowed explicitly) are handed
    # over as a seeded file so the build stays offline. Images are centre-cropped to a multiple of 14 px
    # inside the model and its map padded back (256 -> 252 px, 18 x 18 patches).
    del layers
    kwargs = dict(
        num_neighbours=num_neighbours,
        encoder_name=backbone,
        masking=masking,
        coreset_subsampling=coreset_subsampling,
    )
    if pre_trained:
        model = raw_model(AnomalyDINO, image_size, **kwargs)
    else:
        with random_weights_file(backbone, seed):
            model = raw_model(AnomalyDINO, image_size, **kwargs)
    settings = {
        "num_neighbours": num_neighbours,
        "masking": masking,
        "coreset_subsampling": coreset_subsampling,
    }
    return model, settings


def _no_validation(budgets: dict[str, dict]) -> dict[str, dict]:
    # Validation computes nothing these models need (no metric is fit on it); with few shots an epoch is a
    # few steps, and a validation pass after each would cost more than the training.
    return {preset: {**budget, "limit_val_batches": 0} for preset, budget in budgets.items()}


def _validate_at_end(steps: int) -> dict:
    # EfficientAd normalises its maps with quantiles taken in ``on_validation_start`` (on the shots, never the
    # test split): validate once, after the last step (batch size 1: one step per batch), not every epoch.
    return {"max_steps": steps, "val_check_interval": steps, "check_val_every_n_epoch": None}


_RESNET_LAYERS_23 = ("layer2", "layer3")
# timm DINOv2 encoders AnomalyDINO can use (its features: the last block's patch tokens).
DINO_BACKBONES = (
    "vit_small_patch14_dinov2",
    "vit_small_patch14_reg4_dinov2",
    "vit_base_patch14_dinov2",
    "vit_base_patch14_reg4_dinov2",
    "vit_large_patch14_dinov2",
)
MODELS: dict[str, ModelSpec] = {
    "patchcore": ModelSpec(
        "patchcore",
        LITE0,
        "resnet18",
        {
            LITE0: ("blocks.2", "blocks.4"),
            "resnet18": _RESNET_LAYERS_23,
            "wide_resnet50_2": _RESNET_LAYERS_23,
        },
    ),
    "padim": ModelSpec(
        "padim",
        LITE0,
        "resnet18",
        {LITE0: ("blocks.1", "blocks.2", "blocks.4"), "resnet18": ("layer1", "layer2", "layer3")},
    ),
    "cflow": ModelSpec(
        "cflow",
        LITE0,
        "resnet18",
        {LITE0: ("blocks.2", "blocks.4", "blocks.6"), "resnet18": ("layer2", "layer3", "layer4")},
        # CFlow steps once per fiber batch (64 feature positions; ~1.3k positions per 256 px image), so a
        # step budget trains the shots alone and shots + 64 extra images equally long (cpu: 500; 1500 steps
        # took 8 min at 256 px on the busy 2-core machine, for image AUROC 1.0 on hazelnut_256, 1 shot).
        training=_no_validation(
            {"tiny": {"max_steps": 2}, "cpu": {"max_steps": 500}, "paper": {"max_epochs": 50}}
        ),
    ),
    "efficient_ad": ModelSpec(
        "efficient_ad",
        "pdn_small",
        "pdn_small",
        {"pdn_small": (), "pdn_medium": ()},
        training={p: _validate_at_end(n) for p, n in {"tiny": 2, "cpu": 300, "paper": 70000}.items()},
        train_batch_size=1,
        backbones=("pdn_small", "pdn_medium"),
        min_image_size=256,  # the autoencoder's encoder ends in an 8x8 convolution at stride 32
    ),
    # AnomalyDINO (Damm et al., WACV 2025): DINOv2-S patch tokens, 1-NN cosine distance, image score = mean of
    # the top 1 % patch distances. The strongest few-shot detector anomalib ships; it trains nothing.
    "anomaly_dino": ModelSpec(
        "anomaly_dino",
        "vit_small_patch14_dinov2",
        "vit_small_patch14_dinov2",
        {name: () for name in DINO_BACKBONES},
        backbones=DINO_BACKBONES,
    ),
    "reverse_distillation": ModelSpec(
        "reverse_distillation",
        "wide_resnet50_2",
        "wide_resnet50_2",
        {name: ("layer1", "layer2", "layer3") for name in _RESNETS},
        training=_no_validation(
            {"tiny": {"max_steps": 2}, "cpu": {"max_steps": 150}, "paper": {"max_epochs": 200}}
        ),
        backbones=_RESNETS,
    ),
}
_BUILDERS: dict[str, Callable[..., tuple[AnomalibModule, dict]]] = {
    "patchcore": _patchcore,
    "padim": _padim,
    "cflow": _cflow,
    "reverse_distillation": _reverse_distillation,
    "anomaly_dino": _anomaly_dino,
}


def check_backbone(name: str, backbone: str | None) -> str:
    """The backbone model ``name`` will use (its default for None); ValueError if it cannot use it."""
    if name not in MODELS:
        raise ValueError(f"model {name!r} is not in the registry; choose one of {sorted(MODELS)}")
    spec = MODELS[name]
    backbone = backbone or spec.default_backbone
    if spec.backbones is not None and backbone not in spec.backbones:
        raise ValueError(f"model {name} supports backbones {spec.backbones}, not {backbone!r}")
    if backbone not in spec.layers:
        raise ValueError(
            f"model {name}: no feature layers known for backbone {backbone!r}; use {list(spec.layers)}"
        )
    return backbone


def check_image_size(name: str, image_size: int) -> None:
    """Model ``name`` takes images of side ``image_size`` (ValueError naming its minimum otherwise)."""
    need = MODELS[name].min_image_size
    if image_size < need:
        raise ValueError(f"{name} needs an image side >= {need} px (got {image_size})")


def check_weights(
    name: str, backbone: str | None, backbone_file: str | None = None, allow_random: bool = False
) -> ResolvedWeights:
    """Resolve the weights model ``name`` would load, before anything is built: a benchmark fails at once
    (one line saying how to provide them) instead of after its first extra set."""
    backbone = check_backbone(name, backbone)
    if name == "efficient_ad":
        return teacher_weights(backbone.removeprefix("pdn_"), allow_random=allow_random)
    return resolve_backbone_weights(backbone, backbone_file, allow_random)


def build_model(
    name: str,
    *,
    backbone: str | None = None,
    image_size: int = 256,
    preset: str = "cpu",
    seed: int = 0,
    allow_random_backbone: bool = False,
    backbone_file: str | None = None,
    **overrides: Any,
) -> BuiltModel:
    """Build detector ``name`` (one of ``MODELS``) for raw-output scoring.

    Args:
        backbone: timm name (default: the spec's; EfficientAd: ``pdn_small``/``pdn_medium``).
        preset: ``tiny`` / ``cpu`` / ``paper``: the training budget of models that train.
        seed: seeds torch before construction (PaDiM's random feature subset) and PatchCore's coreset.
        allow_random_backbone: use random weights when none are found (recorded as ``...:RANDOM``).
        backbone_file: a local timm state dict for the backbone.
        overrides: model settings, e.g. ``bank_budget=16384`` for PatchCore.
    """
    if name not in MODELS:
        raise ValueError(f"model {name!r} is not in the registry; choose one of {sorted(MODELS)}")
    if preset not in PRESETS:
        raise ValueError(f"preset {preset!r}: choose one of {PRESETS}")
    spec = MODELS[name]
    backbone = check_backbone(name, backbone)
    torch.manual_seed(seed)
    if name == "efficient_ad":
        size = backbone.removeprefix("pdn_")
        weights = teacher_weights(size, allow_random=allow_random_backbone)
        model, settings = _efficient_ad(weights, image_size, seed, model_size=size, **overrides)
    else:
        with use_backbone_weights(
            backbone, local_file=backbone_file, allow_random=allow_random_backbone
        ) as weights:
            model, settings = _BUILDERS[name](
                backbone, spec.layers[backbone], not weights.is_random, image_size, seed, **overrides
            )
        normalise_like(model, weights.mean, weights.std)
    trainer_kwargs = dict(spec.training.get(preset, {}))
    settings = {"layers": list(spec.layers[backbone]), **settings, **trainer_kwargs}
    if name != "efficient_ad":  # the input normalisation its backbone's weights expect (``normalise_like``)
        settings["normalisation"] = {"mean": list(weights.mean), "std": list(weights.std)}
    return BuiltModel(model, weights, backbone, trainer_kwargs, spec.train_batch_size, settings)


def memory_bank_size(model: AnomalibModule) -> int | None:
    """Rows of PatchCore's memory bank after fitting (None for other models)."""
    bank = getattr(getattr(model, "model", None), "memory_bank", None)
    return int(bank.shape[0]) if isinstance(bank, torch.Tensor) and bank.ndim == 2 else None
