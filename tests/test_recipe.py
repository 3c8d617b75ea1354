"""One recipe: every ``conf/**/*.yaml`` instantiates its classes and agrees with ``tgad.recipe``; the recipe
round-trips through YAML; overrides reach the chain's key only where they change the images."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from jsonargparse import ArgumentParser
from lightning.pytorch import LightningDataModule, LightningModule

from tgad.hardware import Hardware
from tgad.recipe import PRESETS, Recipe

CONF = Path(__file__).resolve().parents[1] / "conf"
MODEL_CONFIGS = sorted(p for p in CONF.rglob("*.yaml") if "model" in (yaml.safe_load(p.read_text()) or {}))


def _instantiate(path: Path):
    """The model and datamodule a YAML names, built by jsonargparse as LightningCLI builds them."""
    parser = ArgumentParser(exit_on_error=False, parser_mode="omegaconf")
    parser.add_argument("--config", action="config")
    parser.add_subclass_arguments(LightningModule, "model")
    parser.add_subclass_arguments(LightningDataModule, "data")
    parser.add_argument("--trainer", type=dict)
    parser.add_argument("--seed_everything", type=int)
    cfg = parser.parse_args(["--config", str(path)])
    return parser.instantiate_classes(cfg), cfg


# The recipe preset each prompt_selector conf spells out whole (the generator confs are named after theirs).
PROMPT_CONF_PRESET = {"embedded": "cpu", "mvtec": "paper", "tiny": "tiny"}


@pytest.mark.parametrize("path", MODEL_CONFIGS, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_every_conf_instantiates_and_agrees_with_the_recipe(path):
    built, cfg = _instantiate(path)
    model = built.model
    kind = path.parent.name
    recipe = Recipe.build(PROMPT_CONF_PRESET[path.stem] if kind == "prompt_selector" else path.stem)
    if kind == "variance_vqgan":
        assert model.config == recipe.vqgan
        assert cfg.trainer["max_steps"] == 2 * recipe.run.vqgan_iterations  # generator + discriminator
        assert cfg.data.init_args.image_size == recipe.run.generator_image_size
    elif kind == "integrator":
        assert (model.config, model.generator.config) == (recipe.integrator, recipe.vqgan)
        assert model.prompt_selector == recipe.prompt
        assert cfg.data.init_args.image_size == recipe.run.generator_image_size
    else:  # prompt_selector: what the run sets itself (CLIP file, random opt-in) aside, the preset's
        run_specific = {"clip_weights": None, "allow_random_clip": recipe.prompt.allow_random_clip}
        assert model.config.__class__(**{**vars(model.config), **run_specific}) == recipe.prompt


@pytest.mark.parametrize("path", sorted((CONF / "data").glob("*.yaml")), ids=lambda p: p.stem)
def test_data_configs_read_at_the_cpu_recipes_detector_size(path):
    args = yaml.safe_load(path.read_text())["data"]["init_args"]
    run = Recipe.build("cpu").run
    assert (args["image_size"], args["train_batch_size"], args["eval_batch_size"]) == (
        run.detector_image_size,
        run.train_batch_size,
        run.eval_batch_size,
    )


@pytest.mark.parametrize("preset", PRESETS)
def test_recipe_round_trips_through_yaml(preset):
    recipe = Recipe.build(
        preset,
        run={"vqgan_iterations": 7},
        vqgan={"crop_size": 0},
        integrator={"tau": 2.5, "target_block": 2},
    )
    text = recipe.to_yaml()
    assert Recipe.from_yaml(text) == recipe
    assert yaml.safe_load(text)["integrator"] == {"tau": 2.5, "target_block": 2}
    assert Recipe.from_yaml(Recipe.build(preset).to_yaml()) == Recipe.build(preset)


def test_bad_names_fail_with_the_setting_named():
    with pytest.raises(ValueError, match="--preset 'huge'"):
        Recipe.build("huge")
    with pytest.raises(ValueError, match="IntegratorConfig: unknown field.*'taus'"):
        Recipe.build("tiny", integrator={"taus": 1.0})
    with pytest.raises(ValueError, match="unknown key.*'generator'"):
        Recipe.from_yaml("preset: tiny\ngenerator: {tau: 1}\n")


def test_only_settings_that_shape_the_images_enter_the_chains_key(tmp_path):
    from tgad.generate.artifact import ChosenShots, ExtraSetRequest, extra_set_key

    shot = tmp_path / "000.png"
    shot.write_bytes(b"not really a png, but hashed all the same")
    chosen = ChosenShots("embedded", "brick", tmp_path, [shot], ["000"])

    def key(recipe: Recipe) -> str:
        return extra_set_key(ExtraSetRequest(chosen, 0, 8, recipe, Hardware("cpu")))

    plain = Recipe.build("tiny")
    assert key(Recipe.build("tiny", run={"train_batch_size": 2, "detector_image_size": 128})) == key(plain)
    assert key(Recipe.build("tiny", vqgan={"codebook_size": 32})) != key(plain)
    assert key(Recipe.build("tiny", run={"generator_image_size": 48})) != key(plain)
    assert key(Recipe.build("tiny", integrator={"tau": 3.0})) != key(plain)
