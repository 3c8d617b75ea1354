"""Issue 24 (a new user's first run): the defaults are the documented recipe, CLIP is built only where a scorer
reads it, the generator fit stops at its reconstruction plateau, and a default-preset set is no near-copy."""

from __future__ import annotations

import re
from pathlib import Path

import lightning as L
import pytest
import torch
import yaml
from torch.utils.data import DataLoader, TensorDataset

from tests.test_variance_vqgan_training import _trainer
from tgad.benchmark.plan import DEFAULT_CONDITIONS, BenchmarkConfig, plan_scorers
from tgad.models.integrator.config import IntegratorConfig
from tgad.models.integrator.judges import needs_clip
from tgad.recipe import Recipe

README = Path(__file__).resolve().parents[1] / "README.md"

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _documented_recipe() -> dict:
    """The YAML block the README introduces as the default recipe."""
    text = README.read_text()
    match = re.search(r"<!-- default-recipe -->\s*```yaml\n(.*?)```", text, re.S)
    assert match, "README.md lacks the <!-- default-recipe --> YAML block"
    return yaml.safe_load(match.group(1))


def test_the_defaults_are_the_recipe_the_readme_documents():
    documented = _documented_recipe()
    recipe = Recipe.build(documented["preset"])
    assert (
        documented["preset"] == BenchmarkConfig.of(categories=("brick",)).grid.preset
    )  # the main job's preset
    for part in ("run", "integrator"):
        # the README writes the integrator's settings by their flat names, as a recipe's overrides do
        settings = recipe.integrator.flat() if part == "integrator" else vars(recipe.run)
        for field, value in documented[part].items():
            assert settings[field] == value, (part, field)
    assert tuple(documented["conditions"]) == DEFAULT_CONDITIONS
    main_job = BenchmarkConfig.of(categories=("brick",))  # `make benchmark`: no --scorers given
    assert plan_scorers(main_job) == (documented["integrator"]["scorer"],)


@pytest.mark.parametrize("scorer", ["defect_safe", "shot_fidelity", "none"])
@pytest.mark.parametrize("clip_is_random", [True, False])
def test_clip_is_not_built_for_scorers_that_never_read_it(scorer, clip_is_random):
    assert not needs_clip(IntegratorConfig(scorer=scorer), "perceptual", clip_is_random)
    assert needs_clip(IntegratorConfig(scorer=scorer), "clip", clip_is_random)  # CLIP-space diversity does


def test_clip_is_built_where_a_scorer_reads_it():
    assert needs_clip(IntegratorConfig(scorer="clip_text"), "perceptual", clip_is_random=True)
    assert needs_clip(IntegratorConfig(scorer="combined"), "perceptual", clip_is_random=True)
    assert needs_clip(IntegratorConfig(scorer="auto"), "perceptual", clip_is_random=False)
    assert not needs_clip(IntegratorConfig(scorer="auto"), "perceptual", clip_is_random=True)


def test_judges_without_clip_score_with_the_feature_network_alone():
    from tgad.assets import LITE0
    from tgad.models.integrator.judges import Judges

    judges = Judges.resolve("no-such-clip-model", backbone=LITE0, clip=False)  # the name is never read
    assert judges.clip is None and judges.clip_is_random and judges.provenance["clip"] is None
    shots = torch.rand(1, 3, 32, 32)
    scorer = judges.scorer(shots, None, IntegratorConfig().override(scorer="auto", fidelity_views=2), seed=0)
    assert scorer.name == "shot_fidelity" and scorer.score(torch.rand(2, 3, 32, 32)).shape == (2,)
    with pytest.raises(ValueError, match="needs CLIP"):
        judges.text("a photo")


def _fit(tmp_path: Path, plateau, max_iterations: int) -> int:
    from tgad.models.variance_vqgan import VarianceVQGAN, VQGANConfig

    L.seed_everything(0)
    image = torch.rand(1, 3, 32, 32)
    module = VarianceVQGAN(config=VQGANConfig.preset("tiny"), perceptual_backbone="")
    trainer = _trainer(tmp_path, max_steps=2 * max_iterations, callbacks=[plateau] if plateau else [])
    trainer.fit(module, DataLoader(TensorDataset(image), batch_size=1))
    return trainer.global_step // 2


def test_the_fit_stops_at_its_reconstruction_plateau_and_not_before(tmp_path):
    from tgad.models.variance_vqgan.plateau import ReconstructionPlateau

    # any gain below 50 % per 5 iterations counts as a plateau: the fit stops soon after min_iterations
    early = ReconstructionPlateau(0.5, window=5, patience=2, min_iterations=20)
    assert _fit(tmp_path, early, 200) == early.stopped_at == 20
    assert len(early.checkpoints) == 4 and all(c > 0 for c in early.checkpoints)
    # a threshold no real loss curve stays under keeps the whole budget (the loss does fall)
    never = ReconstructionPlateau(1e-12, window=5, patience=2, min_iterations=20)
    fell = _fit(tmp_path, never, 40) == 40 and never.stopped_at is None
    assert fell or never.checkpoints[-1] >= never.checkpoints[-3]  # it stops only on a real stall
    assert never.checkpoints[-1] < never.checkpoints[0]  # reconstruction improved over the fit
    with pytest.raises(ValueError, match="vqgan_plateau"):
        ReconstructionPlateau(float("nan"))


def test_a_default_preset_set_is_not_a_near_copy_of_its_shot(tmp_path):
    """The cpu preset's selection (defect_safe, tau calibrated from the shot), its generator and residual
    decoding, made cheaper only in size (a 64 px photo crop, a short fit, one round, 8 images): the written
    images differ from their shot by more than 2/255 on average, where tau = 1 with ``auto`` made
    near-copies (issue 24)."""
    import numpy as np
    from PIL import Image

    from tests.helpers.datasets import write_mvtec
    from tests.test_scorers import _photo  # (3, H, W) from scikit-image's bundled photographs
    from tgad.data.images import read_resized, read_rgb
    from tgad.generate.artifact import load_manifest
    from tgad.generate.chain import generate_extra_set, request_from_flags

    write_mvtec(tmp_path / "data", category="hazelnut", size=64, n_train=4)
    photo = _photo("astronaut")  # (3, 512, 512)
    for i, path in enumerate(sorted((tmp_path / "data" / "hazelnut" / "train" / "good").glob("*.png"))):
        crop = torch.nn.functional.interpolate(
            photo[None, :, 40 * i : 40 * i + 256, 128:384], size=64, mode="bilinear", antialias=True
        )[0]
        Image.fromarray((crop.permute(1, 2, 0).clamp(0, 1).numpy() * 255).round().astype(np.uint8)).save(path)
    cpu = Recipe.build("cpu")
    recipe = Recipe.build(
        "cpu",
        run={"generator_image_size": 64, "vqgan_iterations": 60},
        integrator={"rounds": 1, "samples_per_round": 8, "update_steps": 1},
    )
    assert (recipe.integrator.scorer, recipe.integrator.calibration.calibrate_tau) == ("defect_safe", True)
    assert recipe.vqgan == cpu.vqgan  # the cpu generator itself
    request = request_from_flags(
        "mvtec", tmp_path / "data", "hazelnut", 1, 0, 8, recipe, allow_random_clip=False
    )
    out = generate_extra_set(request, tmp_path / "set").path
    manifest = load_manifest(out)
    assert manifest["clip_weights"] is None and manifest["weights"]["clip"] is None  # CLIP never built
    assert manifest["tau"] > 1.0, manifest["tau_calibration"]
    shot = read_resized(manifest["shot_paths"], 64)[0]
    diffs = [(read_rgb(out / r["file"]) - shot).abs().mean() for r in manifest["images"]]
    assert float(torch.stack(diffs).mean()) > 2 / 255, diffs
    assert manifest["collapse"]["near_copies"] is False


def test_a_fit_that_ends_before_disc_start_skips_the_discriminator_and_fits_the_same_generator(
    tmp_path, monkeypatch
):
    from tgad.models.variance_vqgan import VarianceVQGAN, VQGANConfig

    def fit(train_discriminator: bool) -> VarianceVQGAN:
        if train_discriminator:
            monkeypatch.setattr(VarianceVQGAN, "_discriminator_matters", lambda self: True)
        L.seed_everything(0)
        # tiny: disc_start 50 > 20 iterations
        module = VarianceVQGAN(config=VQGANConfig.preset("tiny"), perceptual_backbone="")
        before = {k: v.clone() for k, v in module.discriminator.state_dict().items()}
        trainer = _trainer(tmp_path, max_steps=40)
        trainer.fit(module, DataLoader(TensorDataset(torch.rand(1, 3, 32, 32)), batch_size=1))
        assert trainer.global_step == 40  # still two optimiser steps per iteration
        moved = any(not torch.equal(before[k], v) for k, v in module.discriminator.state_dict().items())
        assert moved == train_discriminator
        monkeypatch.undo()
        return module

    skipped, trained = fit(False), fit(True)
    for name, value in skipped.model.state_dict().items():
        assert torch.equal(value, trained.model.state_dict()[name]), name


def test_the_progress_bar_weighs_each_extra_set_once_by_its_cost():
    from tgad.benchmark.plan import full_plan
    from tgad.benchmark.runner import EXTRA_SET_WORK, row_work

    plan = full_plan(BenchmarkConfig.of(categories=("brick",), seeds=(0, 1), models=("patchcore", "padim")))
    work = row_work(plan)
    assert len(work) == len(plan) == 2 * 6 * 2  # seeds x conditions x models
    per_seed = sum(EXTRA_SET_WORK.values())  # each of the five extra sets made once per seed
    assert sum(work.values()) == len(plan) + 2 * per_seed
    first_tgad = next(r for r in plan if r.condition == "tgad")
    assert work[first_tgad.key()] == 1 + EXTRA_SET_WORK["tgad"]
    second = [r for r in plan if r.condition == "tgad" and r.seed == first_tgad.seed][1]
    assert work[second.key()] == 1  # the other model reuses the set
