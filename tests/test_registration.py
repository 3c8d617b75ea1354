"""Rigid registration of shots (tgad.features.registration) and its use in the k-shot variance target."""

from __future__ import annotations

import pytest
import torch
import torchvision.transforms.functional as TF

from tgad.features.registration import (
    aligned_stack,
    estimate_rigid,
    register_shots,
    rigid_theta,
    warp,
)
from tgad.models.variance_vqgan import VarianceVQGANModel, VQGANConfig
from tgad.models.variance_vqgan.loss import aligned_latents, cross_shot_spread


def _part(size: int = 256, seed: int = 1) -> torch.Tensor:
    """A structured, asymmetric part on a noisy background: a disc, a bar, a dot, a ring. (3, size, size)."""
    y, x = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
    img = torch.full((3, size, size), 0.1)
    img[0] += 0.7 * ((x + 0.2) ** 2 + (y - 0.1) ** 2 < 0.25).float()
    img[1] += 0.8 * ((x.abs() < 0.5) & ((y - 0.3).abs() < 0.08)).float()
    img[2] += 0.8 * ((x - 0.3) ** 2 + (y + 0.35) ** 2 < 0.04).float()
    r = ((x + 0.45) ** 2 + (y + 0.4) ** 2).sqrt()
    img += 0.5 * ((r > 0.1) & (r < 0.16)).float()
    img += 0.05 * torch.rand(3, size, size, generator=torch.Generator().manual_seed(seed))
    return img.clamp(0, 1)


def _turned(img: torch.Tensor, angle: float, shift: tuple[float, float]) -> torch.Tensor:
    """``img`` turned counter-clockwise (as seen) by ``angle`` about its centre, then moved by ``shift``.
    Made with torchvision (whose ``affine`` turns clockwise), independently of the module under test."""
    return TF.affine(
        img,
        angle=-angle,
        translate=list(shift),
        scale=1.0,
        shear=[0.0],
        interpolation=TF.InterpolationMode.BILINEAR,
    )


@pytest.mark.parametrize(("angle", "shift"), [(30.0, (12.0, -8.0)), (-120.0, (-5.0, 15.0))])
def test_estimate_rigid_recovers_a_known_rotation_and_shift(angle, shift):
    ref = _part()
    moving = _turned(ref, angle, shift)
    fit = estimate_rigid(ref, moving)
    assert abs(fit.angle - angle) < 2.0, fit
    assert abs(fit.shift[0] - shift[0]) < 2.0 and abs(fit.shift[1] - shift[1]) < 2.0, fit
    assert fit.score > 0.8 and fit.identity_score < 0.5, fit
    # warping the moving image with the fit puts it back onto the reference, inside the covered region
    out = warp(moving[None], rigid_theta(fit.angle, fit.shift, 256, 256)[None])
    covered = out.valid[0, 0].bool()
    assert 0.5 < float(covered.float().mean()) < 1.0  # the corners the turn uncovered are marked
    err = (out.images[0] - ref).abs().mean(0)[covered].mean()
    assert float(err) < 0.25 * float((moving - ref).abs().mean())


def test_auto_keeps_the_identity_for_aligned_shots_and_registers_turned_ones():
    ref = _part()
    aligned = (ref * 1.05 + 0.01 * torch.randn(ref.shape, generator=torch.Generator().manual_seed(2))).clamp(
        0, 1
    )
    turned = _turned(_part(seed=3), 30.0, (12.0, -8.0))
    records = register_shots(torch.stack([ref, aligned, turned]), "auto")
    assert [r.registered for r in records] == [False, False, True]
    assert abs(records[1].angle) < 1.0 and abs(records[2].angle - 30.0) < 2.0
    assert records[2].as_dict()["shift"] == [
        pytest.approx(records[2].shift[0], abs=1e-3),
        pytest.approx(records[2].shift[1], abs=1e-3),
    ]
    assert [r.registered for r in register_shots(torch.stack([ref, aligned]), "rigid")] == [False, True]
    nothing = register_shots(torch.stack([ref, turned]), "none")
    assert not any(r.registered for r in nothing)


def test_a_bad_mode_is_a_one_line_error_naming_the_setting():
    with pytest.raises(ValueError, match="register_shots"):
        register_shots(torch.rand(2, 3, 32, 32), "rigidd")
    with pytest.raises(ValueError, match="register_shots"):
        VQGANConfig.preset("tiny", register_shots="yes")


def test_aligned_stack_maps_every_shot_into_every_frame():
    ref = _part(128)
    turned = _turned(ref, 90.0, (0.0, 0.0))
    records = register_shots(torch.stack([ref, turned]), "rigid")
    stack = aligned_stack(torch.stack([ref, turned]), records)
    assert stack.images.shape == (2, 2, 3, 128, 128) and stack.valid.shape == (2, 2, 1, 128, 128)
    assert torch.equal(stack.images[0, 0], ref) and torch.equal(stack.images[1, 1], turned)
    assert bool((stack.valid[0, 0] == 1).all())
    for frame, other, own in ((0, 1, ref), (1, 0, turned)):  # shot `other` seen at shot `frame`'s positions
        covered = stack.valid[frame, other, 0].bool()
        err = (stack.images[frame, other] - own).abs().mean(0)[covered].mean()
        assert float(err) < 0.03, (frame, other, float(err))


def _encoder(size: int = 64) -> tuple[VarianceVQGANModel, int]:
    torch.manual_seed(0)
    cfg = VQGANConfig.preset("tiny")
    return VarianceVQGANModel(cfg).eval(), cfg.downsample


def test_registration_removes_the_pose_from_the_cross_shot_spread():
    """A turned copy of a shot differs from it everywhere at the same position, but not at corresponding
    ones: the spread across the two shots is large without registration and ~0 with it."""
    model, f = _encoder()
    shots = torch.stack([_part(64), _turned(_part(64), 90.0, (0.0, 0.0))])
    encode = lambda images: model.encoder(images * 2 - 1).z_e  # noqa: E731
    with torch.no_grad():
        clean = encode(shots)  # (2, d, 16, 16)
    plain = cross_shot_spread(clean)
    records = register_shots(shots, "auto")
    assert records[1].registered and abs(abs(records[1].angle) - 90.0) < 2.0
    stack = aligned_stack(shots, records)
    companions = torch.cat([stack.images, stack.valid], 2).flatten(1, 2)  # (2, 2*4, 64, 64)
    registered = cross_shot_spread(clean, aligned_latents(encode, clean, companions, f))
    assert registered.shape == plain.shape
    assert float(registered.mean()) < 0.05 * float(plain.mean())


def test_a_changed_register_shots_setting_is_another_cached_generator_fit(tmp_path):
    from types import SimpleNamespace

    from tgad.generate.artifact import ChosenShots, ExtraSetRequest
    from tgad.generate.fit_cache import fit_cache_file
    from tgad.hardware import Hardware
    from tgad.recipe import Recipe

    shots = [tmp_path / "a.png", tmp_path / "b.png"]
    for i, shot in enumerate(shots):
        shot.write_bytes(bytes([i]))
    chosen = ChosenShots("mvtec", "screw", tmp_path, shots, ["a", "b"])

    def fit_file(**vqgan):
        request = ExtraSetRequest(chosen, 0, 4, Recipe.build("cpu", vqgan=vqgan), Hardware("cpu"))
        return fit_cache_file(tmp_path, request.arguments, SimpleNamespace(sha256="0" * 64))

    plain, none = fit_file(), fit_file(register_shots="none")
    assert plain != none and plain == fit_file()
