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


# (image AUROC, pixel AUROC, AUPRO) on the seeded fixture (write_mvtec seed 0: 2 good and 4 defective test
# images; random encoders seeded by the registry), measured 2026-12-07 with one torch thread, and cflow, RD and
# AnomalyDINO again with two threads in another order: the runs agreed to 3e-7. The image AUROC moves in steps of 1/8 (2 x 4 pairs) and must
# match; the pixel metrics must stay within PIXEL_TOLERANCE, room for another CPU's float sums but far below
# what a changed model, layer, pre-processor or metric moves them by.
MEASURED = {
    "cflow": (1.0, 0.98836, 0.96120),
    "efficient_ad": (1.0, 0.90609, 0.89425),
    "reverse_distillation": (0.0, 0.57292, 0.01733),
    "anomaly_dino": (1.0, 0.93653, 0.78843),
}
PIXEL_TOLERANCE = 0.01


def _assert_measured(name, scores):
    image, pixel, region = MEASURED[name]
    assert scores.image_auroc == image, (name, scores)
    assert scores.pixel_auroc == pytest.approx(pixel, abs=PIXEL_TOLERANCE), (name, scores)
    assert scores.aupro == pytest.approx(region, abs=PIXEL_TOLERANCE), (name, scores)


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
    # the pre-processor normalises as the backbone's weights were trained (Lite0: 0.5, not ImageNet's)
    from torchvision.transforms.v2 import Normalize

    (norm,) = [t for t in built.model.pre_processor.transform.transforms if isinstance(t, Normalize)]
    assert tuple(norm.mean) == built.weights.mean and tuple(norm.std) == built.weights.std
    assert built.backbone != "tf_efficientnet_lite0" or built.weights.mean == (0.5, 0.5, 0.5)
    assert built.settings["normalisation"] == {"mean": list(norm.mean), "std": list(norm.std)}


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
    _assert_measured(name, scores)
    # every defective image scores above every good one; Reverse Distillation with a random ResNet-18 encoder
    # and the tiny preset's few steps ranks them exactly the other way (measured, held by its band above)
    assert scores.image_auroc == (0.0 if name == "reverse_distillation" else 1.0)
    assert scores.n_train == 2 and scores.n_test == 6


def test_anomaly_dino_builds_offline_only_with_allowed_random_or_given_weights(mvtec_root, tmp_path):
    """No DINOv2 weights exist offline: refused with a one-line how-to; random only when allowed (RANDOM,
    seeded); a local file is what the encoder loads; and it fits and scores the fixture."""
    import timm
    import torch

    with pytest.raises(AssetError, match="--backbone-weights"):
        build_model("anomaly_dino", image_size=28)
    built, scores = _fit("anomaly_dino", mvtec_root, tmp_path, image_size=28, allow_random_backbone=True)
    assert (
        built.weights.describe() == "vit_small_patch14_dinov2:RANDOM" and built.backbone == built.weights.name
    )
    assert scores.n_train == 2 and scores.n_test == 6 and built.settings["num_neighbours"] == 1
    _assert_measured("anomaly_dino", scores)
    assert scores.image_auroc == 1.0  # every defective image above every good one, even with random weights
    again = build_model("anomaly_dino", image_size=28, allow_random_backbone=True)
    first = next(iter(built.model.model.feature_encoder.state_dict().values()))
    assert torch.equal(first, next(iter(again.model.model.feature_encoder.state_dict().values())))  # seeded

    torch.manual_seed(7)
    file = tmp_path / "dinov2.pth"
    reference = timm.create_model("vit_small_patch14_dinov2", pretrained=False).state_dict()
    torch.save(reference, file)
    local = build_model("anomaly_dino", image_size=28, backbone_file=str(file))
    assert local.weights.source == "local_file" and not local.weights.is_random
    encoder = local.model.model.feature_encoder.feature_extractor.state_dict()
    assert torch.equal(encoder["patch_embed.proj.weight"], reference["patch_embed.proj.weight"])


def test_benchmark_refuses_random_detector_weights_unless_allowed(mvtec_root, tmp_path, capsys):
    from tgad.benchmark.results import ResultsCSV
    from tgad.cli.main import main

    argv = ["benchmark", "--dataset", "mvtec", "--root", str(mvtec_root), "--categories", "widget",
            "--preset", "tiny", "--models", "anomaly_dino", "--conditions", "shots", "--image-size", "28",
            "--results-dir", str(tmp_path / "results"), "--no-wandb", "--no-progress"]  # fmt: skip
    assert main(argv) == 2
    assert "no pretrained weights for backbone vit_small_patch14_dinov2" in capsys.readouterr().err
    assert not (tmp_path / "results" / "mvtec" / "tiny" / "results.csv").exists()  # refused before any row
    assert main([*argv, "--allow-random-backbone"]) == 0
    out = tmp_path / "results" / "mvtec" / "tiny"
    (row,) = ResultsCSV(out / "results.csv").rows()
    assert row["model"] == "anomaly_dino" and row["backbone_weights"] == "vit_small_patch14_dinov2:RANDOM"
    assert "RANDOM detector weights" in (out / "summary.md").read_text()


def test_padim_with_one_training_image_scores_finite_and_separates(mvtec_root, tmp_path):
    """anomalib's PaDiM covariance (ddof = 1) is 0/0 for one training image: NaN inverse, NaN scores, and an
    AUROC that read 0.6471 for every 1-shot transistor row whichever the shot (issue 23). tgad's PaDiM uses the
    regulariser alone there, so the scores are finite, the defects still separate, and two shots are untouched."""
    import torch
    from anomalib.models.components.stats import MultiVariateGaussian

    from tgad.baselines.padim import REGULARISER
    from tgad.data import MVTecAD
    from tgad.evaluation.scoring import fit_and_score

    _, inverse = MultiVariateGaussian().fit(torch.rand(1, 8, 4, 4))
    assert torch.isnan(inverse).all()  # the defect this guards against, in anomalib itself
    built = build_model("padim", image_size=64, preset="tiny")
    dm = MVTecAD(root=str(mvtec_root), category="widget", shots=1, image_size=64, eval_batch_size=8)
    dm.setup()
    scores = fit_and_score(built.model, dm, str(tmp_path), built.trainer_kwargs)
    assert scores.n_train == 1 and scores.image_auroc == 1.0 and scores.pixel_auroc > 0.9
    inverse = built.model.model.gaussian.inv_covariance  # (H*W, C, C)
    assert torch.isfinite(inverse).all() and torch.allclose(
        inverse[0].diagonal(), torch.tensor(1 / REGULARISER)
    )
