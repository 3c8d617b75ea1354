"""VarianceVQGAN, tiny preset, offline: gradients, quantiser, sampling contract, augmentation, config."""

from __future__ import annotations

import copy
import dataclasses
import json

import pytest
import timm
import torch

from tgad.models.presets import SettingError, from_plain
from tgad.models.variance_vqgan import (
    PRESETS,
    AugmentConfig,
    PatchDiscriminator,
    VarianceVQGANModel,
    VQGANConfig,
    VQGANTraining,
    make_views,
)
from tgad.models.variance_vqgan.loss import (
    AlignedLatents,
    PerceptualLoss,
    cross_shot_spread,
    generator_loss,
    hinge_d_loss,
    variance_target,
    view_variance_nll,
)
from tgad.models.variance_vqgan.torch_model import VectorQuantizer


def _images(n: int = 2, size: int = 32, seed: int = 0) -> torch.Tensor:
    """Smooth colour gradients with a little texture: real structure for the tiny nets to encode."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, size), torch.linspace(0, 1, size), indexing="ij")
    base = torch.stack([0.3 + 0.4 * xx, 0.5 - 0.2 * yy, 0.4 + 0.2 * xx * yy])  # (3, H, W)
    return (base + 0.1 * torch.rand(n, 3, size, size, generator=g)).clamp(0, 1)


@pytest.fixture
def model() -> VarianceVQGANModel:
    torch.manual_seed(0)
    m = VarianceVQGANModel(VQGANConfig.preset("tiny"))
    m.train()
    m(_images(4))  # one training forward initialises the codebook from data
    return m.eval()


def test_every_parameter_gets_a_gradient():
    torch.manual_seed(0)
    cfg = VQGANConfig.preset("tiny")
    model, disc = VarianceVQGANModel(cfg), PatchDiscriminator(cfg.disc_channels, cfg.disc_layers)
    perceptual = PerceptualLoss(timm.create_model("resnet10t", pretrained=False, features_only=True))
    x = make_views(_images(2), cfg.training.views).flatten(0, 1)  # (2*V, 3, 32, 32)
    out = model(x)
    losses = generator_loss(
        x,
        out,
        cfg.training.views,
        model.decoder.conv_out.weight,
        perceptual=perceptual,
        logits_fake=disc(out.reconstruction),
    )
    d_loss = hinge_d_loss(disc(x), disc(out.reconstruction.detach()))
    (losses.total + d_loss).backward()
    assert all(torch.isfinite(v) for v in losses)
    for name, p in [*model.named_parameters(), *disc.named_parameters()]:
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert all(p.grad is None for p in perceptual.parameters()), "the perceptual net must stay frozen"


def test_quantizer_round_trips_its_codebook():
    q = VectorQuantizer(VQGANConfig.preset("tiny")).eval()
    z = q.codebook.T.reshape(1, q.dim, q.num_codes, 1)  # every code once, as a (1, d, K, 1) latent map
    out = q(z)
    assert torch.equal(out.indices.flatten(), torch.arange(q.num_codes))
    assert torch.equal(out.quantized, z)
    assert torch.equal(q.lookup(out.indices), z)
    assert out.commit_loss == 0


def test_quantizer_restarts_dead_codes():
    """A book far from the data: without restarts one code takes every latent; with them most codes live."""

    def codes_used(threshold: float) -> int:
        q = VectorQuantizer(VQGANConfig.preset("tiny", dead_code_threshold=threshold)).train()
        q.codebook.mul_(0.1).add_(100.0)  # near-identical codes far away: the same one is always nearest
        q.initialised.fill_(True)  # skip the data-driven init: only the restarts can help
        q.cluster_size.fill_(0.1)  # consistent EMA state of a barely used book
        q.code_sum.copy_(q.codebook * 0.1)
        g = torch.Generator().manual_seed(0)
        for _ in range(20):
            q(torch.randn(4, q.dim, 8, 8, generator=g))
        return q(torch.randn(4, q.dim, 8, 8, generator=g)).indices.unique().numel()

    assert codes_used(0.0) == 1
    assert codes_used(0.03) > 0.75 * VQGANConfig.preset("tiny").codebook_size


def test_sample_tau_zero_is_exact(model):
    x = _images(3)
    direct = model.sample(x, 4, tau=0.0, mode="direct")
    residual = model.sample(x, 4, tau=0.0, mode="residual")
    assert direct.images.shape == (3, 4, 3, 32, 32)
    assert torch.equal(direct.images, model.reconstruct(x).unsqueeze(1).expand_as(direct.images))
    assert torch.equal(residual.images, x.unsqueeze(1).expand_as(residual.images))
    assert (residual.changed == 0).all()


def test_sample_is_reproducible_and_patch_fraction_limits_changes(model):
    x = _images(1)
    a = model.sample(x, 4, tau=2.0, generator=torch.Generator().manual_seed(3))
    b = model.sample(x, 4, tau=2.0, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a.images, b.images)
    few = model.sample(x, 8, tau=4.0, patch_fraction=0.25, generator=torch.Generator().manual_seed(0))
    assert 0 < few.changed.max() <= 0.25


def test_sample_diversity_grows_with_tau(model):
    x = _images(1)
    spreads = []
    for tau in (0.0, 0.5, 1.0, 2.0, 4.0):
        s = model.sample(x, 12, tau=tau, mode="direct", generator=torch.Generator().manual_seed(0)).images
        spreads.append(float(s.std(dim=1).mean()))  # spread across the 12 samples of each image
    assert spreads[0] == 0.0
    assert all(b > a for a, b in zip(spreads[:-1], spreads[1:], strict=True)), spreads


def test_view_variance_nll_is_minimised_by_the_true_spread():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(2 * 64, 1, 1, 1, generator=g) * 0.5  # 2 shots x 64 views of one latent coordinate
    z[64:] += 3.0  # the second shot sits elsewhere; without cross-shot term only the within spread counts
    grid = torch.linspace(-4, 1, 51)
    losses = [
        float(view_variance_nll(torch.full_like(z, lv), z, views=64, cross_shot_weight=0.0)) for lv in grid
    ]
    best = float(grid[int(torch.tensor(losses).argmin())])
    assert abs(best - torch.log(torch.tensor(0.25))) < 0.25
    with_cross = [float(view_variance_nll(torch.full_like(z, lv), z, views=64)) for lv in grid]
    assert float(grid[int(torch.tensor(with_cross).argmin())]) > best + 1.0  # shots 3 apart add ~4.5 variance


def test_make_views_shapes_and_clean_first_view():
    shots = _images(2, size=48)
    views = make_views(shots, 4, crop_size=32, generator=torch.Generator().manual_seed(0))
    assert views.shape == (2, 4, 3, 32, 32)
    # One crop window for all shots and views: find it from view 0 of shot 0 and check shot 1 agrees.
    windows = shots[0].unfold(1, 32, 1).unfold(2, 32, 1)  # (3, 17, 17, 32, 32)
    err = (windows - views[0, 0][:, None, None]).abs().amax(dim=(0, 3, 4))
    top, left = divmod(int(err.argmin()), err.shape[1])
    assert err.min() == 0
    assert torch.equal(views[1, 0], shots[1][:, top : top + 32, left : left + 32])
    assert not torch.equal(views[0, 1], views[0, 0])
    still = make_views(shots, 3, cfg=AugmentConfig().scaled(0.0))
    assert torch.equal(still[:, 1], still[:, 0])


def test_config_presets_and_errors():
    tiny, cpu = VQGANConfig.preset("tiny"), VQGANConfig.preset("cpu", codebook_size=64)
    assert tiny.downsample == 4 and cpu.downsample == 8 and cpu.codebook_size == 64
    paper = VarianceVQGANModel(VQGANConfig.preset("paper")).eval()
    assert paper.config.codebook_size <= 128 and paper.encode(torch.rand(1, 3, 32, 32)).logvar.shape == (
        1,
        64,
        4,
        4,
    )
    with pytest.raises(ValueError, match="unknown preset"):
        VQGANConfig.preset("huge")
    with pytest.raises(ValueError, match="unknown field"):
        VQGANConfig.preset("tiny", codebok_size=3)
    with pytest.raises(ValueError, match="divisible"):
        VarianceVQGANModel(tiny).encode(torch.rand(1, 3, 30, 30))


def test_config_groups_keep_one_flat_name_per_setting():
    """The fit's settings sit in the groups ``training`` and ``loss``, yet each keeps the flat name users write:
    a preset override, ``override``, ``flat`` and ``from_plain`` (nested, as a checkpoint holds it now; flat, as
    one written before the groups holds it; or both) all give the same config."""
    tiny = VQGANConfig.preset("tiny", disc_start=3, commitment_beta=0.5, latent_dim=4)
    assert (tiny.training.disc_start, tiny.loss.commitment_beta, tiny.latent_dim) == (3, 0.5, 4)
    assert tiny.training.learning_rate == PRESETS["tiny"].training.learning_rate == 2e-3  # the rest stays
    assert tiny == PRESETS["tiny"].override(disc_start=3, commitment_beta=0.5, latent_dim=4)
    flat = tiny.flat()
    assert len(flat) == 22 and flat["disc_start"] == 3 and not {"training", "loss"} & set(flat)
    assert from_plain(VQGANConfig, json.loads(json.dumps(dataclasses.asdict(tiny)))) == tiny  # lists: tuples
    assert from_plain(VQGANConfig, json.loads(json.dumps(flat))) == tiny
    mixed = {"channel_mult": [1, 2], "training": {"views": 2}, "disc_start": 9}
    assert from_plain(VQGANConfig, mixed) == VQGANConfig(
        channel_mult=(1, 2), training=VQGANTraining(views=2, disc_start=9)
    )
    with pytest.raises(
        ValueError, match=r"VQGANConfig: unknown field\(s\) \['disc_stat'\]; see tgad/models/var"
    ):
        PRESETS["tiny"].override(disc_stat=1)
    with pytest.raises(SettingError, match="learning_rate=0.0 is out of range"):
        VQGANConfig.preset("tiny", learning_rate=0.0)


@pytest.mark.parametrize("jitter", [0.0, 1.0])
def test_k_shot_variance_target_grows_when_shots_differ_and_is_zero_for_copies(model, jitter):
    """The cross-shot part of the target, on the tiny encoder's real latents of 4 shots' views: exactly 0 for
    copies (with or without view jitter: it compares the clean views), and growing with how far the shots
    differ. With jitter off the whole target of copies is 0."""
    cfg = AugmentConfig().scaled(jitter)
    base = _images(1, seed=3)
    pattern = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(4)) - 0.5
    cross = []
    for delta in (0.0, 0.1, 0.3, 0.6):
        shots = torch.cat([base, (base + delta * pattern).clamp(0, 1)])  # (4, 3, 32, 32); delta 0: copies
        views = make_views(shots, 4, cfg=cfg, generator=torch.Generator().manual_seed(0))  # (4, 4, 3, 32, 32)
        with torch.no_grad():
            z = model.encode(views.flatten(0, 1)).z_e.view(4, 4, -1, 8, 8)  # (k, V, d, h, w)
        target = variance_target(z, cross_shot_weight=1.0)
        alone = variance_target(z, cross_shot_weight=0.0)
        cross.append(float((target - alone).mean()))
        if delta == 0.0 and jitter == 0.0:
            assert float(target.abs().max()) == 0.0
    assert cross[0] == 0.0
    assert all(b > a for a, b in zip(cross[:-1], cross[1:], strict=True)), cross  # grows with the difference


def test_cross_shot_spread_masks_uncovered_positions():
    """Registered shots: a position covered by fewer than two shots has no spread; a covered one has the
    bias-corrected variance of the shots that cover it."""
    clean = torch.tensor([0.0, 2.0, 4.0]).view(3, 1, 1, 1).expand(3, 1, 1, 2).clone()  # (k, d, h, w)
    latents = clean[None].repeat(3, 1, 1, 1, 1)  # (3, 3, 1, 1, 2): every frame sees the same values
    valid = torch.ones(3, 3, 1, 1, 2)
    valid[0, 1:, :, :, 1] = 0  # frame 0, position 1: only shot 0 itself
    valid[1, 2, :, :, 0] = 0  # frame 1, position 0: shots 0 and 1
    spread = cross_shot_spread(clean, AlignedLatents(latents, valid))  # (3, 1, 1, 2)
    assert spread[0, 0, 0].tolist() == [4.0, 0.0]
    assert spread[1, 0, 0].tolist() == [2.0, 4.0]
    assert torch.allclose(cross_shot_spread(clean), torch.full((3, 1, 1, 2), 4.0))


def test_perceptual_loss_runs_only_the_blocks_it_reads_and_the_fit_backpropagates_through_its_images_only():
    """The fit's perceptual term: the targets' maps carry no graph and the unused Lite0 blocks are dropped, yet the
    loss and the reconstruction's gradient equal the one-batch computation over the full network."""
    torch.manual_seed(0)
    full = timm.create_model(
        "tf_efficientnet_lite0", pretrained=False, features_only=True, out_indices=(1, 2, 3)
    )
    full.eval().requires_grad_(False)
    loss = PerceptualLoss(copy.deepcopy(full))
    assert len(loss.backbone.blocks) < len(full.blocks)  # blocks after the stride-16 map are gone
    x, rec = torch.rand(3, 3, 64, 64), torch.rand(3, 3, 64, 64).requires_grad_(True)

    maps = full(torch.cat([x, rec]).sub(loss.mean).div(loss.std))  # the reference: one batch, every block
    reference = sum(
        (a - b).pow(2).sum(1).mean(dim=(1, 2))
        for a, b in (torch.nn.functional.normalize(m, dim=1).chunk(2) for m in maps)
    ).div(len(maps))
    (ref_grad,) = torch.autograd.grad(reference.mean(), rec)

    torch.testing.assert_close(loss.distance(x, rec), reference, rtol=1e-6, atol=1e-7)
    value = loss.to_fixed_targets(x, rec)
    (grad,) = torch.autograd.grad(value, rec)
    torch.testing.assert_close(value, reference.mean(), rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(grad, ref_grad, rtol=1e-5, atol=1e-8)
