"""One request, one key for a generated ExtraSet (issue 25): the benchmark names its folder and the chain checks
its manifest with the same ``artifact.extra_set_key``; the key covers every recipe field that shapes the images
and nothing else; its schema version is in the key and the manifest; the chain reports reuse itself."""

from __future__ import annotations

import copy
import dataclasses
import math

import pytest
import torch

from tests.helpers.datasets import write_mvtec
from tgad.benchmark import extra_sets
from tgad.benchmark.plan import BenchmarkConfig
from tgad.data import MVTecAD
from tgad.generate import artifact, chain
from tgad.generate.artifact import (
    DETECTOR_ONLY,
    KEY_SCHEMA,
    ChosenShots,
    ExtraSetRequest,
    extra_set_key,
    load_manifest,
)
from tgad.hardware import Hardware
from tgad.models.presets import flat_names, flatten
from tgad.recipe import Recipe

SMALL = {"rounds": 1, "samples_per_round": 4, "update_steps": 1}


@pytest.fixture
def shots(tmp_path) -> ChosenShots:
    shot = tmp_path / "000.png"
    shot.write_bytes(b"hashed, never decoded")
    return ChosenShots("mvtec", "widget", tmp_path, [shot], ["000"])


@pytest.fixture
def widget(tmp_path):
    """An MVTec-layout folder and the datamodule of (widget, 1 shot, seed 0) a benchmark row builds."""
    write_mvtec(tmp_path / "data", category="widget", size=32, n_train=3)
    dm = MVTecAD(root=str(tmp_path / "data"), category="widget", shots=1, shot_seed=0)
    dm.setup()
    return tmp_path / "data", dm


def _other(value):
    """A different value of the same kind (validation is bypassed: only the key reads it)."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 1
    if isinstance(value, float):
        return value + 0.5 if math.isfinite(value) else 1.0
    if isinstance(value, tuple):
        return (*value, 1)
    return f"{value}-other"


def _with_field(recipe: Recipe, part: str, name: str) -> Recipe:
    """``recipe`` with the setting of flat name ``name`` of ``part`` changed (in its group, if it has one)."""
    config = copy.copy(getattr(recipe, part))
    group = flat_names(type(config))[name]
    owner = copy.copy(getattr(config, group)) if group else config
    object.__setattr__(owner, name, _other(getattr(owner, name)))
    if group:
        object.__setattr__(config, group, owner)
    return dataclasses.replace(recipe, **{part: config})


def test_the_benchmark_and_the_chain_key_one_request_alike(widget):
    root, dm = widget
    assert (
        extra_sets.extra_set_key is artifact.extra_set_key and chain.extra_set_key is artifact.extra_set_key
    )
    config = BenchmarkConfig.of(
        dataset="mvtec", root=str(root), categories=("widget",), preset="tiny", n_gen=4
    )
    key, path, request = extra_sets.extra_set_request(config, "tgad", dm, 1, 0, "shot_fidelity")
    flags = chain.request_from_flags(
        "mvtec", root, "widget", 1, 0, 4, "tiny", integrator_overrides={"scorer": "shot_fidelity"}
    )
    assert request == flags and key == extra_set_key(flags) == extra_set_key(request)
    assert path.name == f"k1_seed0_{key}" and path.parent.parent.name == "tgad_shot_fidelity"


def test_what_does_not_shape_the_images_keeps_the_key(widget, tmp_path):
    """Results folder, run name, threads, W&B, detector settings: the same generated set."""
    root, dm = widget
    base = dict(dataset="mvtec", root=str(root), categories=("widget",), preset="tiny", n_gen=4)
    plain = extra_sets.extra_set_request(BenchmarkConfig.of(**base), "tgad", dm, 1, 0, "defect_safe")
    moved = BenchmarkConfig.of(
        **base, results_dir=str(tmp_path / "elsewhere"), name="run2", threads=3, wandb=False, image_size=128
    )
    other = extra_sets.extra_set_request(moved, "tgad", dm, 1, 0, "defect_safe")
    assert other.key == plain.key and other.path != plain.path
    scorer = extra_sets.extra_set_request(BenchmarkConfig.of(**base), "tgad", dm, 1, 0, "shot_fidelity")
    assert scorer.key != plain.key


@pytest.mark.parametrize("part", ["run", "vqgan", "integrator", "prompt"])
def test_every_recipe_field_that_shapes_the_images_changes_the_key(shots, part):
    recipe = Recipe.build("tiny")
    plain = extra_set_key(ExtraSetRequest(shots, 0, 8, recipe, Hardware("cpu")))
    for name in flatten(getattr(recipe, part)):  # every setting, those in groups too
        changed = extra_set_key(
            ExtraSetRequest(shots, 0, 8, _with_field(recipe, part, name), Hardware("cpu"))
        )
        assert (changed == plain) == (part == "run" and name in DETECTOR_ONLY), (part, name)


def test_the_request_beside_the_recipe_enters_the_key(shots, tmp_path):
    """Seed, N, keyword, hardware, the prior and the shots' bytes each make another set."""
    recipe = Recipe.build("tiny")
    plain = ExtraSetRequest(shots, 0, 8, recipe, Hardware("cpu"))
    others = [
        dataclasses.replace(plain, seed=1),
        dataclasses.replace(plain, n=9),
        dataclasses.replace(plain, keyword="screw"),
        dataclasses.replace(plain, hardware=Hardware("cpu", 1, "bf16-mixed")),
    ]
    weights = tmp_path / "prior.pt"
    torch.save({"state_dict": {}}, weights)
    with_prior = chain.make_request(
        shots, 0, 8, Recipe.build("tiny", run={"prior": str(weights)}), None, Hardware("cpu")
    )
    assert with_prior.prior["kind"] == "file" and chain.make_request(shots, 0, 8, recipe).prior is None
    keys = {extra_set_key(r) for r in [plain, *others, with_prior]}
    assert len(keys) == 6
    shots.paths[0].write_bytes(b"another image under the same name")
    assert extra_set_key(ExtraSetRequest(shots, 0, 8, recipe, Hardware("cpu"))) not in keys


def test_the_key_schema_version_is_in_the_key(shots, monkeypatch):
    request = ExtraSetRequest(shots, 0, 8, Recipe.build("tiny"), Hardware("cpu"))
    assert request.arguments["key_schema"] == KEY_SCHEMA
    monkeypatch.setattr(artifact, "KEY_SCHEMA", KEY_SCHEMA + 1)
    again = ExtraSetRequest(shots, 0, 8, Recipe.build("tiny"), Hardware("cpu"))
    assert again.arguments["key_schema"] == KEY_SCHEMA + 1 and extra_set_key(again) != extra_set_key(request)


def test_a_bad_request_is_refused_in_one_line(shots):
    with pytest.raises(ValueError, match=r"--n \(0\) must be >= 1"):
        ExtraSetRequest(shots, 0, 0, Recipe.build("tiny"))
    with pytest.raises(ValueError, match="chosen shots: 1 files for 2 IDs"):
        ExtraSetRequest(shots._replace(ids=["a", "b"]), 0, 8, Recipe.build("tiny"))


def test_the_chain_reports_reuse_and_skips_the_fit(widget, tmp_path, monkeypatch):
    """The benchmark's set: its folder key is the manifest's key (schema version recorded), and a second
    request is reused without a fit, said by the chain's return value (the benchmark books 0 s)."""
    torch.set_num_threads(1)
    root, dm = widget
    fits = []
    fit = chain._fit_generator
    monkeypatch.setattr(chain, "_fit_generator", lambda *args: fits.append(1) or fit(*args))
    config = BenchmarkConfig.of(
        dataset="mvtec", root=str(root), categories=("widget",), preset="tiny", n_gen=4, vqgan_iterations=2,
        integrator_overrides=SMALL, allow_random_clip=True, results_dir=str(tmp_path / "results"),
    )  # fmt: skip
    first = extra_sets.ensure_extra_set(config, "tgad", dm, 1, 0, scorer="shot_fidelity")
    manifest = load_manifest(first.path)
    written = (first.path / "manifest.json").stat().st_mtime_ns
    assert fits == [1] and first.seconds > 0
    assert first.path.name.endswith(manifest["cache_key"])
    assert manifest["key_schema"] == manifest["config"]["arguments"]["key_schema"] == KEY_SCHEMA
    again = extra_sets.ensure_extra_set(config, "tgad", dm, 1, 0, scorer="shot_fidelity")
    assert fits == [1] and again.seconds == 0.0 and again.manifest == manifest
    request = extra_sets.extra_set_request(config, "tgad", dm, 1, 0, "shot_fidelity").request
    made = chain.generate_extra_set(request, first.path)
    assert made == (first.path, True) and fits == [1]
    assert (first.path / "manifest.json").stat().st_mtime_ns == written  # untouched
