"""The baseline registry: every model builds offline with recorded weights; the fast ones fit and separate."""

from __future__ import annotations

import pytest

from tgad.assets import AssetError
from tgad.baselines.registry import MODELS, build_model, memory_bank_size


def test_registry_builds_every_model_offline():
    for name in MODELS:
        # the paper's ResNets and EfficientAd's teacher have no offline weights: random, explicitly allowed
        backbone = "resnet18" if name == "reverse_distillation" else None
        built = build_model(
            name, backbone=backbone, image_size=256, preset="tiny", allow_random_backbone=True
        )
        assert not built.model.post_processor and not built.model.evaluator, name  # raw outputs
        if built.backbone == "tf_efficientnet_lite0":
            assert built.weights.source in ("package", "cache") and not built.weights.is_random
        else:
            assert built.weights.is_random and built.weights.describe().endswith(":RANDOM")
        assert ("max_steps" in built.trainer_kwargs) == (
            name in ("cflow", "efficient_ad", "reverse_distillation")
        )
    assert build_model("efficient_ad", image_size=256, allow_random_backbone=True).train_batch_size == 1


def test_registry_refuses_what_cannot_work():
    with pytest.raises(ValueError, match="not in the registry"):
        build_model("patchcore2")
    with pytest.raises(ValueError, match="supports backbones"):
        build_model("reverse_distillation", backbone="tf_efficientnet_lite0")  # RD's decoder is ResNet-only
    with pytest.raises(ValueError, match="image_size >= 256"):
        build_model("efficient_ad", image_size=64, allow_random_backbone=True)
    with pytest.raises(AssetError, match="EfficientAd teacher"):
        build_model("efficient_ad", image_size=256)  # no teacher weights offline, random not allowed


def _fit(name, mvtec_root, tmp_path, **kwargs):
    from tgad.data import MVTecAD
    from tgad.evaluation.scoring import fit_and_score

    size = kwargs.pop("image_size", 64)
    built = build_model(name, image_size=size, preset="tiny", **kwargs)
    dm = MVTecAD(
        root=str(mvtec_root),
        category="widget",
        shots=2,
        image_size=size,
        train_batch_size=built.train_batch_size or 4,
        eval_batch_size=8,
    )
    dm.setup()
    return built, fit_and_score(built.model, dm, str(tmp_path), built.trainer_kwargs)


@pytest.mark.parametrize("name", ["patchcore", "padim"])
def test_fast_models_fit_and_separate(name, mvtec_root, tmp_path):
    built, scores = _fit(name, mvtec_root, tmp_path)
    assert scores.image_auroc == 1.0  # obvious red squares on smooth gradients
    assert scores.pixel_auroc > 0.9 and 0.0 <= scores.aupro <= 1.0 and scores.spro is None
    assert scores.peak_rss_mb > 100
    bank = memory_bank_size(built.model)
    assert (bank is not None and bank > 0) == (name == "patchcore")


@pytest.mark.slow
@pytest.mark.parametrize(
    "name,kwargs",
    [
        ("cflow", {"image_size": 128}),
        ("efficient_ad", {"image_size": 256, "allow_random_backbone": True}),
        ("reverse_distillation", {"backbone": "resnet18", "allow_random_backbone": True}),
    ],
)
def test_trained_models_fit_and_predict(name, kwargs, mvtec_root, tmp_path):
    built, scores = _fit(name, mvtec_root, tmp_path, **kwargs)
    if name == "efficient_ad":  # its map quantiles come from one validation pass on the shots
        assert all(float(v.detach()) != 0.0 for v in built.model.model.quantiles.values())
    assert (
        0.0 <= scores.image_auroc <= 1.0 and 0.0 <= scores.pixel_auroc <= 1.0 and 0.0 <= scores.aupro <= 1.0
    )
    assert scores.n_train == 2 and scores.n_test == 6
