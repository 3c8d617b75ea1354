"""One setting, one path (issue 25): a recipe's generator and prompt settings reach the models the chain builds,
and the models, which take their configs whole, keep them in checkpoints as plain data.

Two defects hid in that path: the chain rebuilt the VarianceVQGAN from a preset name plus the overrides its
constructor happened to accept (any other ``VQGANConfig`` field was a TypeError), and the judges rebuilt the
prompt config from the preset name, so a prompt override changed the cache key but not the images.
"""

from __future__ import annotations

import dataclasses

import lightning as L
import pytest
import torch

from tgad.assets import LITE0
from tgad.assets.clip import TINY_CLIP
from tgad.generate.chain import _fit_generator, _select_prompt
from tgad.generate.stages import StageReporter
from tgad.hardware import Hardware
from tgad.models.integrator.judges import Judges
from tgad.models.presets import SettingError, from_plain
from tgad.models.prompt_selector import PromptSelector, PromptSelectorConfig
from tgad.models.variance_vqgan import VarianceVQGAN, VQGANConfig
from tgad.recipe import Recipe


def _shots() -> torch.Tensor:
    return torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))  # (k, 3, S, S)


def test_a_vqgan_override_the_old_constructor_lacked_reaches_the_fitted_model(tmp_path):
    recipe = Recipe.build("tiny", run={"vqgan_iterations": 1}, vqgan={"latent_dim": 4, "num_res_blocks": 2})
    judges = Judges.resolve(TINY_CLIP, clip=False, backbone=LITE0)
    vqgan, _ = _fit_generator(
        recipe, _shots(), judges, {}, None, Hardware("cpu").resolved(), tmp_path, StageReporter()
    )
    assert vqgan.config == recipe.vqgan
    assert vqgan.model.quantizer.codebook.shape == (64, 4)  # (codebook_size, latent_dim)
    assert vqgan.model.encode(_shots()).z_e.shape == (1, 4, 8, 8)  # 32 px / downsample 4, d = 4


def test_a_prompt_override_changes_the_chosen_prompt_table():
    """The tiny preset's prompt stage takes 16 words and one template; the override's 3 words and its own
    template must be what P* is chosen from (before the fix: the preset's, whatever the recipe said)."""
    template = "a photo of a {object}, {word}"
    recipe = Recipe.build(
        "tiny",
        integrator={"scorer": "clip_text"},  # a scorer that reads CLIP: CLIP is built and P* chosen
        prompt={"num_words": 3, "templates": (template,)},
    )
    _, selection = _select_prompt(recipe, _shots(), "hazelnut", None, seed=0)
    assert Recipe.build("tiny").prompt.num_words == 16
    assert len(selection.words) == 3 and len(selection.table) == 3
    assert {r.template for r in selection.table} == {template}
    assert selection.best_prompt.startswith("a photo of a hazelnut, ")


@pytest.mark.filterwarnings("ignore:The state dict in .* contains no parameters")
def test_a_prompt_selector_checkpoint_keeps_its_config_as_plain_data_and_reloads(tmp_path):
    config = PromptSelectorConfig.preset("tiny", num_words=5, templates=("a {word} {object}",))
    selector = PromptSelector(config=config, category="bottle")
    path = tmp_path / "selector.ckpt"
    torch.save(
        {
            "state_dict": {},
            "hyper_parameters": dict(selector.hparams),
            "pytorch-lightning_version": L.__version__,
        },
        path,
    )
    assert torch.load(path, weights_only=True)["hyper_parameters"]["config"] == dataclasses.asdict(config)
    loaded = PromptSelector.load_from_checkpoint(path, weights_only=True)
    assert loaded.config == config and loaded.category == "bottle"


def test_plain_config_data_is_checked_like_any_setting():
    assert from_plain(VQGANConfig, {"latent_dim": 4, "channel_mult": [1, 2]}) == VQGANConfig(
        latent_dim=4, channel_mult=(1, 2)
    )
    with pytest.raises(ValueError, match=r"VQGANConfig: unknown field\(s\) \['latent_dims'\]"):
        from_plain(VQGANConfig, {"latent_dims": 4})
    with pytest.raises(SettingError, match="ema_decay=2.0 is out of range"):
        VarianceVQGAN(config={"ema_decay": 2.0})
