"""Generator levers and overrides reach the model: block target patches, nearest-code resampling, tau (the
samples and the ExtraSet key change), ``--set`` parsing, tau calibration and the ``defect_safe`` scorer inside
the Integrator's rounds."""

from __future__ import annotations

import copy

import pytest
import torch

from tests.test_integrator import _integrator, fitted, judges  # noqa: F401  (module fixtures)
from tgad.cli.overrides import parse_overrides
from tgad.models.integrator.calibration import TAU_LADDER
from tgad.models.variance_vqgan.sampling import self_similar_partners, target_mask

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_target_mask_blocks_cover_the_fraction_in_squares():
    g = torch.Generator().manual_seed(0)
    scattered = target_mask(64, 8, 8, 0.25, 1, g)
    assert scattered.shape == (64, 1, 8, 8) and torch.all(scattered.sum((1, 2, 3)) == 16)
    blocks = target_mask(64, 8, 8, 0.25, 4, g)  # a 2 x 2 grid of 4 x 4 cells: one cell per sample
    assert torch.all(blocks.sum((1, 2, 3)) == 16)
    for mask in blocks[:, 0]:
        rows, cols = torch.nonzero(mask, as_tuple=True)
        assert rows.max() - rows.min() == 3 and cols.max() - cols.min() == 3  # one contiguous square
        assert int(rows.min()) % 4 == 0 and int(cols.min()) % 4 == 0
    assert torch.all(target_mask(3, 5, 5, 1.0, 2, g) == 1) and torch.all(target_mask(3, 5, 5, 0.0, 1, g) == 0)


def test_code_neighbors_and_blocks_change_the_samples(fitted):  # noqa: F811
    model, shot, _ = fitted
    net = model.model

    def draw(**kwargs):
        return net.sample(shot, 6, tau=1.0, generator=torch.Generator().manual_seed(3), **kwargs)

    base, resampled = draw(), draw(code_neighbors=4)
    assert not torch.equal(base.indices, resampled.indices)
    assert (resampled.changed >= base.changed).float().mean() > 0.5  # more positions leave the shot's code
    z = torch.randn(2, net.quantizer.dim, 4, 4)
    assert torch.equal(net.quantizer.nearest_k(z, 1), net.quantizer.nearest(z))
    top3 = net.quantizer.nearest_k(z, 3, torch.Generator().manual_seed(0))  # always among the 3 nearest
    flat = z.permute(0, 2, 3, 1).reshape(-1, net.quantizer.dim)
    ranks = torch.cdist(flat, net.quantizer.codebook).argsort(1)[:, :3]
    assert (ranks == top3.reshape(-1, 1)).any(1).all()
    blocked = draw(patch_fraction=0.25, block=2)
    assert blocked.images.shape == base.images.shape


def test_self_similar_partners_stay_in_their_region_and_leave_their_neighbourhood():
    """A latent map of two regions (a flat background, a textured half): every partner is among the k nearest
    positions of its own region, never itself nor a +-1 neighbour."""
    g = torch.Generator().manual_seed(0)
    z = torch.randn(1, 4, 8, 8, generator=g) * 0.1
    z[..., 4:] += 5.0  # columns 4-7: another structure
    partners = self_similar_partners(z, 3, n=5, generator=g)  # (5, 64)
    assert partners.shape == (5, 64)
    own_half = (torch.arange(64) % 8 >= 4)[None].expand(5, -1)
    assert torch.equal(partners % 8 >= 4, own_half)
    rows, cols = torch.arange(64) // 8, torch.arange(64) % 8
    assert ((rows[partners] - rows).abs().maximum((cols[partners] - cols).abs()) > 1).all()
    assert len({tuple(p.tolist()) for p in partners}) > 1  # drawn at random per sample


def test_self_similar_samples_reuse_the_shots_own_codes(fitted):  # noqa: F811
    model, shot, _ = fitted
    net = model.model

    def draw(**kwargs):
        return net.sample(shot, 6, tau=0.0, generator=torch.Generator().manual_seed(3), **kwargs)

    still, moved = draw(), draw(self_similar=4, patch_fraction=0.25)
    assert torch.equal(still.images[0], shot.expand(6, -1, -1, -1))  # tau 0 without the lever: the shot
    assert (moved.changed > 0).all() and not torch.equal(moved.images, still.images)
    shot_codes = set(net.encode(shot).indices.unique().tolist())
    assert set(moved.indices.unique().tolist()) <= shot_codes  # moved structures, no invented code


def test_overrides_reach_the_integrator_samples(fitted, judges):  # noqa: F811
    model, shot, _ = fitted
    quiet = _integrator(judges, model.model, tau=0.0)
    loud = _integrator(judges, model.model, tau=3.0)
    assert quiet.tau == 0.0 and loud.tau == 3.0
    same = quiet._draw(shot, 4, 0).images
    assert torch.equal(same, shot.expand(4, -1, -1, -1).mul(255).round().div(255))  # residual tau 0: the shot
    assert not torch.equal(loud._draw(shot, 4, 0).images, same)


def test_overrides_change_the_extra_set_key(tmp_path):
    from tests.helpers.datasets import write_mvtec
    from tgad.benchmark.extra_sets import extra_set_request
    from tgad.benchmark.plan import BenchmarkConfig
    from tgad.data import MVTecAD

    write_mvtec(tmp_path / "data")
    dm = MVTecAD(root=str(tmp_path / "data"), category="widget", shots=1, shot_seed=0, image_size=32)
    dm.setup()

    def request(**kwargs):
        config = BenchmarkConfig.of(dataset="mvtec", categories=("widget",), preset="tiny", **kwargs)
        return extra_set_request(config, "tgad", dm, 1, 0, "defect_safe")

    plain, tau, again = request(), request(integrator_overrides={"tau": 2.0}), request()
    assert plain == again and plain[0] != tau[0] and plain[1] != tau[1]
    assert request(vqgan_iterations=7)[0] not in (plain[0], tau[0])


def test_set_overrides_are_typed_and_checked():
    assert parse_overrides(["tau=2", "calibrate_tau=true", "scorer=defect_safe", "target_block=2"]) == {
        "tau": 2.0,
        "calibrate_tau": True,
        "scorer": "defect_safe",
        "target_block": 2,
    }
    with pytest.raises(ValueError, match="'taus' is not a generator setting"):
        parse_overrides(["taus=2"])
    with pytest.raises(ValueError, match="KEY=VALUE"):
        parse_overrides(["tau"])


def test_defect_safe_rounds_calibrate_tau_and_guide_the_update(fitted, judges):  # noqa: F811
    model, shot, _ = fitted
    module = _integrator(judges, copy.deepcopy(model.model), scorer="defect_safe", calibrate_tau=True)
    module.config = module.config.override(update_steps=1)
    record = module.run_round(shot)
    assert record.scorer == "defect_safe"
    assert {"novelty", "implausible", "defect_cover", "defect_safe"} <= set(record.parts)
    assert record.scores == pytest.approx(record.parts["defect_safe"])
    ladder = [r["tau"] for r in module.tau_calibration]
    assert ladder == sorted(ladder) and set(ladder) <= set(TAU_LADDER) and module.tau in ladder
    limit = module.config.calibration.max_defect_cover
    assert all(r["defect_cover"] <= limit for r in module.tau_calibration if r["tau"] <= module.tau)
    assert record.losses["guidance"] != 0.0  # -score of fresh samples reached the update
    assert "novelty" in module.provenance["scorer"]["formula"]


@pytest.mark.parametrize(
    ("pair", "message"),
    [
        ("tau=abc", "tau takes a float"),
        ("rounds=1.5", "rounds takes an int"),
        ("keep_fraction=0", "keep_fraction"),
    ],
)
def test_bad_set_values_are_one_line_errors_before_any_compute(tmp_path, capsys, pair, message):
    from tests.helpers.datasets import write_mvtec
    from tgad.cli.main import main

    write_mvtec(tmp_path / "data")
    argv = [
        "generate",
        "--dataset",
        "mvtec",
        "--root",
        str(tmp_path / "data"),
        "--category",
        "widget",
        "--preset",
        "tiny",
        "--out",
        str(tmp_path / "out"),
        "--allow-random-clip",
        "--set",
        pair,
    ]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--set" in err and message in err
    assert not (tmp_path / "out").exists()
