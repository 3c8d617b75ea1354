"""Issue 24 (rows in seconds): the blocked nearest-patch search gives anomalib's answers, and the cached
synthetic-defect validator scores extra sets exactly as a freshly computed one."""

from __future__ import annotations

import pytest
import torch
from anomalib.models.image.patchcore.torch_model import PatchcoreModel

from tgad.baselines.search import nearest_patches, use_fast_search

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _reference(queries: torch.Tensor, bank: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """anomalib's full-matrix search."""
    return PatchcoreModel.euclidean_dist(queries, bank).min(1)


@pytest.mark.parametrize(("n", "rows", "block"), [(300, 5000, 4096), (2500, 3000, 700), (7, 10, 3)])
def test_the_blocked_search_finds_anomalibs_nearest_rows(n, rows, block):
    generator = torch.Generator().manual_seed(n)
    bank = torch.randn(rows, 48, generator=generator) * 3 + 1
    queries = torch.randn(n, 48, generator=generator) * 3 + 1
    queries[:5] = bank[[0, 1, rows // 2, rows - 2, rows - 1]]  # exact members: distance ~0
    distances, where = nearest_patches(queries, bank, block=block)
    ref_distances, ref_where = _reference(queries, bank)
    assert distances.shape == where.shape == (n,)
    # squared distances: both expand |q|^2 - 2 q.b + |b|^2, whose float rounding is ~1e-7 |q|^2 (~500 here)
    torch.testing.assert_close(distances.square(), ref_distances.square(), rtol=1e-5, atol=1e-3)
    assert torch.equal(where, ref_where)
    assert where[:5].tolist() == [0, 1, rows // 2, rows - 2, rows - 1]


def test_ties_keep_the_lowest_bank_row_and_an_empty_bank_is_refused():
    bank = torch.tensor([[5.0, 5.0], [1.0, 0.0], [9.0, 9.0], [1.0, 0.0], [1.0, 0.0]])
    distances, where = nearest_patches(torch.tensor([[1.0, 0.0], [1.2, 0.0]]), bank, block=2)
    assert where.tolist() == [1, 1]  # rows 1, 3 and 4 tie; 3 and 4 lie in later blocks
    torch.testing.assert_close(distances.square(), torch.tensor([0.0, 0.04]), atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="memory bank is empty"):
        nearest_patches(torch.ones(2, 2), torch.empty(0, 2))


def test_patchcore_with_the_blocked_search_and_separable_blur_scores_and_maps_as_anomalib():
    from anomalib.models import Patchcore

    from tgad.baselines.patchcore import use_separable_blur

    torch.manual_seed(0)
    stock = Patchcore(backbone="resnet18", layers=["layer2", "layer3"], pre_trained=False, num_neighbors=9)
    fast = Patchcore(backbone="resnet18", layers=["layer2", "layer3"], pre_trained=False)
    fast = use_separable_blur(use_fast_search(fast))
    fast.model.load_state_dict(stock.model.state_dict(), strict=False)
    images = torch.rand(6, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    for model in (stock, fast):
        model.model.train()
        model.model(images[:4])  # 4 training images -> 4 x 8 x 8 patches in the bank
        model.model.memory_bank = torch.vstack(model.model.embedding_store)
        model.model.eval()
    torch.testing.assert_close(fast.model.memory_bank, stock.model.memory_bank)
    with torch.no_grad():
        got, want = fast.model(images[4:]), stock.model(images[4:])
    torch.testing.assert_close(got.pred_score, want.pred_score, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(got.anomaly_map, want.anomaly_map, rtol=1e-5, atol=1e-5)


def test_the_cached_validator_scores_extra_sets_as_a_recomputed_one(tmp_path):
    from tests.helpers.benchmark_stub import row_datamodule
    from tests.helpers.datasets import write_mvtec
    from tgad.benchmark.defect_check import DefectCheck
    from tgad.benchmark.plan import BenchmarkConfig, Row
    from tgad.evaluation.validation import ValidationSettings

    write_mvtec(tmp_path / "data", n_train=14, size=64)
    config = BenchmarkConfig.of(
        dataset="mvtec",
        root=str(tmp_path / "data"),
        categories=("widget",),
        preset="tiny",
        results_dir=str(tmp_path / "results"),
        wandb=False,
    )
    side = config.detectors.image_size
    row = Row("mvtec", "widget", "patchcore", "tf_efficientnet_lite0", 1, 0, "shots", "", 0, "tiny", side)
    settings = ValidationSettings(n_normals=6)
    dm = row_datamodule(row, config)
    computed = DefectCheck(config, settings)._validator(row, dm)
    path = DefectCheck(config, settings).state_path("widget", 1, 0)
    assert path.is_file()
    stamp = path.stat().st_mtime_ns
    loaded = DefectCheck(config, settings)._validator(row, dm)  # a later command: the state comes from disk
    assert path.stat().st_mtime_ns == stamp and loaded.defects is None
    extra = torch.rand(3, 3, side, side, generator=torch.Generator().manual_seed(2))
    assert loaded.evaluate(None) == computed.evaluate(None)
    assert loaded.evaluate(extra) == computed.evaluate(extra)
    other_settings = ValidationSettings(n_normals=5)  # another key: recomputed
    other = DefectCheck(config, other_settings)._validator(row, dm)
    assert other.normal_features.shape[0] == 5 and path.stat().st_mtime_ns != stamp
    path.write_bytes(b"not a torch file")  # damaged: recomputed, not an error
    again = DefectCheck(config, settings)._validator(row, dm)
    assert again.evaluate(extra) == computed.evaluate(extra)


def test_dropping_the_blocks_after_the_last_map_keeps_the_maps():
    import timm

    from tgad.assets.backbones import drop_unused_blocks
    from tgad.baselines.patchcore import SeparableBlur, make_patchcore

    torch.manual_seed(0)
    net = timm.create_model("tf_efficientnet_lite0", pretrained=False, features_only=True, out_indices=(2, 3))
    images = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        want = net.eval()(images)
        assert len(drop_unused_blocks(net).blocks) == 5  # blocks.0-4: blocks.4 gives the last map
        got = net(images)
    assert len(got) == 2 and all(torch.equal(g, w) for g, w in zip(got, want, strict=True))
    resnet = timm.create_model("resnet18", pretrained=False, features_only=True, out_indices=(2, 3))
    keys = set(resnet.state_dict())
    assert drop_unused_blocks(resnet) is resnet and set(resnet.state_dict()) == keys  # not an EfficientNet
    patchcore = make_patchcore("tf_efficientnet_lite0", ["blocks.2", "blocks.4"], False, image_size=64)
    assert len(patchcore.model.feature_extractor.feature_extractor.blocks) == 5
    assert isinstance(patchcore.model.anomaly_map_generator.blur, SeparableBlur)


def test_the_separable_blur_is_anomalibs_blur():
    from anomalib.models.components.filters import GaussianBlur2d

    from tgad.baselines.patchcore import SeparableBlur

    maps = torch.rand(3, 1, 70, 50, generator=torch.Generator().manual_seed(4)) * 40
    maps[0, 0, 10:20, 5:9] += 100  # a sharp blob near the border: the reflect padding matters
    blur = GaussianBlur2d(sigma=4, channels=1, kernel_size=33)
    got, want = SeparableBlur(blur)(maps), blur(maps)
    assert got.shape == want.shape == maps.shape
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-4)


def test_pixel_auroc_from_one_sort_equals_torchmetrics_on_ranks():
    from torchmetrics.functional.classification import binary_auroc

    from tgad.evaluation.auroc import pixel_auroc, rank_normalise

    generator = torch.Generator().manual_seed(3)
    masks = torch.rand(4, 40, 50, generator=generator) < 0.1
    maps = (torch.randn(4, 40, 50, generator=generator) + 1.5 * masks).mul(8).round()  # many ties
    want = float(binary_auroc(rank_normalise(maps.reshape(-1)), masks.reshape(-1).long()))
    assert 0.8 < want < 0.95
    assert pixel_auroc(maps, masks) == pytest.approx(want, abs=1e-6)  # torchmetrics: float32
    assert pixel_auroc(masks.float() * 3.0, masks) == 1.0 and pixel_auroc(-masks.float(), masks) == 0.0
