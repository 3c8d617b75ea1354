"""Issue "generated normals that earn their place" on real computations with the offline ImageNet backbone: the
fair PatchCore bank rule, the synthetic-defect validation moving the right way, ``defect_safe`` ranking, and
selection among candidates dropping what hides synthetic defects of the shot."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from tests.test_scorers import _photo  # (3, H, W) from scikit-image's bundled photographs
from tgad.evaluation.validation import (
    MIN_HELD_OUT,
    ExtraSetValidator,
    ValidationSettings,
    held_out_names,
)
from tgad.features.patches import detector_features
from tgad.features.synthetic_defects import METHOD_KINDS, VALIDATION_KINDS, make_defects
from tgad.generate.select import SelectConfig, select_candidates
from tgad.models.integrator.calibration import TAU_LADDER, calibrate_tau
from tgad.models.integrator.defect_safe import DefectSafe
from tgad.models.integrator.scorers import view_bank

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _crops(photo: torch.Tensor, corners, side: int = 192, size: int = 96) -> torch.Tensor:
    windows = [photo[None, :, t : t + side, left : left + side] for t, left in corners]
    return torch.cat([F.interpolate(w, size=size, mode="bilinear", antialias=True) for w in windows])


@pytest.fixture(scope="module")
def features():
    return detector_features()


def test_the_bank_rule_keeps_every_patch_up_to_the_budget_for_every_condition():
    from anomalib.models import Patchcore

    from tgad.baselines.coreset import bank_rows, use_fast_coreset

    assert [bank_rows(n, 100) for n in (1, 64, 100, 101, 5000)] == [1, 64, 100, 100, 100]
    for n_images, expected in ((1, 64), (1 + 8, 9 * 64), (1 + 64, 1000)):  # shots; + 8 extra; + 64 extra
        model = use_fast_coreset(Patchcore(backbone="resnet18", pre_trained=False), seed=0, bank_budget=1000)
        embeddings = torch.randn(n_images * 64, 24)  # 64 patches per image
        model.model.embedding_store.append(embeddings)
        model.model.subsample_embedding(0.1)  # anomalib's ratio is ignored under the rule
        bank = model.model.memory_bank
        assert bank.shape == (expected, 24)
        if expected == n_images * 64:  # under the budget: exactly the patches, untouched
            assert torch.equal(bank, embeddings)


def test_held_out_normals_come_from_the_end_of_the_shot_order_and_need_enough_images():
    from tgad.data.shots import choose_shots, shot_order

    names = [f"{i:03d}.png" for i in range(30)]
    shots = choose_shots(names, 1, 0)
    held = held_out_names(names, shots, 8)
    assert held == [n for n in shot_order(names) if n not in shots][-8:]
    assert not set(held) & {choose_shots(names, 1, s)[0] for s in range(5)}  # disjoint from seeds 0-4
    assert held_out_names(names[:MIN_HELD_OUT], names[:1], 8) == []  # 9 beyond the shot: too few


def test_synthetic_defects_change_only_their_mask_and_the_families_differ():
    image = _crops(_photo("gravel"), [(0, 0)])[0]
    for kinds in (VALIDATION_KINDS, METHOD_KINDS):
        defects = make_defects(image[None], 6, kinds, seed=3)
        assert defects.masks.any(dim=(1, 2)).all()  # every defect has pixels
        for defective, mask in zip(defects.images, defects.masks, strict=True):
            assert torch.equal(defective[:, ~mask], image[:, ~mask])  # identical outside the mask
            assert (defective[:, mask] - image[:, mask]).abs().mean() > 0.01
    assert not set(VALIDATION_KINDS) & set(METHOD_KINDS)
    again = make_defects(image[None], 6, METHOD_KINDS, seed=3)
    assert torch.equal(again.images, make_defects(image[None], 6, METHOD_KINDS, seed=3).images)


def test_validation_coverage_moves_the_right_way(features):
    photo = _photo("brick")
    shot = _crops(photo, [(0, 0)])
    normals = _crops(photo, [(t, left) for t in (60, 200, 300) for left in (40, 250)])  # 6 held out
    others = _crops(photo, [(t, left) for t in (100, 250) for left in (100, 300)])  # 4 more normals
    validator = ExtraSetValidator(features, shot, normals, ValidationSettings(n_normals=6))
    alone = validator.evaluate(None)
    with_normals = validator.evaluate(others)
    with_defects = validator.evaluate(validator.defects.images)  # the synthetic defects themselves
    assert alone["val_normal_cov"] == 0 and alone["val_auroc"] == alone["val_auroc_shots"]
    assert with_normals["val_normal_cov"] > with_normals["val_defect_cov"]
    assert with_defects["val_defect_cov"] > 0.5 > with_defects["val_normal_cov"]
    assert with_defects["val_auroc"] < alone["val_auroc"] <= with_normals["val_auroc"]
    assert (
        0.3 < with_normals["val_spread"] < 3
    )  # real normals are about as far from the shot as held-out ones


def test_defect_safe_ranks_a_pasted_defect_candidate_below_a_clean_one(features):
    photo = _photo("brick")
    shot, clean = _crops(photo, [(0, 0)]), _crops(photo, [(12, 20)])
    pasted = clean.clone()
    pasted[..., 30:50, 30:50] = F.interpolate(
        _photo("chelsea")[None], size=20, mode="bilinear", antialias=True
    )
    safe = DefectSafe(features, view_bank(features, shot, 8, 0), shot, n_defects=8)
    parts = safe.score_parts(torch.cat([clean, pasted, shot]))
    assert parts["defect_safe"][0] > parts["defect_safe"][1]  # clean variation beats an invented defect
    assert parts["novelty"][0] > parts["novelty"][2]  # the shot itself adds nothing
    assert parts["implausible"][1] > parts["implausible"][0]
    # the selection's diversity vectors come from the same backbone pass (issue 24), parts unchanged
    images = torch.cat([clean, pasted, shot] * 4)  # 12 images: batches of 8 and 4
    again, pooled = safe.score_parts_and_pooled(images)
    assert all(torch.equal(again[k], v) for k, v in safe.score_parts(images).items())
    assert torch.allclose(pooled, features(images).mean(1), atol=1e-5) and pooled.shape == (12, 152)


def test_selection_drops_candidates_that_hide_the_shots_synthetic_defects(features):
    photo = _photo("gravel")
    shot = _crops(photo, [(0, 0)])
    clean = _crops(photo, [(t, left) for t in (4, 10, 16) for left in (6, 14)])  # small shifts of the shot
    config = SelectConfig(defect_count=4, pass_fraction=0.6)
    hiding = make_defects(shot, 4, METHOD_KINDS, seed=0).images  # candidates showing those very defects
    candidates = torch.cat([clean, hiding])
    kept, parts = select_candidates(shot, candidates, 4, config, seed=0)
    assert parts["defect_cover"][len(clean) :].min() > parts["defect_cover"][: len(clean)].max()
    assert all(i < len(clean) for i in kept.tolist())


def test_tau_calibration_stops_where_samples_leave_the_shots_own_variation(features):
    """A draw that pastes ever larger foreign blocks as tau grows: the defect limit alone lets tau run to the
    top of the ladder; the implausibility limit stops it where invented structure appears."""
    photo, foreign = _photo("brick"), _photo("chelsea")
    shot = _crops(photo, [(0, 0)])
    safe = DefectSafe(features, view_bank(features, shot, 8, 0), shot, n_defects=4)

    def draw(tau: float, n: int) -> torch.Tensor:
        images = _crops(photo, [(4 * i, 6 * i) for i in range(1, n + 1)])  # mild shifts of the shot
        side = int(6 * tau)  # 3 .. 48 px of cat in a 96 px image
        if side >= 6:
            patch = F.interpolate(foreign[None], size=side, mode="bilinear", antialias=True)
            images[..., 20 : 20 + side, 20 : 20 + side] = patch
        return images

    unlimited, records = calibrate_tau(draw, safe, max_defect_cover=0.99)
    limited, _ = calibrate_tau(draw, safe, max_defect_cover=0.99, max_implausible=0.02)
    assert unlimited == TAU_LADDER[-1]
    assert records[0]["implausible"] <= 0.02 < records[-1]["implausible"]
    assert TAU_LADDER[0] <= limited < unlimited
    assert all(r["implausible"] <= 0.02 for r in records if r["tau"] <= limited)


def _reference_defect_scores(safe: DefectSafe, feats: torch.Tensor) -> torch.Tensor:
    """The unpruned rule: every defect patch against every candidate patch, one candidate at a time."""
    from tgad.features.patches import nearest_distances

    return torch.stack(
        [torch.minimum(safe.defect_d0, nearest_distances(safe.defect_features, c)).amax(1) for c in feats], 1
    )


def test_pruned_defect_scores_equal_the_full_computation_also_when_a_candidate_covers_the_defect():
    from tgad.features.patches import nearest_distances

    g = torch.Generator().manual_seed(0)
    safe = DefectSafe.__new__(DefectSafe)  # the scoring state alone: features made up, not a backbone's
    bank = torch.randn(2000, 16, generator=g)
    defects = torch.randn(3, 256, 16, generator=g)
    defects[:, :40] += 3.0  # a defect region: its patches are the farthest from the bank
    safe.defect_features, safe.defect_d0 = defects, nearest_distances(defects, bank)
    safe.defect_scores = safe.defect_d0.amax(1)
    feats = torch.randn(4, 256, 16, generator=g)
    feats[1, :40] = defects[0, :40] + 0.01  # hides defect 0 entirely: the pruned head is not enough
    feats[2, :10] = defects[2, :10]  # hides part of defect 2
    scores = safe.defect_scores_with(feats)
    assert torch.allclose(scores, _reference_defect_scores(safe, feats), atol=1e-5)
    assert scores[0, 1] < 0.5 * safe.defect_scores[0]  # the covered defect's score really fell


def test_region_cover_is_the_mean_drop_over_each_defects_own_patches():
    """Made-up features: the cover equals the per-defect definition computed one defect and one candidate at a
    time; a candidate far from everything covers nothing, one holding a defect's inside patches covers it, and
    a defect without patches does not vote."""
    from tgad.features.patches import nearest_distances

    g = torch.Generator().manual_seed(1)
    safe = DefectSafe.__new__(DefectSafe)
    bank = torch.randn(500, 8, generator=g)
    defects = torch.randn(2, 64, 8, generator=g)
    defects[0, :16] += 4.0  # inside each defect's mask, the two far apart
    defects[1, :16] -= 4.0
    safe.defect_features, safe.defect_d0 = defects, nearest_distances(defects, bank)
    safe.defect_patches = torch.zeros(2, 64, dtype=torch.bool)
    safe.defect_patches[:, :16] = True
    covering = torch.full((3, 64, 8), 50.0)  # candidate 0: far from everything
    covering[1, :8] = defects[0, :8]  # half of defect 0's inside patches
    covering[2, :16] = defects[1, :16]  # all of defect 1's

    def reference(candidate: torch.Tensor, voters=(0, 1)) -> torch.Tensor:
        drops = []
        for j in voters:
            d0 = safe.defect_d0[j, :16]
            d1 = torch.minimum(d0, nearest_distances(defects[j, :16][None], candidate)[0])
            drops.append(1 - d1.mean() / d0.mean())
        return torch.stack(drops).mean()

    got = safe.region_covers(covering)
    assert torch.allclose(got, torch.stack([reference(c) for c in covering]), atol=1e-5)
    assert got[0] == 0 and got[1] > 0.25 and torch.allclose(got[2], torch.tensor(0.5), atol=1e-3)
    safe.defect_patches[1] = False  # defect 1 owns no patch: it does not vote
    assert torch.allclose(safe.region_covers(covering)[1], reference(covering[1], (0,)), atol=1e-5)


def test_region_rule_ranks_by_standardised_parts_and_keeps_the_max_rules_key(features):
    photo = _photo("gravel")
    shot = _crops(photo, [(0, 0)])
    clean = _crops(photo, [(t, left) for t in (4, 10, 16) for left in (6, 14)])
    hiding = make_defects(shot, 4, METHOD_KINDS, seed=0).images
    candidates = torch.cat([clean, hiding])
    config = SelectConfig(defect_count=4, pass_fraction=0.6, defect_rule="region_z")
    kept, parts = select_candidates(shot, candidates, 4, config, seed=0)
    # the candidates that show the shot's own synthetic defects cover their regions most, and are dropped
    assert parts["region_cover"][len(clean) :].min() > parts["region_cover"][: len(clean)].max()
    assert all(i < len(clean) for i in kept.tolist())
    z = lambda v: (v - v.mean()) / v.std()  # noqa: E731
    expected = z(parts["novelty"] - 0.5 * parts["implausible"]) - z(parts["region_cover"])
    assert torch.allclose(parts["region_z"], expected, atol=1e-5)
    # the max rule records what it always recorded (committed sets keep their keys); region_z says itself
    assert set(SelectConfig().recorded()) == {
        "pool_factor", "pass_fraction", "defect_weight", "outlier_weight", "defect_count", "radius_quantile",
        "views",
    }  # fmt: skip
    assert config.recorded()["defect_rule"] == "region_z" and config.recorded()["region_weight"] == 1.0
    with pytest.raises(ValueError, match="defect_rule"):
        SelectConfig(defect_rule="mean")
