"""One setting, one path (issue 25): a recipe's generator and prompt settings reach the models the chain builds.

Two defects hid in that path: the chain rebuilt the VarianceVQGAN from a preset name plus the overrides its
constructor happened to accept (any other ``VQGANConfig`` field was a TypeError), and the judges rebuilt the
prompt config from the preset name, so a prompt override changed the cache key but not the images.
"""

from __future__ import annotations

import torch

from tgad.assets import LITE0
from tgad.assets.clip import TINY_CLIP
from tgad.generate.chain import _fit_generator, _select_prompt
from tgad.generate.stages import StageReporter
from tgad.hardware import Hardware
from tgad.models.integrator.judges import Judges
from tgad.recipe import Recipe


def _shots() -> torch.Tensor:
    return torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))  # (k, 3, S, S)


def test_a_vqgan_override_the_old_constructor_lacked_reaches_the_fitted_model(tmp_path):
    recipe = Recipe.build("tiny", run={"vqgan_iterations": 1}, vqgan={"latent_dim": 4, "num_res_blocks": 2})
    judges = Judges.resolve(TINY_CLIP, clip=False, backbone=LITE0)
    vqgan, _ = _fit_generator(recipe, _shots(), judges, {}, None, Hardware(), tmp_path, StageReporter())
    assert vqgan.config == recipe.vqgan
    assert vqgan.model.quantizer.codebook.shape == (64, 4)  # (codebook_size, latent_dim)
    assert vqgan.model.encode(_shots()).z_e.shape == (1, 4, 8, 8)  # 32 px / downsample 4, d = 4


def test_a_prompt_override_changes_the_chosen_prompt_table():
    images = _shots()
    template = "a photo of a {object}, {word}"
    plain = Recipe.build("tiny", integrator={"scorer": "clip_text"})  # clip_text: CLIP is built, P* chosen
    changed = Recipe.build(
        "tiny", integrator={"scorer": "clip_text"}, prompt={"num_words": 3, "templates": (template,)}
    )
    _, before = _select_prompt(plain, images, "hazelnut", None, seed=0)
    _, after = _select_prompt(changed, images, "hazelnut", None, seed=0)
    assert len(before.words) == plain.prompt.num_words == 16
    assert len(after.words) == 3 and len(after.table) == 3
    assert {r.template for r in after.table} == {template}
    assert after.best_prompt.startswith("a photo of a hazelnut, ")
